// What the fast storage paths must keep: group commit, the room counters, retention, spliced JSON.
import assert from "node:assert/strict";
import { type Db, openDb } from "../db.ts";
import * as q from "../schema.ts";
import { appTest, DRIVERS, type TestApp } from "./helpers.ts";

type Room = { id: string; token: string };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function put(app: TestApp, room: Room, body: Record<string, unknown>) {
  return app.request("PUT", `/rooms/${room.id}/state`, { token: room.token, body });
}

async function post(app: TestApp, room: Room, body: unknown) {
  const res = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body },
  });
  assert.equal(res.status, 201, res.text);
  return res.body as { id: number; rev: number };
}

/** A fresh database file of each driver, with a second connection to the same file. */
function dbTest(name: string, fn: (db: Db, other: Db) => Promise<void>) {
  for (const driver of DRIVERS) {
    Deno.test(`${name} [${driver}]`, async () => {
      const dir = await Deno.makeTempDir();
      const db = await openDb({ url: `${dir}/t.db`, driver });
      const other = await openDb({ url: `${dir}/t.db`, driver });
      try {
        await db.execute({ sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)" });
        await fn(db, other);
      } finally {
        db.close();
        other.close();
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}

async function ids(db: Db): Promise<number[]> {
  const rs = await db.execute({ sql: "SELECT id FROM t ORDER BY id" });
  return rs.rows.map((r) => Number((r as ArrayLike<unknown>)[0]));
}

function insert(db: Db, id: number) {
  return db.execute({ sql: "INSERT INTO t (id, v) VALUES (?, ?)", args: [id, `v${id}`] });
}

// ---------------------------------------------------------------- group commit

dbTest(
  "writes sent together all land, each committed before its caller hears",
  async (db, other) => {
    const writes = Array.from({ length: 50 }, (_, i) =>
      insert(db, i + 1).then(async (rs) => {
        // Settled only after the commit: another connection sees the row already.
        assert.equal(rs.rowsAffected, 1);
        assert.ok((await ids(other)).includes(i + 1), `row ${i + 1} not visible after its answer`);
      }));
    await Promise.all(writes);
    assert.deepEqual(await ids(other), Array.from({ length: 50 }, (_, i) => i + 1));
  },
);

dbTest("a failing write among writes sent together fails alone", async (db, other) => {
  await insert(db, 2);
  const results = await Promise.allSettled([insert(db, 1), insert(db, 2), insert(db, 3)]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.match(String((results[1] as PromiseRejectedResult).reason), /UNIQUE|constraint/i);
  assert.deepEqual(await ids(other), [1, 2, 3]);
});

dbTest(
  "a failing batch sent with other writes rolls back whole; the others commit",
  async (db, other) => {
    await insert(db, 5);
    const stmt = (id: number) => ({ sql: "INSERT INTO t (id, v) VALUES (?, 'b')", args: [id] });
    const results = await Promise.allSettled([
      insert(db, 1),
      db.batch([stmt(2), stmt(3), stmt(5)], "write"),
      db.batch([stmt(6), stmt(7)], "write"),
      insert(db, 4),
    ]);
    assert.deepEqual(results.map((r) => r.status), [
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
    ]);
    assert.deepEqual(await ids(other), [1, 4, 5, 6, 7], "nothing of the failed batch is stored");
  },
);

dbTest("a read sent with writes answers, and sees each write once it is answered", async (db) => {
  const write = insert(db, 1);
  const read = ids(db);
  await write;
  assert.ok((await read).length <= 1);
  assert.deepEqual(await ids(db), [1]);
});

appTest("concurrent posts to one room all land with distinct ids and revisions", async (app) => {
  const room = await app.room();
  const sent = await Promise.all(Array.from({ length: 40 }, (_, i) => post(app, room, i)));
  const revs = new Set(sent.map((m) => m.rev));
  assert.equal(revs.size, 40);
  const list = await app.request("GET", `/rooms/${room.id}/messages?limit=100`, {
    token: room.token,
  });
  assert.deepEqual(
    list.body.map((m: { id: number }) => m.id),
    sent.map((m) => m.id).sort((a, b) => a - b),
  );
});

appTest("concurrent compare-and-set writes on one key: exactly one wins", async (app) => {
  const room = await app.room();
  assert.equal((await put(app, room, { key: "lock", value: 0 })).status, 200);
  const tries = await Promise.all(
    Array.from({ length: 20 }, (_, i) => put(app, room, { key: "lock", value: i, if_version: 1 })),
  );
  assert.deepEqual(tries.map((r) => r.status).sort(), [200, ...Array(19).fill(409)]);
});

// ---------------------------------------------------------------- the key counter

appTest(
  "a room at SYNC_MAX_KEYS takes updates, and a new key after a delete or an expiry",
  async (app) => {
    const room = await app.room();
    assert.equal((await put(app, room, { key: "short", value: 1, ttl: 0.2 })).status, 200);
    assert.equal((await put(app, room, { key: "b", value: 1 })).status, 200);
    const full = await put(app, room, { key: "c", value: 1 });
    assert.equal(full.status, 409);
    assert.equal(full.body.error, "room_full");
    assert.equal((await put(app, room, { key: "b", value: 2 })).status, 200, "an update");
    await sleep(300);
    assert.equal((await put(app, room, { key: "c", value: 1 })).status, 200, "after an expiry");
    const back = await put(app, room, { key: "short", value: 1 });
    assert.equal(back.status, 409, "an expired key written again is a new key");
    assert.equal(back.body.error, "room_full");
    const cas = await put(app, room, { key: "d", value: 1, if_version: 0 });
    assert.equal(cas.status, 409);
    assert.equal(cas.body.error, "room_full");
    const del = await app.request("DELETE", `/rooms/${room.id}/state`, {
      token: room.token,
      body: { key: "b" },
    });
    assert.equal(del.status, 200);
    assert.equal((await put(app, room, { key: "short", value: 2 })).status, 200, "after a delete");
    const list = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
    assert.deepEqual(list.body.map((e: { key: string }) => e.key), ["c", "short"]);
  },
  { SYNC_MAX_KEYS: "2" },
);

appTest("the room's key counter matches its stored keys after every kind of write", async (app) => {
  const room = await app.room();
  const batch = (ops: unknown[]) =>
    app.request("PUT", `/rooms/${room.id}/state/batch`, { token: room.token, body: { ops } });
  await put(app, room, { key: "a", value: 1 });
  await put(app, room, { key: "b", value: 1, scope: "s" });
  await batch([{ key: "c", value: 1 }, { key: "a", delete: true }]);
  await batch([{ key: "d", value: 1 }, { key: "c", value: 2, if_version: 7 }]); // fails whole
  await put(app, room, { key: "a", value: 2 });
  await put(app, room, { key: "e", value: 1, ttl: 3600 });
  await app.request("DELETE", `/rooms/${room.id}/state`, { token: room.token, body: { key: "e" } });
  await put(app, room, { key: "e", value: 3, if_version: 0 });
  const db = await app.service.db();
  const rs = await db.execute({
    sql: `SELECT state_keys, (SELECT count(*) FROM state WHERE room_id = rooms.id AND deleted = 0)
      FROM rooms WHERE id = ?`,
    args: [room.id],
  });
  const [counter, stored] = Array.from(rs.rows[0] as ArrayLike<unknown>).map(Number);
  assert.equal(stored, 4); // a, b, c, e
  assert.equal(counter, stored);
  assert.equal(await q.countState(db, room.id), 4);
});

// ---------------------------------------------------------------- retention

appTest("retention keeps exactly the newest N messages and refuses older cursors", async (app) => {
  const room = await app.room();
  const sent: number[] = [];
  for (let i = 0; i < 30; i++) {
    sent.push((await post(app, room, i)).id);
    // Revisions taken by state writes leave gaps between message ids.
    if (i % 3 === 0) await put(app, room, { key: `k${i}`, value: i });
  }
  const list = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
    token: room.token,
  });
  assert.deepEqual(list.body.map((m: { id: number }) => m.id), sent.slice(-4));
  const old = await app.request("GET", `/rooms/${room.id}/messages?after=${sent[20]}`, {
    token: room.token,
  });
  assert.equal(old.status, 410);
  assert.equal(old.body.trimmed_rev, sent[25]);
  const db = await app.service.db();
  const rs = await db.execute({ sql: "SELECT msg_count FROM rooms WHERE id = ?", args: [room.id] });
  assert.equal(Number((rs.rows[0] as ArrayLike<unknown>)[0]), 4);
}, { SYNC_MAX_MESSAGES: "4" });

appTest("a trim removes only the excess over the cap, and again nothing", async (app) => {
  const room = await app.room();
  const sent: number[] = [];
  for (let i = 0; i < 10; i++) sent.push((await post(app, room, i)).id);
  const db = await app.service.db();
  await q.trimMessages(db, room.id, 20, null);
  assert.equal((await q.listMessages(db, room.id, { after: 0, limit: 100 })).length, 10);
  await q.trimMessages(db, room.id, 3, null);
  await q.trimMessages(db, room.id, 3, null);
  const kept = await q.listMessages(db, room.id, { after: 0, limit: 100 });
  assert.deepEqual(kept.map((m) => m.id), sent.slice(-3));
  const auth = await q.getRoomAuth(db, room.id);
  assert.equal(auth?.trimmed_rev, sent[6]);
}, { SYNC_MAX_MESSAGES: "0" });

// ---------------------------------------------------------------- spliced JSON

appTest("listings splice stored JSON exactly as it was sent", async (app) => {
  const room = await app.room();
  const bodies = [
    {
      text: "a \u2028 line\nbreak",
      n: 1,
      f: 1.5,
      big: 1e21,
      neg: -0.000001,
      deep: [[{ a: null }]],
    },
    'just text with "quotes" and \\ slashes',
    12345678901234,
    null,
    [],
  ];
  for (const b of bodies) await post(app, room, b);
  await put(app, room, { key: "k", value: { nested: { x: [1, "two", false] } } });
  const list = await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
  assert.equal(list.headers.get("content-type"), "application/json");
  assert.deepEqual(list.body.map((m: { body: unknown }) => m.body), bodies);
  for (const m of list.body) {
    const one = await app.request("GET", `/rooms/${room.id}/messages/${m.id}`, {
      token: room.token,
    });
    assert.equal(JSON.stringify(m), one.text, "a listed message reads as the message itself");
  }
  const changes = await app.request("GET", `/rooms/${room.id}/changes`, { token: room.token });
  assert.deepEqual(changes.body.changes.at(-1).state.value, { nested: { x: [1, "two", false] } });
  assert.deepEqual(
    changes.body.changes.filter((c: { type: string }) => c.type === "message")
      .map((c: { message: unknown }) => c.message),
    list.body,
  );
});

appTest("one write answers hundreds of held requests, each with that write", async (app) => {
  const room = await app.room();
  const before = await post(app, room, "before");
  const get = (path: string) => app.request("GET", path, { token: room.token });
  const feeds = Array.from(
    { length: 300 },
    () => get(`/rooms/${room.id}/changes?after=${before.rev}&wait=10`),
  );
  const lists = Array.from(
    { length: 100 },
    (_, i) =>
      get(`/rooms/${room.id}/messages?after=${before.id}&wait=10${i % 2 ? "&kind=message" : ""}`),
  );
  await sleep(200);
  const sent = await post(app, room, "wake");
  for (const res of await Promise.all(feeds)) {
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.changes.map((c: { rev: number }) => c.rev), [sent.rev]);
  }
  for (const res of await Promise.all(lists)) {
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.map((m: { id: number }) => m.id), [sent.id]);
  }
}, { SYNC_MAX_WAITS_PER_CLIENT: "1000" });

for (const driver of DRIVERS) {
  Deno.test(`a database from before the room counters gets them counted [${driver}]`, async () => {
    const dir = await Deno.makeTempDir();
    const db = await openDb({ url: `${dir}/old.db`, driver });
    try {
      await q.migrate(db);
      await q.createRoom(db, { id: "r", meta: null, tokenHash: null, viewTokenHash: null });
      for (let i = 0; i < 5; i++) {
        await q.insertMessage(db, {
          roomId: "r",
          from: null,
          to: null,
          kind: "message",
          body: i,
          replyTo: null,
        });
      }
      for (const key of ["a", "b", "c"]) {
        await q.putState(db, "r", { scope: "_shared", key, value: 1 }, 10);
      }
      await q.deleteState(db, "r", { scope: "_shared", key: "b" });
      // Back to the first migration's shape: no counters, no expiry index, the old triggers.
      const tables = ["messages", "agents", "state"];
      await db.batch(
        [
          ...tables.flatMap((
            t,
          ) => [`DROP TRIGGER ${t}_rev_insert`, `DROP TRIGGER ${t}_rev_update`]),
          "DROP INDEX state_expires",
          "ALTER TABLE rooms DROP COLUMN msg_count",
          "ALTER TABLE rooms DROP COLUMN state_keys",
          ...tables.flatMap((t) => [
            `CREATE TRIGGER ${t}_rev_insert AFTER INSERT ON ${t} BEGIN SELECT 1; END`,
            `CREATE TRIGGER ${t}_rev_update AFTER UPDATE ON ${t} BEGIN SELECT 1; END`,
          ]),
          "DELETE FROM _migrations WHERE id = 5", // the migration that added the counters
        ].map((sql) => ({ sql })),
        "write",
      );
      await q.migrate(db);
      const rs = await db.execute({
        sql: "SELECT msg_count, state_keys FROM rooms WHERE id = 'r'",
      });
      assert.deepEqual(Array.from(rs.rows[0] as ArrayLike<unknown>).map(Number), [5, 2]);
      await q.putState(db, "r", { scope: "_shared", key: "d", value: 1 }, 10);
      assert.equal(await q.countState(db, "r"), 3);
    } finally {
      db.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

appTest(
  "deleting a room finds each table's rows by index, never by scanning a table",
  async (app) => {
    const db = await app.service.db();
    for (const sql of q.DELETE_ROOM) {
      const rs = await db.execute({ sql: `EXPLAIN QUERY PLAN ${sql}`, args: ["r"] });
      const plan = rs.rows.map((r) => String((r as ArrayLike<unknown>)[3] ?? Object.values(r)[3]))
        .join("; ");
      assert.match(plan, /^SEARCH /, `${sql}: ${plan}`);
    }
  },
);
