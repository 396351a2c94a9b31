// The change feed as server-sent events: order, ids, resuming, the server-side end, errors, caps.
import assert from "node:assert/strict";
import { appTest, type TestApp } from "./helpers.ts";

type Room = { id: string; token: string };

interface Event {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
  comment?: string;
}

/** An open event stream read block by block, keeping the raw text for exact checks. */
class Sse {
  raw = "";
  #buffer = "";
  #decoder = new TextDecoder();
  constructor(readonly res: Response, readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next block (one event, a comment or the retry hint), or null at the end of the stream. */
  async next(): Promise<Event | null> {
    while (!this.#buffer.includes("\n\n")) {
      const { value, done } = await this.reader.read();
      if (done) return null;
      const text = this.#decoder.decode(value, { stream: true });
      this.raw += text;
      this.#buffer += text;
    }
    const at = this.#buffer.indexOf("\n\n");
    const block = this.#buffer.slice(0, at);
    this.#buffer = this.#buffer.slice(at + 2);
    const ev: Event = {};
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) ev.comment = line.slice(1).trim();
      else {
        const i = line.indexOf(": ");
        (ev as Record<string, string>)[line.slice(0, i)] = line.slice(i + 2);
      }
    }
    return ev;
  }

  /** The next `n` events that carry data, skipping the retry hint and heartbeats. */
  async events(n: number): Promise<Event[]> {
    const out: Event[] = [];
    while (out.length < n) {
      const ev = await withTimeout(this.next(), 10_000, "the next event");
      assert.ok(ev, `the stream ended after ${out.length} of ${n} events`);
      if (ev.data !== undefined) out.push(ev);
    }
    return out;
  }

  async close() {
    await this.reader.cancel();
  }
}

async function open(
  app: TestApp,
  room: Room,
  opts: { after?: number; lastEventId?: string; token?: string | null } = {},
): Promise<Sse> {
  const headers: Record<string, string> = { accept: "text/event-stream" };
  const token = opts.token === undefined ? room.token : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.lastEventId !== undefined) headers["last-event-id"] = opts.lastEventId;
  const qs = opts.after === undefined ? "" : `?after=${opts.after}`;
  const res = await app.service.fetch(
    new Request(`http://test/rooms/${room.id}/changes${qs}`, { headers }),
  );
  assert.equal(res.status, 200, res.status === 200 ? "" : await res.text());
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  return new Sse(res, res.body!.getReader());
}

/** The JSON error answer when the stream request is refused. */
async function refused(app: TestApp, path: string, headers: Record<string, string>) {
  const res = await app.service.fetch(new Request(`http://test${path}`, { headers }));
  return { status: res.status, body: await res.json() };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function post(app: TestApp, room: Room, body: unknown) {
  const res = await app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

/** A room with an agent, two messages and a key: five revisions of three kinds. */
async function busyRoom(app: TestApp): Promise<Room> {
  const room = await app.room();
  await app.agent(room, "coder");
  await post(app, room, { kind: "task", body: "one" });
  await post(app, room, { body: { text: "two" } });
  const put = await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "plan", value: [1, 2] },
  });
  assert.equal(put.status, 200);
  await post(app, room, { to: "coder", body: "three" });
  return room;
}

appTest(
  "the stream sends each change as id and data, in order, exactly as /changes lists it",
  async (app) => {
    const room = await busyRoom(app);
    const poll = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
      token: room.token,
    });
    const sse = await open(app, room);
    const events = await sse.events(poll.body.changes.length);
    await sse.close();
    assert.deepEqual(
      events.map((e) => Number(e.id)),
      poll.body.changes.map((c: { rev: number }) => c.rev),
    );
    assert.deepEqual(events.map((e) => JSON.parse(e.data!)), poll.body.changes);
    // The exact framing the dashboard parses: a retry hint, then `id: <rev>\ndata: <json>\n\n`.
    assert.ok(sse.raw.startsWith("retry: 1000\n\n"), sse.raw.slice(0, 40));
    const first = poll.body.changes[0];
    assert.ok(sse.raw.includes(`\n\nid: ${first.rev}\ndata: ${JSON.stringify(first)}\n\n`));
  },
);

