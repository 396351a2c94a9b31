// Idempotency-Key: every write route is exactly-once, also across a crash between commit and answer.
import assert from "node:assert/strict";
import type { Db, Statement } from "../db.ts";
import { migrate } from "../schema.ts";
import { appTest, type Res, type TestApp } from "./helpers.ts";

type Room = { id: string; token: string };
interface Call {
  method: string;
  path: string;
  body?: unknown;
  token?: string;
}
interface RouteCase {
  name: string;
  /** Prepares the room and returns the keyed request to make. */
  setup: (app: TestApp, room: Room) => Promise<Call>;
  /** The SQL of the write, to crash right after it commits. */
  writes: RegExp;
  /** How many revisions the write takes (null: it deletes the room). */
  revs: number | null;
  /** Fields of the answer that are secrets: never stored in plain text. */
  secrets?: string[];
}

const LONG_KEY = "create-0b9e4c7a-1d2f-4e3a-8b5c-6f7d8e9a0b1c";

async function roomRev(app: TestApp, room: Room): Promise<number | null> {
  const res = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
  return res.status === 200 ? res.body.rev : null;
}

async function roomCount(app: TestApp): Promise<number> {
  const db = await app.service.db();
  const rs = await db.execute({ sql: "SELECT count(*) AS n FROM rooms" });
  return Number((rs.rows[0] as ArrayLike<unknown>)[0]);
}

function send(app: TestApp, call: Call, key: string): Promise<Res> {
  return app.request(call.method, call.path, {
    token: call.token,
    body: call.body,
    headers: { "idempotency-key": key },
  });
}

const ROUTES: RouteCase[] = [
  {
    name: "POST /rooms",
    setup: () => Promise.resolve({ method: "POST", path: "/rooms", body: { meta: { n: 1 } } }),
    writes: /INSERT INTO rooms/,
    revs: 0,
    secrets: ["token", "view_token"],
  },
  {
    name: "DELETE /rooms/:id",
    setup: (_app, room) =>
      Promise.resolve({ method: "DELETE", path: `/rooms/${room.id}`, token: room.token }),
    writes: /DELETE FROM rooms/,
    revs: null,
  },
  {
    name: "POST /rooms/:id/agents (register)",
    setup: (_app, room) =>
      Promise.resolve({
        method: "POST",
        path: `/rooms/${room.id}/agents`,
        token: room.token,
        body: { id: "new-agent", name: "New", meta: { skills: ["x"] } },
      }),
    writes: /INSERT INTO agents/,
    revs: 1,
    secrets: ["token"],
  },
  {
    name: "POST /rooms/:id/agents (re-register, new token)",
    setup: async (app, room) => {
      await app.agent(room, "again");
      return {
        method: "POST",
        path: `/rooms/${room.id}/agents`,
        token: room.token,
        body: { id: "again", name: "Again", rotate_token: true },
      };
    },
    writes: /UPDATE agents SET\s+name/,
    revs: 1,
    secrets: ["token"],
  },
  {
    name: "PATCH /rooms/:id/agents/:agent_id",
    setup: async (app, room) => {
      await app.agent(room, "patched");
      return {
        method: "PATCH",
        path: `/rooms/${room.id}/agents/patched`,
        token: room.token,
        body: { status: "busy", note: "on it" },
      };
    },
    writes: /UPDATE agents SET\s+name/,
    revs: 1,
  },
  {
    name: "POST /rooms/:id/messages",
    setup: (_app, room) =>
      Promise.resolve({
        method: "POST",
        path: `/rooms/${room.id}/messages`,
        token: room.token,
        body: { kind: "task", body: { n: 1.5, s: "é\u2028", big: 2 ** 53 - 1 } },
      }),
    writes: /INSERT INTO messages/,
    revs: 1,
  },
  {
    name: "POST /rooms/:id/messages/:msg_id/claim",
    setup: async (app, room) => {
      const m = await app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { body: "task" },
      });
      return {
        method: "POST",
        path: `/rooms/${room.id}/messages/${m.body.id}/claim`,
        token: room.token,
        body: { agent: "worker", ttl: 60 },
      };
    },
    writes: /UPDATE messages SET claimed_by = \?1/,
    revs: 1,
  },
  {
    name: "DELETE /rooms/:id/messages/:msg_id/claim",
    setup: async (app, room) => {
      const m = await app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { body: "task" },
      });
      await app.request("POST", `/rooms/${room.id}/messages/${m.body.id}/claim`, {
        token: room.token,
        body: { agent: "worker" },
      });
      return {
        method: "DELETE",
        path: `/rooms/${room.id}/messages/${m.body.id}/claim`,
        token: room.token,
      };
    },
    writes: /UPDATE messages SET claimed_by = NULL/,
    revs: 1,
  },
  {
    name: "PUT /rooms/:id/state",
    setup: (_app, room) =>
      Promise.resolve({
        method: "PUT",
        path: `/rooms/${room.id}/state`,
        token: room.token,
        body: { key: "k", value: { v: [1, "two"] }, ttl: 3600 },
      }),
    writes: /INSERT INTO state/,
    revs: 1,
  },
  {
    name: "DELETE /rooms/:id/state",
    setup: async (app, room) => {
      await app.request("PUT", `/rooms/${room.id}/state`, {
        token: room.token,
        body: { key: "gone", value: 1 },
      });
      return {
        method: "DELETE",
        path: `/rooms/${room.id}/state`,
        token: room.token,
        body: { key: "gone" },
      };
    },
    writes: /UPDATE state SET deleted = 1/,
    revs: 1,
  },
  {
    name: "PUT /rooms/:id/state/batch",
    setup: async (app, room) => {
      await app.request("PUT", `/rooms/${room.id}/state`, {
        token: room.token,
        body: { key: "old", value: 1 },
      });
      return {
        method: "PUT",
        path: `/rooms/${room.id}/state/batch`,
        token: room.token,
        body: {
          ops: [{ key: "a", value: 1 }, { key: "old", delete: true }, { key: "b", value: null }],
        },
      };
    },
    writes: /INSERT INTO state/,
    revs: 3,
  },
];

