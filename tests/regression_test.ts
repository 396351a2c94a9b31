// Defects a review found, each pinned by the scenario that showed it.
import assert from "node:assert/strict";
import { appTest, type TestApp } from "./helpers.ts";

type Room = { id: string; token: string };

function post(app: TestApp, room: Room, body: unknown) {
  return app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body });
}

async function count(app: TestApp, room: Room): Promise<number> {
  const res = await app.request("GET", `/rooms/${room.id}/messages?limit=1000`, {
    token: room.token,
  });
  return res.body.length;
}

appTest("a wait in a room re-created under a deleted room's id works", async (app) => {
  const first = await app.room({ id: "phoenix" });
  await app.request("DELETE", "/rooms/phoenix", { token: first.token });
  const again = await app.room({ id: "phoenix" });
  const waiting = app.request("GET", "/rooms/phoenix/messages?after=0&wait=5", {
    token: again.token,
  });
  await new Promise((r) => setTimeout(r, 100));
  const sent = await post(app, again, { body: "back" });
  const woke = await waiting;
  assert.equal(woke.status, 200, woke.text);
  assert.deepEqual(woke.body.map((m: { id: number }) => m.id), [sent.body.id]);
});

appTest("the message cap trims every room, not only the one that hit a counter", async (app) => {
  const a = await app.room();
  const b = await app.room();
  for (let i = 0; i < 100; i++) {
    await post(app, a, { body: i });
    await post(app, b, { body: i });
  }
  for (const room of [a, b]) {
    const n = await count(app, room);
    // Trimming runs every second post to a room at this cap, so one may briefly stand over.
    assert.ok(n >= 32 && n <= 33, `room holds ${n} messages, cap 32`);
  }
}, { SYNC_MAX_MESSAGES: "32" });

appTest("SYNC_MAX_MESSAGES=0 with an age limit keeps the young messages", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 5; i++) await post(app, room, { body: i });
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE messages SET created_at = '2000-01-01T00:00:00.000Z' WHERE room_id = ? AND id = 1",
    args: [room.id],
  });
  await app.service.sweep();
  assert.equal(await count(app, room), 4, "only the backdated message is gone");
}, { SYNC_MAX_MESSAGES: "0", SYNC_MESSAGE_TTL_DAYS: "1" });

appTest("deleted keys do not let a room exceed its live-key cap", async (app) => {
  const room = await app.room();
  const put = (key: string) =>
    app.request("PUT", `/rooms/${room.id}/state`, { token: room.token, body: { key, value: 1 } });
  for (const k of ["a", "b", "c"]) assert.equal((await put(k)).status, 200);
  for (const k of ["a", "b", "c"]) {
    await app.request("DELETE", `/rooms/${room.id}/state`, { token: room.token, body: { key: k } });
  }
  for (const k of ["d", "e", "f"]) assert.equal((await put(k)).status, 200);
  const back = await put("a");
  assert.equal(back.status, 409, back.text);
  assert.equal(back.body.error, "room_full");
  const list = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
  assert.equal(list.body.length, 3);
}, { SYNC_MAX_KEYS: "3" });

appTest("404s of a valid token do not spend the address's budget for new tokens", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 8; i++) {
    const miss = await app.request("GET", `/rooms/${room.id}/state?key=lock`, {
      token: room.token,
    });
    assert.equal(miss.status, 404);
  }
  const fresh = await app.agent(room, "newcomer");
  const first = await app.request("GET", `/rooms/${room.id}`, { token: fresh.token });
  assert.equal(first.status, 200, first.text);
}, { SYNC_RATE_LIMIT: "60", SYNC_RATE_BURST: "20" });

appTest("behind a proxy the client address is the entry the proxy appended", async (app) => {
  const room = await app.room();
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await app.request("GET", `/rooms/${room.id}`, {
      headers: { "x-forwarded-for": `10.0.0.${i}, 1.2.3.4` },
    });
    statuses.push(res.status);
  }
  assert.ok(statuses.includes(429), `spoofed first entries escaped the limit: ${statuses}`);
}, { SYNC_TRUST_PROXY: "1", SYNC_RATE_LIMIT: "60", SYNC_RATE_BURST: "5" });

appTest("a tokenless Idempotency-Key must be long enough to be unguessable", async (app) => {
  const res = await app.request("POST", "/rooms", {
    body: {},
    headers: { "idempotency-key": "create-room" },
  });
  assert.equal(res.status, 400);
  assert.equal(res.body.error, "invalid_header");
  const db = await app.service.db();
  const rooms = await db.execute({ sql: "SELECT id FROM rooms" });
  assert.equal(rooms.rows.length, 0, "nothing was created");
});

appTest("an integer literal beyond a double is refused, not stored as null", async (app) => {
  const room = await app.room();
  const res = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    raw: `{"body":${"1".repeat(400)}}`,
  });
  assert.equal(res.status, 400, res.text);
  assert.equal(await count(app, room), 0);
});