appTest("changes written while a stream is open arrive on it", async (app) => {
  const room = await app.room();
  const sse = await open(app, room);
  const sent = [];
  for (let i = 0; i < 3; i++) {
    sent.push(await post(app, room, { body: i }));
    const [ev] = await sse.events(1);
    assert.equal(Number(ev.id), sent[i].rev);
    assert.equal(JSON.parse(ev.data!).message.body, i);
  }
  await sse.close();
});

appTest("resuming with Last-Event-ID loses nothing and repeats nothing", async (app) => {
  const room = await busyRoom(app);
  const first = await open(app, room, { after: 0 });
  const seen = (await first.events(3)).map((e) => Number(e.id));
  await first.close();
  for (let i = 0; i < 4; i++) await post(app, room, { body: `later ${i}` });
  // As EventSource does: the same URL (after=0), plus the id of the last event received.
  const second = await open(app, room, { after: 0, lastEventId: String(seen.at(-1)) });
  const rest = (await second.events(6)).map((e) => Number(e.id));
  await second.close();
  const all = [...seen, ...rest];
  assert.equal(new Set(all).size, all.length, `no event twice: ${all}`);
  const poll = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
    token: room.token,
  });
  assert.deepEqual(all, poll.body.changes.map((c: { rev: number }) => c.rev));
});

appTest("after= starts a stream past the changes the client has", async (app) => {
  const room = await busyRoom(app);
  const sse = await open(app, room, { after: 4 });
  const [ev] = await sse.events(1);
  await sse.close();
  assert.equal(Number(ev.id), 5);
});

appTest("the server ends a stream by itself and frees its slot", async (app) => {
  const room = await busyRoom(app);
  const sse = await open(app, room);
  await sse.events(5);
  const ended = await withTimeout(
    (async () => {
      while (await sse.next() !== null) { /* heartbeats */ }
      return true;
    })(),
    10_000,
    "the end of the stream",
  );
  assert.equal(ended, true);
  assert.equal(app.service.waiters.size, 0, "no held request left behind");
}, { SYNC_STREAM_SECONDS: "1" });

appTest("a quiet stream sends heartbeat comments", async (app) => {
  const room = await app.room();
  const sse = await open(app, room);
  let ev = await sse.next();
  assert.equal(ev?.retry, "1000");
  ev = await withTimeout(sse.next(), 10_000, "a heartbeat");
  assert.equal(ev?.comment, "heartbeat");
  assert.equal(ev?.data, undefined);
  await sse.close();
}, { SYNC_STREAM_HEARTBEAT_SECONDS: "1" });

appTest("a lease running out arrives on the stream", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: "x" });
  const claimed = await app.request("POST", `/rooms/${room.id}/messages/${task.id}/claim`, {
    token: room.token,
    body: { agent: "alice", ttl: 0.5 },
  });
  const sse = await open(app, room, { after: claimed.body.rev });
  const [ev] = await sse.events(1);
  await sse.close();
  const change = JSON.parse(ev.data!);
  assert.equal(Number(ev.id), claimed.body.rev + 1);
  assert.equal(change.message.claim, null);
  assert.equal(change.message.expired_claim.agent, "alice");
});

appTest("a cursor passed by retention gives the stream the same 410 as the poll", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 5; i++) await post(app, room, { body: i });
  const poll = await app.request("GET", `/rooms/${room.id}/changes?after=1`, {
    token: room.token,
  });
  assert.equal(poll.status, 410);
  const auth = { authorization: `Bearer ${room.token}`, accept: "text/event-stream" };
  const byQuery = await refused(app, `/rooms/${room.id}/changes?after=1`, auth);
  assert.deepEqual(byQuery, { status: 410, body: poll.body });
  const byHeader = await refused(app, `/rooms/${room.id}/changes`, {
    ...auth,
    "last-event-id": "1",
  });
  assert.deepEqual(byHeader, { status: 410, body: poll.body });
}, { SYNC_MAX_MESSAGES: "2" });

