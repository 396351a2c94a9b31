// Listing state is paged: a limit, a byte cap per page, and a cursor that says where to continue.
import assert from "node:assert/strict";
import { appTest, type TestApp } from "./helpers.ts";

async function fill(app: TestApp, room: { id: string; token: string }, n: number, value: unknown) {
  const ops = Array.from({ length: n }, (_, i) => ({
    key: `k${String(i).padStart(3, "0")}`,
    value,
  }));
  for (let i = 0; i < ops.length; i += 100) {
    const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
      token: room.token,
      body: { ops: ops.slice(i, i + 100) },
    });
    assert.equal(res.status, 200, res.text);
  }
}

/** Follows X-Next-Cursor from the first page to the last; returns the pages' keys. */
async function pages(app: TestApp, room: { id: string; token: string }, query: string) {
  const seen: string[][] = [];
  let cursor: string | null = null;
  do {
    const url: string = `/rooms/${room.id}/state?${query}` +
      (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const res = await app.request("GET", url, { token: room.token });
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.body));
    seen.push(res.body.map((e: { key: string }) => e.key));
    cursor = res.headers.get("x-next-cursor");
    if (cursor) assert.match(res.headers.get("link") ?? "", /rel="next"/);
    assert.ok(seen.length < 100, "the cursor never ends");
  } while (cursor);
  return seen;
}

appTest("GET state pages by limit and the cursor lists every key exactly once", async (app) => {
  const room = await app.room();
  await fill(app, room, 25, 1);
  const seen = await pages(app, room, "limit=10");
  assert.deepEqual(seen.map((p) => p.length), [10, 10, 5]);
  const all = seen.flat();
  assert.equal(new Set(all).size, 25);
  assert.deepEqual(all, [...all].sort());
});

appTest("GET state without a limit lists a small room whole, with no cursor", async (app) => {
  const room = await app.room();
  await fill(app, room, 30, "x");
  const res = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
  assert.equal(res.body.length, 30);
  assert.equal(res.headers.get("x-next-cursor"), null);
});

appTest(
  "a page of large values ends early at SYNC_MAX_PAGE_BYTES and continues where it stopped",
  async (app) => {
    const room = await app.room();
    await fill(app, room, 12, "v".repeat(400));
    const seen = await pages(app, room, "limit=1000");
    assert.ok(seen.length >= 4, `only ${seen.length} pages for 12 values of 400 bytes`);
    assert.ok(seen.every((p) => p.length <= 3 && p.length >= 1));
    assert.equal(new Set(seen.flat()).size, 12);
  },
  { SYNC_MAX_PAGE_BYTES: "1300" },
);

appTest("a value larger than the page cap still comes back, one per page", async (app) => {
  const room = await app.room();
  await fill(app, room, 3, "v".repeat(2000));
  const seen = await pages(app, room, "");
  assert.deepEqual(seen.map((p) => p.length), [1, 1, 1]);
}, { SYNC_MAX_PAGE_BYTES: "1000" });

appTest("the cursor pages within one scope", async (app) => {
  const room = await app.room();
  await fill(app, room, 5, 1);
  await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { scope: "other", key: "k000", value: 2 },
  });
  const seen = await pages(app, room, "scope=_shared&limit=2");
  assert.equal(seen.flat().length, 5);
});

appTest("a cursor the server did not give out answers 400", async (app) => {
  const room = await app.room();
  const res = await app.request("GET", `/rooms/${room.id}/state?cursor=nonsense`, {
    token: room.token,
  });
  assert.equal(res.status, 400);
  assert.equal(res.body.error, "invalid_query");
  assert.match(res.body.message, /cursor/);
});