appTest("thread=<id> of a reply lists the whole thread it belongs to", async (app) => {
  const room = await app.room();
  const root = await post(app, room, { body: "root" });
  const mid = await post(app, room, { body: "mid", reply_to: root.body.id });
  const leaf = await post(app, room, { body: "leaf", reply_to: mid.body.id });
  await post(app, room, { body: "unrelated" });
  for (const id of [root.body.id, mid.body.id, leaf.body.id]) {
    const res = await app.request("GET", `/rooms/${room.id}/messages?thread=${id}`, {
      token: room.token,
    });
    assert.deepEqual(res.body.map((m: { id: number }) => m.id), [
      root.body.id,
      mid.body.id,
      leaf.body.id,
    ]);
  }
});

appTest("the change feed refuses a cursor ahead of the room", async (app) => {
  const room = await app.room();
  const res = await app.request("GET", `/rooms/${room.id}/changes?after=999999`, {
    token: room.token,
  });
  assert.equal(res.status, 400);
  assert.match(res.body.message, /after=0/);
});

appTest("rooms per hour also apply in open mode", async (app) => {
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    statuses.push((await app.request("POST", "/rooms", { body: {} })).status);
  }
  assert.deepEqual(statuses, [201, 201, 429, 429]);
}, { SYNC_AUTH: "open", SYNC_ROOMS_PER_HOUR: "2", SYNC_RATE_LIMIT: "600" });

appTest(
  "DELETE /rooms/:id/state takes its fields from the query when there is no body",
  async (app) => {
    const room = await app.room();
    await app.request("PUT", `/rooms/${room.id}/state`, {
      token: room.token,
      body: { key: "k", value: 1 },
    });
    const res = await app.request("DELETE", `/rooms/${room.id}/state?key=k&if_version=1`, {
      token: room.token,
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.deleted, true);
    const gone = await app.request("GET", `/rooms/${room.id}/state?key=k`, { token: room.token });
    assert.equal(gone.status, 404);
  },
);

appTest("a batch error names the op and the field, and deletes say so in results", async (app) => {
  const room = await app.room();
  const bad = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: { ops: [{ key: "a", value: 1 }, { key: "b", vaule: 2 }] },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /ops\[1\]\.vaule.*did you mean "value"/);
  await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "old", value: 1 },
  });
  const ok = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: { ops: [{ key: "new", value: 2 }, { key: "old", delete: true }] },
  });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.results[0].deleted, undefined);
  assert.equal(ok.body.results[1].deleted, true);
});

appTest("an Idempotency-Key makes a retried PUT write once", async (app) => {
  const room = await app.room();
  const send = () =>
    app.request("PUT", `/rooms/${room.id}/state`, {
      token: room.token,
      body: { key: "k", value: "v" },
      headers: { "idempotency-key": "put-once" },
    });
  const first = await send();
  const again = await send();
  assert.equal(first.body.version, 1);
  assert.equal(again.headers.get("idempotent-replayed"), "true");
  const now = await app.request("GET", `/rooms/${room.id}/state?key=k`, { token: room.token });
  assert.equal(now.body.version, 1);
});

appTest("POST /rooms accepts an empty body, every field being optional", async (app) => {
  const res = await app.request("POST", "/rooms");
  assert.equal(res.status, 201, res.text);
  assert.match(res.body.token, /^as_room_/);
});

appTest("agents in the change feed carry online like every other agent view", async (app) => {
  const room = await app.room();
  await app.agent(room, "a");
  const feed = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
    token: room.token,
  });
  assert.equal(feed.body.changes[0].agent.online, true);
});

appTest("SYNC_MAX_JSON_DEPTH sets how deeply nested a body may be", async (app) => {
  const room = await app.room();
  const nest = (n: number) => "[".repeat(n) + "]".repeat(n);
  const send = (n: number) =>
    app.request("POST", `/rooms/${room.id}/messages`, {
      token: room.token,
      raw: `{"body":${nest(n)}}`,
    });
  assert.equal((await send(4)).status, 201);
  const deep = await send(6);
  assert.equal(deep.status, 400);
  assert.equal(deep.body.max_depth, 5);
}, { SYNC_MAX_JSON_DEPTH: "5" });

appTest("listings read the retention point in the same snapshot as their rows", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 8; i++) await post(app, room, { body: i });
  const db = await app.service.db();
  // As if a trim landed between reading the room and reading its rows.
  await db.execute({ sql: "UPDATE rooms SET trimmed_rev = 5 WHERE id = ?", args: [room.id] });
  const { listChanges, listMessages } = await import("../schema.ts");
  assert.deepEqual(await listMessages(db, room.id, { after: 2, limit: 10 }), []);
  assert.equal((await listMessages(db, room.id, { after: 5, limit: 10 })).length, 3);
  assert.equal((await listChanges(db, room.id, 2, 10)).trimmedRev, 5);
});
