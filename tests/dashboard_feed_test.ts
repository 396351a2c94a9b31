// How the dashboard follows a room: the event stream, its long-poll fallback, paged state, and
// the embedding of its TypeScript page scripts.
import assert from "node:assert/strict";
import { type SseEvent, sseParser, statePage } from "../dashboard_browser.ts";
import { landingScript, roomScript } from "../dashboard_script.ts";
import type { Service } from "../main.ts";
import { browserTest, type Json, Server, WAIT } from "./dashboard_helpers.ts";

// ---------------------------------------------------------------- the page scripts (in-process)

Deno.test("the page scripts are JavaScript with no types left, and nothing ends their <script>", () => {
  for (const script of [roomScript, landingScript]) {
    const text = script({ auth: "token", onlineSeconds: 60 });
    new Function(text); // throws a SyntaxError on any TypeScript left in it
    assert.doesNotMatch(text, /<\/script|<!--/i);
    assert.match(text, /\}\)\(\{"auth":"token","onlineSeconds":60\}\);/, "called with its config");
  }
});

Deno.test("a page script's config cannot close the script element", () => {
  const text = roomScript({ auth: "</script><script>x()" as "open", onlineSeconds: 60 });
  assert.ok(!text.includes("</script"));
  assert.ok(text.includes(String.raw`"\u003c/script>\u003cscript>x()"`));
});

// The page scripts are copied by their source text: anything they call from outside must be one
// of the helpers embedded with them, under its own name.
Deno.test("the page scripts import nothing but the embedded helpers, unrenamed", async () => {
  const helpers = ["./dashboard_browser.ts", "./dashboard_render.ts", "./dashboard_feed.ts"];
  const pages = ["./dashboard_room.ts", "./dashboard_landing.ts"];
  const config = { auth: "token", onlineSeconds: 60 } as const;
  for (const file of [...helpers, ...pages]) {
    const script = file === "./dashboard_landing.ts" ? landingScript(config) : roomScript(config);
    const text = await Deno.readTextFile(new URL(`.${file}`, import.meta.url));
    const imports = [...text.matchAll(/^import\s+(type\s+)?\{([^}]*)\}\s+from\s+"([^"]+)"/gm)];
    assert.equal(
      imports.length,
      [...text.matchAll(/^import\b/gm)].length,
      `${file}: plain imports`,
    );
    for (const [, typeOnly, names, from] of imports) {
      if (typeOnly) continue;
      assert.ok(helpers.includes(from), `${file} imports values from ${from}`);
      assert.doesNotMatch(names, /\bas\b/, `${file} renames an import`);
      for (const name of names.split(",").map((n) => n.trim()).filter((n) => n)) {
        if (name.startsWith("type ")) continue;
        assert.ok(script.includes(`function ${name}(`), `${name} is embedded`);
      }
    }
  }
});

// ---------------------------------------------------------------- parsing (in-process)

Deno.test("the event-stream parser joins events split across chunks at any point", () => {
  const body = 'retry: 1500\n: keep-alive\r\nid: 7\r\ndata: {"a":1}\r\n\r\n' +
    "event: change\ndata: line one\ndata:line two\nid: 8\n\n" +
    "id: 9\n\ndata: no id change\rdata:  spaced\r\r" +
    "data: unfinished";
  const expected: SseEvent[] = [
    { id: "7", event: "message", data: '{"a":1}' },
    { id: "8", event: "change", data: "line one\nline two" },
    { id: "9", event: "message", data: "no id change\n spaced" },
  ];
  for (let size = 1; size <= body.length; size++) {
    const parser = sseParser();
    const events: SseEvent[] = [];
    for (let i = 0; i < body.length; i += size) {
      events.push(...parser.push(body.slice(i, i + size)));
    }
    assert.deepEqual(events, expected, `in chunks of ${size}`);
    assert.equal(parser.retry(), 1500);
  }
});