appTest("a stream needs a token and a well-formed Last-Event-ID", async (app) => {
  const room = await app.room();
  const path = `/rooms/${room.id}/changes`;
  const none = await refused(app, path, { accept: "text/event-stream" });
  assert.equal(none.status, 401);
  const bad = await refused(app, path, {
    accept: "text/event-stream",
    authorization: `Bearer ${room.token}`,
    "last-event-id": "abc",
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, "invalid_header");
  assert.match(bad.body.message, /Last-Event-ID "abc"/);
  const ahead = await refused(app, path, {
    accept: "text/event-stream",
    authorization: `Bearer ${room.token}`,
    "last-event-id": "99",
  });
  assert.equal(ahead.status, 400);
  assert.match(ahead.body.message, /ahead of the room's revision/);
});

appTest("open streams count against the held-request caps", async (app) => {
  const room = await app.room();
  const a = await open(app, room);
  const b = await open(app, room);
  const third = await refused(app, `/rooms/${room.id}/changes`, {
    accept: "text/event-stream",
    authorization: `Bearer ${room.token}`,
  });
  assert.equal(third.status, 429);
  assert.equal(third.body.error, "too_many_waits");
  const poll = await app.request("GET", `/rooms/${room.id}/changes?wait=5`, {
    token: room.token,
  });
  assert.equal(poll.status, 429, "a held poll shares the same slots");
  await a.close();
  const c = await open(app, room);
  await Promise.all([b.close(), c.close()]);
  assert.equal(app.service.waiters.size, 0);
}, { SYNC_MAX_WAITS_PER_CLIENT: "2" });

appTest("deleting the room ends its stream with a not_found error event", async (app) => {
  const room = await app.room();
  const sse = await open(app, room);
  assert.equal((await sse.next())?.retry, "1000");
  const del = await app.request("DELETE", `/rooms/${room.id}`, { token: room.token });
  assert.equal(del.status, 200);
  const ev = await withTimeout(sse.next(), 10_000, "the error event");
  assert.equal(ev?.event, "error");
  assert.equal(JSON.parse(ev!.data!).error, "not_found");
  assert.equal(await sse.next(), null, "then the stream ends");
});

appTest("shutting the service down ends its open streams", async (app) => {
  const room = await app.room();
  const sse = await open(app, room);
  assert.equal((await sse.next())?.retry, "1000");
  app.service.waiters.close();
  assert.equal(await withTimeout(sse.next(), 10_000, "the end of the stream"), null);
  assert.equal(app.service.waiters.size, 0);
});

appTest("streams woken by one write share one read of the feed", async (app) => {
  const room = await app.room();
  const db = await app.service.db();
  const { batch } = db;
  let feedReads = 0;
  db.batch = (stmts, mode) => {
    if (stmts.some((s) => /FROM messages WHERE room_id = \? AND rev > \?/.test(s.sql))) feedReads++;
    return batch.call(db, stmts, mode);
  };
  const streams = [];
  try {
    for (let i = 0; i < 5; i++) {
      const sse = await open(app, room);
      assert.equal((await sse.next())?.retry, "1000");
      streams.push(sse);
    }
    // The streams' first reads find nothing (and already share); then each waits.
    const events = streams.map((s) => s.events(1));
    for (let i = 0; i < 1000 && feedReads < 1; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 100));
    feedReads = 0;
    const sent = await post(app, room, { body: "to all" });
    for (const [ev] of await Promise.all(events)) assert.equal(Number(ev.id), sent.rev);
    assert.equal(feedReads, 1, "one read for five streams");
  } finally {
    db.batch = batch;
    await Promise.all(streams.map((s) => s.close()));
  }
});