for (const route of ROUTES) {
  appTest(
    `${route.name} retried with its Idempotency-Key replays the answer byte for byte`,
    async (app) => {
      const room = await app.room();
      const call = await route.setup(app, room);
      const before = await roomRev(app, room);
      const first = await send(app, call, LONG_KEY);
      assert.ok(first.status >= 200 && first.status < 300, first.text);
      assert.equal(first.headers.get("idempotent-replayed"), null);
      const after = await roomRev(app, room);
      const rooms = await roomCount(app);
      for (let i = 0; i < 2; i++) {
        const again = await send(app, call, LONG_KEY);
        assert.equal(again.status, first.status, again.text);
        assert.equal(again.headers.get("idempotent-replayed"), "true");
        assert.equal(again.headers.get("content-type"), first.headers.get("content-type"));
        assert.equal(again.text, first.text, "the same bytes");
      }
      assert.equal(await roomRev(app, room), after, "the retries wrote nothing");
      assert.equal(await roomCount(app), rooms, "the retries created no room");
      if (route.revs !== null && before !== null && route.revs > 0) {
        assert.equal(after, before + route.revs);
      }
      const db = await app.service.db();
      const stored = JSON.stringify((await db.execute({ sql: "SELECT * FROM idempotency" })).rows);
      for (const field of route.secrets ?? []) {
        assert.match(first.body[field], /^as_/);
        assert.ok(!stored.includes(first.body[field]), `the stored record holds the ${field}`);
      }
    },
  );

  appTest(
    `${route.name} answered by nobody because of a crash after its commit is replayed on retry`,
    async (app) => {
      const room = await app.room();
      const call = await route.setup(app, room);
      const before = await roomRev(app, room);
      const rooms = await roomCount(app);
      const db = await app.service.db();
      const restore = crashAfter(db, route.writes);
      let lost: Res;
      try {
        lost = await send(app, call, LONG_KEY);
      } finally {
        restore();
      }
      assert.equal(lost.status, 500, "the simulated crash cut the answer off");
      const retry = await send(app, call, LONG_KEY);
      assert.ok(retry.status >= 200 && retry.status < 300, retry.text);
      assert.equal(retry.headers.get("idempotent-replayed"), "true", "the write is not repeated");
      const again = await send(app, call, LONG_KEY);
      assert.equal(again.text, retry.text);
      if (route.revs === null) {
        assert.equal(await roomRev(app, room), null);
      } else if (route.revs > 0) {
        assert.equal(await roomRev(app, room), before! + route.revs, "written exactly once");
      } else {
        assert.equal(await roomCount(app), rooms + 1, "one room created");
      }
    },
  );
}