Deno.test("the event-stream parser ignores a bad retry and an id with a NUL", () => {
  const parser = sseParser();
  const events = parser.push("retry: soon\nid: 3\0\ndata: x\n\n");
  assert.deepEqual(events, [{ id: "", event: "message", data: "x" }]);
  assert.equal(parser.retry(), null);
});

Deno.test("a state answer is read as a bare array or as a page with its next cursor", () => {
  const entry = {
    scope: "_shared",
    key: "k",
    value: 1,
    version: 1,
    updated_at: "",
    expires_at: null,
  };
  assert.deepEqual(statePage([entry]), { entries: [entry], next: null });
  assert.deepEqual(statePage({ entries: [entry], next: "abc" }), { entries: [entry], next: "abc" });
  assert.deepEqual(statePage({ entries: [], next: 40 }), { entries: [], next: "40" });
  assert.deepEqual(statePage({ entries: [entry], next: null }), { entries: [entry], next: null });
  assert.equal(statePage({ error: "x" }), null);
  assert.equal(statePage(null), null);
});

// ---------------------------------------------------------------- in Chromium

const isStream = (headers: Record<string, string>) =>
  (headers["accept"] || "").includes("text/event-stream");

browserTest(
  "the dashboard long-polls after one stream request when the server answers with JSON",
  async (t) => {
    const { server, page } = t;
    const room = await server.room();
    const feed: { url: string; stream: boolean }[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname.endsWith("/changes")) {
        feed.push({ url: r.url(), stream: isStream(r.headers()) });
      }
    });
    // A server without the event stream answers a stream request with the JSON page.
    await page.route((url) => url.pathname === `/rooms/${room.id}/changes`, async (route) => {
      if (!isStream(route.request().headers())) return route.continue().catch(() => {});
      const after = new URL(route.request().url()).searchParams.get("after");
      const json = await server.ok("GET", `/rooms/${room.id}/changes?after=${after}`, room.token);
      await route.fulfill({ json }).catch(() => {});
    });
    await t.open(room, room.view_token);
    const m = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: "hi" });
    await page.locator(`#m${m.id}`).waitFor(WAIT);
    await page.locator("#conn[data-transport=poll]").waitFor(WAIT);
    assert.equal(feed.filter((f) => f.stream).length, 1, "asks for a stream once");
    assert.equal(feed[0].stream, true, "asks for the stream first");
    assert.ok(feed.slice(1).every((f) => new URL(f.url).searchParams.get("wait") === "25"));
  },
);

browserTest(
  "the dashboard follows a server-sent event stream and resumes it from the last event id",
  async (t) => {
    const { server, page } = t;
    const room = await server.room();
    const r = `/rooms/${room.id}`;
    const first = await server.ok("POST", `${r}/messages`, room.token, { body: "before" });
    const streams: { after: number; lastEventId: string | undefined }[] = [];
    let polls = 0;
    // A stand-in for the server's stream: each request holds for the next changes, sends them
    // as events and ends, as the real one does before 55 s.
    await page.route((url) => url.pathname === `${r}/changes`, async (route) => {
      const req = route.request();
      if (!isStream(req.headers())) {
        polls++;
        return route.continue().catch(() => {});
      }
      const after = Number(new URL(req.url()).searchParams.get("after"));
      streams.push({ after, lastEventId: req.headers()["last-event-id"] });
      try {
        const res = await server.ok("GET", `${r}/changes?after=${after}&wait=3`, room.view_token);
        const events = res.changes.map((ch: Json) =>
          `id: ${ch.rev}\ndata: ${JSON.stringify(ch)}\n\n`
        );
        await route.fulfill({
          status: 200,
          headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
          body: `retry: 50\n: ${events.length} events\n\n${events.join("")}`,
        });
      } catch { /* the page closed while it waited */ }
    });
    await t.open(room, room.view_token);
    await page.locator(`#m${first.id}`).waitFor(WAIT);

    const second = await server.ok("POST", `${r}/messages`, room.token, {
      kind: "task",
      body: "over the stream",
    });
    await page.locator(`#m${second.id}`).waitFor(WAIT);
    await page.locator("#conn[data-state=live][data-transport=stream]").waitFor(WAIT);
    const coder = await server.agent(room, "coder");
    await page.locator('[data-agent="coder"]').waitFor(WAIT);
    await server.ok("PUT", `${r}/state`, coder.token, { key: "plan", value: "ship" });
    await page.locator('[data-key="plan"]').waitFor(WAIT);
    await server.ok("POST", `${r}/messages/${second.id}/claim`, coder.token);
    await page.locator(`#m${second.id} .claim.held`).waitFor(WAIT);

    assert.equal(polls, 0, "no long poll while the stream works");
    assert.deepEqual(await page.locator(".msg .body").allInnerTexts(), [
      "before",
      "over the stream",
    ]);
    assert.equal(streams[0].after, first.id, "starts from the room's revision at load");
    const afters = streams.map((s) => s.after);
    assert.deepEqual([...afters].sort((a, b) => a - b), afters, "the cursor never goes back");
    assert.ok(new Set(afters).size >= 4, `resumes after each change: ${afters}`);
    for (const s of streams) assert.equal(s.lastEventId, String(s.after));
  },
);