/**
 * Makes the database throw right after the first statement or batch matching `sql` commits, as
 * a process killed between its commit and its answer would; returns the undo.
 */
function crashAfter(db: Db, sql: RegExp): () => void {
  const { execute, batch } = db;
  const { error } = console;
  console.error = () => {}; // the 500 it causes is logged as a bug, which here it is not
  let armed = true;
  const hit = (stmts: Statement[]) => {
    if (armed && stmts.some((s) => sql.test(s.sql))) {
      armed = false;
      throw new Error("simulated crash after commit");
    }
  };
  db.execute = async (stmt) => {
    const rs = await execute.call(db, stmt);
    hit([stmt]);
    return rs;
  };
  db.batch = async (stmts, mode) => {
    const rs = await batch.call(db, stmts, mode);
    hit(stmts);
    return rs;
  };
  return () => {
    db.execute = execute;
    db.batch = batch;
    console.error = error;
  };
}

const CONCURRENT: { name: string; setup: (app: TestApp, room: Room) => Promise<Call> }[] = [
  {
    name: "POST /rooms/:id/messages",
    setup: (_app, room) =>
      Promise.resolve({
        method: "POST",
        path: `/rooms/${room.id}/messages`,
        token: room.token,
        body: { body: "once" },
      }),
  },
  {
    name: "POST /rooms with an id",
    setup: () => Promise.resolve({ method: "POST", path: "/rooms", body: { id: "same-room" } }),
  },
  {
    name: "POST /rooms/:id/agents",
    setup: (_app, room) =>
      Promise.resolve({
        method: "POST",
        path: `/rooms/${room.id}/agents`,
        token: room.token,
        body: { id: "twin", name: "Twin" },
      }),
  },
  {
    name: "PUT /rooms/:id/state with if_version 0",
    setup: (_app, room) =>
      Promise.resolve({
        method: "PUT",
        path: `/rooms/${room.id}/state`,
        token: room.token,
        body: { key: "lock", value: "mine", if_version: 0 },
      }),
  },
];

for (const route of CONCURRENT) {
  appTest(
    `concurrent ${route.name} with one Idempotency-Key write once and the rest replay it`,
    async (app) => {
      const room = await app.room();
      const call = await route.setup(app, room);
      const before = await roomRev(app, room);
      const rooms = await roomCount(app);
      const results = await Promise.all(Array.from({ length: 8 }, () => send(app, call, LONG_KEY)));
      for (const r of results) assert.ok(r.status >= 200 && r.status < 300, r.text);
      const fresh = results.filter((r) => r.headers.get("idempotent-replayed") === null);
      assert.equal(fresh.length, 1, "one request wrote");
      for (const r of results) assert.equal(r.text, fresh[0].text);
      if (call.path === "/rooms") assert.equal(await roomCount(app), rooms + 1);
      else assert.equal(await roomRev(app, room), before! + 1);
    },
  );
}

appTest(
  "the same Idempotency-Key on a PUT with another value is 422 and writes nothing",
  async (app) => {
    const room = await app.room();
    const put = (value: number) =>
      send(app, {
        method: "PUT",
        path: `/rooms/${room.id}/state`,
        token: room.token,
        body: { key: "k", value },
      }, "put-key");
    assert.equal((await put(1)).status, 200);
    const other = await put(2);
    assert.equal(other.status, 422);
    assert.equal(other.body.error, "idempotency_key_reused");
    const now = await app.request("GET", `/rooms/${room.id}/state?key=k`, { token: room.token });
    assert.deepEqual([now.body.value, now.body.version], [1, 1]);
  },
);