/**
 * The service with a stand-in for the coming stream: `/changes` with `Accept: text/event-stream`
 * sends each change as an event the moment it happens, and the server ends a stream after
 * `perStream` events; the first `refuse` stream requests get a 503. `streams` records each
 * stream's Last-Event-ID and whether it ended.
 */
function streaming(service: Service, perStream: number, refuse = 0) {
  const streams: { lastEventId: string | null; ended: boolean }[] = [];
  const fetch = (req: Request, info?: unknown) => {
    const url = new URL(req.url);
    if (!url.pathname.endsWith("/changes") || !isStream(Object.fromEntries(req.headers))) {
      return service.fetch(req, info);
    }
    const record = { lastEventId: req.headers.get("last-event-id"), ended: false };
    streams.push(record);
    if (streams.length <= refuse) {
      record.ended = true;
      return Response.json({ error: "unavailable", message: "Try again", status: 503 }, {
        status: 503,
      });
    }
    let after = Number(record.lastEventId ?? url.searchParams.get("after"));
    const headers: Record<string, string> = {};
    if (req.headers.has("authorization")) headers.authorization = req.headers.get("authorization")!;
    const encoder = new TextEncoder();
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      async start(ctl) {
        ctl.enqueue(encoder.encode("retry: 100\n: hello\n\n"));
        let sent = 0;
        while (!cancelled && sent < perStream) {
          const held = new Request(`http://x${url.pathname}?after=${after}&wait=1&limit=1`, {
            headers,
          });
          const res = await (await service.fetch(held)).json();
          for (const ch of res.changes ?? []) {
            ctl.enqueue(encoder.encode(`id: ${ch.rev}\ndata: ${JSON.stringify(ch)}\n\n`));
            after = ch.rev;
            sent++;
          }
        }
        record.ended = true;
        if (!cancelled) ctl.close();
      },
      cancel() {
        cancelled = true;
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  };
  return { service: { ...service, fetch }, streams };
}

browserTest("the dashboard shows each event of an open stream as it arrives", async (t) => {
  const { page } = t;
  const { service, streams } = streaming(t.server.service, 2);
  const server = new Server(service);
  try {
    const room = await server.room();
    const r = `/rooms/${room.id}`;
    const post = (body: string) => server.ok("POST", `${r}/messages`, room.token, { body });
    await page.goto(`${server.base}/?room=${room.id}#token=${room.view_token}`);
    await page.locator("#conn[data-state=live][data-transport=stream]").waitFor(WAIT);

    const one = await post("one");
    await page.locator(`#m${one.id}`).waitFor(WAIT);
    assert.equal(streams.length, 1);
    assert.equal(streams[0].ended, false, "shown while its stream is still open");

    const two = await post("two");
    await page.locator(`#m${two.id}`).waitFor(WAIT);
    const three = await post("three");
    await page.locator(`#m${three.id}`).waitFor(WAIT);
    assert.equal(streams[0].ended, true);
    assert.equal(streams[1].lastEventId, String(two.rev), "resumes after the last event");
    assert.equal(streams[1].ended, false, "the next stream carries on");
    assert.deepEqual(await page.locator(".msg .body").allInnerTexts(), ["one", "two", "three"]);
  } finally {
    await t.browser.close();
    await server.stop();
  }
});

browserTest(
  "after a refused stream the dashboard long-polls once, then streams again",
  async (t) => {
    const { page } = t;
    const { service, streams } = streaming(t.server.service, 10, 1);
    const server = new Server(service);
    try {
      const room = await server.room();
      const r = `/rooms/${room.id}`;
      const polls: string[] = [];
      page.on("request", (req) => {
        const url = new URL(req.url());
        if (url.pathname === `${r}/changes` && !isStream(req.headers())) polls.push(url.search);
      });
      const post = (body: string) => server.ok("POST", `${r}/messages`, room.token, { body });
      await page.goto(`${server.base}/?room=${room.id}#token=${room.view_token}`);
      await page.locator("#conn[data-state=live]").waitFor(WAIT);
      const one = await post("over the long poll");
      await page.locator(`#m${one.id}`).waitFor(WAIT);
      await page.locator("#conn[data-transport=stream]").waitFor(WAIT);
      const two = await post("over the stream");
      await page.locator(`#m${two.id}`).waitFor(WAIT);
      assert.equal(polls.length, 1, `one long poll: ${polls}`);
      assert.equal(streams.length, 2);
      assert.equal(streams[1].lastEventId, String(one.rev));
      assert.equal(streams[1].ended, false, "the second stream carried the second message");
    } finally {
      await t.browser.close();
      await server.stop();
    }
  },
);

browserTest("the dashboard reads state page by page when the server pages it", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const r = `/rooms/${room.id}`;
  const keys = ["a", "b", "c", "d", "e"];
  for (const key of keys) await server.ok("PUT", `${r}/state`, room.token, { key, value: key });
  const asked: (string | null)[] = [];
  // The paged shape: { entries, next }, two entries a page, until next is null.
  await page.route((url) => url.pathname === `${r}/state`, async (route) => {
    const cursor = new URL(route.request().url()).searchParams.get("cursor");
    asked.push(cursor);
    const all = await server.ok("GET", `${r}/state`, room.view_token);
    const from = cursor === null ? 0 : Number(cursor.slice(1));
    const next = from + 2 < all.length ? `p${from + 2}` : null;
    await route.fulfill({ json: { entries: all.slice(from, from + 2), next } });
  });
  await t.open(room, room.view_token);
  assert.deepEqual(await page.locator(".kv-key").allInnerTexts(), keys);
  assert.deepEqual(asked, [null, "p2", "p4"]);
  assert.equal(await page.locator("#state-count").innerText(), "(5)");
});

browserTest(
  "the dashboard follows the server's own X-Next-Cursor pages of state",
  async (t) => {
    const { server, page } = t;
    const room = await server.room();
    const r = `/rooms/${room.id}`;
    const keys = ["a", "b", "c", "d", "e"];
    for (const key of keys) {
      await server.ok("PUT", `${r}/state`, room.token, { key, value: key.repeat(40) });
    }
    const asked: (string | null)[] = [];
    page.on("request", (req) => {
      const url = new URL(req.url());
      if (url.pathname === `${r}/state`) asked.push(url.searchParams.get("cursor"));
    });
    await t.open(room, room.view_token);
    assert.deepEqual(await page.locator(".kv-key").allInnerTexts(), keys);
    assert.ok(asked.length >= 3, `the state came in ${asked.length} page(s)`);
    assert.equal(asked[0], null);
    assert.equal(await page.locator("#state-count").innerText(), "(5)");
  },
  { SYNC_MAX_PAGE_BYTES: "100" },
);