appTest(
  "an Idempotency-Key past its window is forgotten; a younger one is still replayed",
  async (app) => {
    const room = await app.room();
    const call = (n: number) => ({
      method: "POST",
      path: `/rooms/${room.id}/messages`,
      token: room.token,
      body: { body: n },
    });
    const old = await send(app, call(1), "old-key");
    const db = await app.service.db();
    await db.execute({
      sql: "UPDATE idempotency SET created_at = ?",
      args: [new Date(Date.now() - 2 * 3600_000).toISOString()],
    });
    const young = await send(app, call(2), "young-key");
    await app.service.sweep();
    const again = await send(app, call(1), "old-key");
    assert.equal(again.status, 201);
    assert.equal(again.headers.get("idempotent-replayed"), null, "the old key was forgotten");
    assert.notEqual(again.body.id, old.body.id);
    const third = await send(app, call(1), "old-key");
    assert.equal(third.headers.get("idempotent-replayed"), "true");
    assert.equal(third.text, again.text);
    const youngAgain = await send(app, call(2), "young-key");
    assert.equal(youngAgain.headers.get("idempotent-replayed"), "true", "the young key is kept");
    assert.equal(youngAgain.text, young.text);
  },
  { SYNC_IDEMPOTENCY_HOURS: "1" },
);

appTest("a write refused with a 4xx stores nothing: its retry is evaluated again", async (app) => {
  const room = await app.room();
  const call = {
    method: "PUT",
    path: `/rooms/${room.id}/state`,
    token: room.token,
    body: { key: "k", value: 1, if_version: 1 },
  };
  const refused = await send(app, call, "cas");
  assert.equal(refused.status, 409);
  const db = await app.service.db();
  const stored = await db.execute({ sql: "SELECT count(*) FROM idempotency" });
  assert.equal(Number((stored.rows[0] as ArrayLike<unknown>)[0]), 0);
  await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "k", value: 0 },
  });
  const retry = await send(app, call, "cas");
  assert.equal(retry.status, 200, retry.text);
  assert.equal(retry.body.version, 2);
});

appTest("an answer an earlier version stored is replayed after upgrading", async (app) => {
  const room = await app.room();
  const path = `/rooms/${room.id}/messages`;
  const key = "from-before-the-upgrade";
  const text = '{"id":7,"kept":"as it was"}';
  // What the previous version stored: the whole response, AES-GCM (WebCrypto) under the scope.
  const scope = `t:${room.token}\nPOST ${path}\n${key}`;
  const digest = (s: string) => crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  const hex = (b: ArrayBuffer) =>
    [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  const aes = await crypto.subtle.importKey(
    "raw",
    await digest(`enc\n${scope}`),
    "AES-GCM",
    false,
    [
      "encrypt",
    ],
  );
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aes, new TextEncoder().encode(text)),
  );
  const body = JSON.stringify({ body: "x" });
  const db = await app.service.db();
  await db.execute({
    sql: `INSERT INTO idempotency (key_hash, room_id, request_hash, status, response, created_at)
      VALUES (?, ?, ?, 201, ?, ?)`,
    args: [
      hex(await digest(`key\n${scope}`)),
      room.id,
      hex(await digest(body)),
      btoa(String.fromCharCode(...iv, ...sealed)),
      new Date().toISOString(),
    ],
  });
  // It was stored with the whole hex SHA-256 before migration 7: the upgrade migrates it.
  await db.execute({ sql: "DELETE FROM _migrations WHERE id >= 7" });
  await migrate(db);
  const res = await app.request("POST", path, {
    token: room.token,
    raw: body,
    headers: { "idempotency-key": key },
  });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("idempotent-replayed"), "true");
  assert.equal(res.text, text);
});
