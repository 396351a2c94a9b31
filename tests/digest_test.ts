// The catch-up digest: what an agent needs in one answer, bounded by max_bytes.
import assert from "node:assert/strict";
import { appTest, claim, post, put, type Room, sleep, type TestApp } from "./helpers.ts";

async function digest(app: TestApp, room: Room, qs: string, token = room.token) {
  const res = await app.request("GET", `/rooms/${room.id}/digest?${qs}`, { token });
  assert.equal(res.status, 200, res.text);
  return res;
}

const bytes = (text: string) => new TextEncoder().encode(text).length;
const ids = (list: { id: number }[]) => list.map((m) => m.id);

appTest(
  "the digest holds an agent's unanswered messages, open tasks, keys, agents and counts",
  async (app) => {
    const room = await app.room();
    await app.agent(room, "lead");
    const coder = await app.agent(room, "coder");
    const answered = await post(app, room, { from: "lead", to: "coder", body: "question A" });
    await post(app, room, { from: "coder", to: "lead", reply_to: answered.id, body: "answer A" });
    const unanswered = await post(app, room, { from: "lead", to: "coder", body: "question B" });
    await post(app, room, { from: "lead", body: "to everyone" });
    await post(app, room, { from: "lead", to: "other", body: "not for coder" });

    const free = await post(app, room, { from: "lead", kind: "task", body: "free" });
    const lapsed = await post(app, room, { from: "lead", kind: "task", body: "lapsed" });
    const mine = await post(app, room, { from: "lead", kind: "task", body: "mine" });
    const done = await post(app, room, { from: "lead", kind: "task", body: "done" });
    const taken = await post(app, room, { from: "lead", kind: "task", body: "taken" });
    const elsewhere = await post(app, room, { from: "lead", to: "other", kind: "task", body: 1 });
    await claim(app, room, lapsed.id, "other", 0.2);
    await claim(app, room, mine.id, "coder", 600);
    await claim(app, room, done.id, "coder");
    await post(app, room, { from: "coder", kind: "result", reply_to: done.id, body: "ok" });
    await claim(app, room, taken.id, "other");

    await put(app, room, { key: "plan", value: { steps: [1, 2] } });
    await put(app, room, { key: "plan", value: { steps: [1, 2, 3] } });
    await put(app, room, { key: "gone", value: 1 });
    const del = await app.request("DELETE", `/rooms/${room.id}/state?key=gone`, {
      token: room.token,
    });
    assert.equal(del.status, 200);
    await put(app, room, { key: "big", value: "x".repeat(5000) });
    await sleep(300);

    const res = await digest(app, room, "after=0", coder.token);
    const d = res.body;
    assert.equal(d.room, room.id);
    assert.equal(d.agent, "coder", "an agent token reads its own digest");
    assert.equal(d.after, 0);
    const rev = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
    assert.equal(d.next, rev);
    assert.equal(d.truncated, false);
    assert.equal(d.cut, undefined);

    assert.deepEqual(ids(d.inbox), [unanswered.id], "only the question coder has not answered");
    assert.equal(d.inbox[0].body, "question B");
    assert.equal(d.inbox[0].from_agent, "lead");

    assert.deepEqual(ids(d.tasks), [free.id, lapsed.id, mine.id]);
    const status = Object.fromEntries(d.tasks.map((t: { id: number; status: string }) => [
      t.id,
      t.status,
    ]));
    assert.equal(status[free.id], "unclaimed");
    assert.equal(status[lapsed.id], "lease_expired");
    assert.equal(status[mine.id], "claimed_by_you");
    assert.equal(d.tasks[1].expired_claim.agent, "other");
    assert.equal(d.tasks[2].claim.agent, "coder");
    assert.ok(!ids(d.tasks).includes(done.id), "a task with coder's result is done");
    assert.ok(!ids(d.tasks).includes(taken.id), "a task someone else holds is not open");
    assert.ok(!ids(d.tasks).includes(elsewhere.id), "a task for another agent is not coder's");

    const keys = Object.fromEntries(d.state.map((s: { key: string }) => [s.key, s]));
    assert.deepEqual(Object.keys(keys).sort(), ["big", "gone", "plan"]);
    assert.deepEqual(keys.plan.value, { steps: [1, 2, 3] });
    assert.equal(keys.plan.version, 2, "the latest version only");
    assert.equal(keys.gone.deleted, true);
    assert.equal(keys.big.value, undefined, "a big value is cut");
    assert.equal(keys.big.value_cut.bytes, 5002);
    assert.ok(keys.big.value_cut.preview.startsWith('"xxx'));
    assert.ok(keys.big.value_cut.preview.length < 1100);

    assert.deepEqual(
      d.agents.map((a: { id: string; change: string }) => [a.id, a.change]),
      [["lead", "joined"], ["coder", "joined"]],
    );
    assert.equal(d.agents[1].online, true);
    assert.deepEqual(d.counts, { message: 5, task: 6, result: 1 });
  },
);

appTest("after= narrows the digest to what changed since the cursor", async (app) => {
  const room = await app.room();
  const coder = await app.agent(room, "coder");
  await app.agent(room, "lead");
  const old = await post(app, room, { from: "lead", to: "coder", body: "old question" });
  const task = await post(app, room, { from: "lead", kind: "task", body: "still open" });
  await put(app, room, { key: "a", value: 1 });
  await put(app, room, { key: "b", value: 1 });
  const first = (await digest(app, room, "after=0", coder.token)).body;
  assert.deepEqual(ids(first.inbox), [old.id]);

  await put(app, room, { key: "b", value: 2 });
  const fresh = await post(app, room, { from: "lead", to: "coder", body: "new question" });
  const patched = await app.request("PATCH", `/rooms/${room.id}/agents/lead`, {
    token: room.token,
    body: { status: "blocked" },
  });
  assert.equal(patched.status, 200);
  await app.agent(room, "tester");

  const d = (await digest(app, room, `after=${first.next}`, coder.token)).body;
  assert.equal(d.after, first.next);
  assert.deepEqual(ids(d.inbox), [fresh.id], "only messages after the cursor");
  assert.deepEqual(ids(d.tasks), [task.id], "open tasks whatever their age");
  assert.deepEqual(d.state.map((s: { key: string }) => s.key), ["b"]);
  assert.equal(d.state[0].value, 2);
  assert.deepEqual(
    d.agents.map((a: { id: string; change: string; status: string }) => [a.id, a.change]),
    [["lead", "updated"], ["tester", "joined"]],
  );
  assert.equal(d.agents[0].status, "blocked");
  assert.deepEqual(d.counts, { message: 1 });
});

appTest("a digest of a busy room stays within max_bytes and says what it cut", async (app) => {
  const room = await app.room();
  await app.agent(room, "coder");
  const inbox = [];
  for (let i = 0; i < 300; i++) {
    inbox.push(
      await post(app, room, { from: "lead", to: "coder", body: { n: i, text: "please look" } }),
    );
  }
  for (let i = 0; i < 60; i++) await post(app, room, { from: "lead", kind: "task", body: i });
  const ops = [];
  for (let i = 0; i < 250; i++) ops.push({ key: `key:${i}`, value: { i, pad: "y".repeat(40) } });
  for (let i = 0; i < ops.length; i += 100) {
    const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
      token: room.token,
      body: { ops: ops.slice(i, i + 100) },
    });
    assert.equal(res.status, 200, res.text);
  }

  for (const max of [2048, 4096, 16384, 65536, undefined]) {
    const qs = `agent=coder${max ? `&max_bytes=${max}` : ""}`;
    const res = await digest(app, room, qs);
    const limit = max ?? 16384;
    assert.ok(bytes(res.text) <= limit, `${bytes(res.text)} bytes for max_bytes=${limit}`);
    const d = res.body;
    assert.equal(d.truncated, true);
    assert.deepEqual(d.counts, { message: 300, task: 60 }, "counts are never cut");
    assert.ok(d.inbox.length > 0, `some of the inbox at max_bytes=${limit}`);
    // Each section keeps its oldest items and says where the rest begins.
    assert.deepEqual(ids(d.inbox), ids(inbox.slice(0, d.inbox.length)));
    assert.deepEqual(d.cut.inbox, {
      shown: d.inbox.length,
      omitted: 300 - d.inbox.length,
      more: `GET /rooms/${room.id}/messages?to=coder&after=${d.inbox.at(-1).id}`,
    });
    if (d.cut.tasks) assert.equal(d.cut.tasks.shown + d.cut.tasks.omitted, 60);
    assert.equal(d.cut.state.shown + d.cut.state.omitted, 250);
    assert.equal(d.cut.state.shown, d.state.length);
    if (limit >= 16384) assert.ok(d.state.length > 0, "the budget is shared between sections");
  }
  // The rest of the inbox continues exactly where the digest cut it.
  const d = (await digest(app, room, "agent=coder&max_bytes=4096")).body;
  const more = d.cut.inbox.more.replace(/^GET /, "");
  const next = await app.request("GET", `${more}&limit=1`, { token: room.token });
  assert.deepEqual(ids(next.body), [inbox[d.inbox.length].id]);

  const all = await digest(app, room, `agent=coder&max_bytes=${256 * 1024}`);
  assert.ok(bytes(all.text) <= 256 * 1024);
  assert.equal(all.body.truncated, false, "256 KB holds this room whole");
  assert.equal(all.body.inbox.length, 300);
  assert.equal(all.body.state.length, 250);
  const cut = (await digest(app, room, "agent=coder&max_bytes=65536")).body;
  assert.equal(cut.truncated, true);
  assert.equal(cut.needed_bytes, bytes(all.text), "a truncated digest says what would fit all");
});

appTest("the digest agent is the token's; the room token names one with agent=", async (app) => {
  const room = await app.room();
  const coder = await app.agent(room, "coder");
  await app.agent(room, "lead");
  await post(app, room, { from: "lead", to: "coder", body: "for coder" });
  await post(app, room, { from: "coder", to: "lead", body: "for lead" });
  const asLead = (await digest(app, room, "agent=lead")).body;
  assert.equal(asLead.agent, "lead");
  assert.deepEqual(asLead.inbox.map((m: { body: string }) => m.body), ["for lead"]);
  const noAgent = (await digest(app, room, "")).body;
  assert.equal(noAgent.agent, null);
  assert.deepEqual(noAgent.inbox, []);
  const other = await app.request("GET", `/rooms/${room.id}/digest?agent=lead`, {
    token: coder.token,
  });
  assert.equal(other.status, 403);
  assert.match(other.body.message, /belongs to agent "coder"/);
});

appTest("digest query errors are clear 4xx answers", async (app) => {
  const room = await app.room();
  const cases: [string, number, RegExp][] = [
    ["max_bytes=1000", 400, /max_bytes.*at least 2048/],
    ["max_bytes=300000", 400, /max_bytes.*at most 262144/],
    ["after=-1", 400, /after/],
    ["after=99", 400, /ahead of the room's revision/],
    ["limit=3", 400, /limit/],
  ];
  for (const [qs, status, message] of cases) {
    const res = await app.request("GET", `/rooms/${room.id}/digest?${qs}`, {
      token: room.token,
    });
    assert.equal(res.status, status, `${qs}: ${res.text}`);
    assert.match(res.body.message, message);
  }
  const none = await app.request("GET", `/rooms/${room.id}/digest`);
  assert.equal(none.status, 401);
  const unknown = await app.request("GET", "/rooms/nope/digest", { token: room.token });
  assert.equal(unknown.status, 404);
});

appTest("digest and expiry queries read through indexes, never the whole room", async (app) => {
  const room = await app.room();
  await post(app, room, { to: "coder", body: "x" });
  const db = await app.service.db();
  const plans: string[] = [];
  const explain = async (stmts: { sql: string; args?: unknown[] }[]) => {
    for (const s of stmts) {
      const rs = await db.execute({ sql: `EXPLAIN QUERY PLAN ${s.sql}`, args: s.args as never });
      for (const row of rs.rows) {
        const detail = String(Array.isArray(row) ? row[3] : (row as { detail: string }).detail);
        plans.push(`${detail}  <=  ${s.sql.replace(/\s+/g, " ").slice(0, 60)}`);
      }
    }
  };
  const { batch, execute } = db;
  db.batch = async (stmts, mode) => (await explain(stmts), batch.call(db, stmts, mode));
  db.execute = async (stmt) => {
    if (!/^\s*(EXPLAIN|SELECT rev, trimmed_rev|PRAGMA)/.test(stmt.sql)) await explain([stmt]);
    return await execute.call(db, stmt);
  };
  try {
    await digest(app, room, "agent=coder&after=1");
    await app.service.waiters.settle(db, room.id, -1);
  } finally {
    db.batch = batch;
    db.execute = execute;
  }
  assert.ok(plans.length > 10, plans.join("\n"));
  // A search of messages or state on the primary key by room_id alone, or a scan, reads every
  // row of the room (agents are few: reading them all is fine).
  const wide = plans.filter((p) =>
    /^(SEARCH|SCAN) (messages|state|m|r) USING PRIMARY KEY \(room_id=\?\)|^SCAN (messages|state|m|r)\b/
      .test(p)
  );
  assert.deepEqual(wide, []);
});

appTest("an agent seen after the cursor and offline now is listed as left", async (app) => {
  const room = await app.room();
  await app.agent(room, "gone");
  await app.agent(room, "quiet");
  const before = await post(app, room, { from: "lead", body: "the cursor" });
  const db = await app.service.db();
  const ago = (min: number) => new Date(Date.now() - min * 60_000).toISOString();
  await db.execute({
    sql: "UPDATE messages SET created_at = ? WHERE room_id = ? AND id = ?",
    args: [ago(10), room.id, before.id],
  });
  // "gone" was around after the cursor, "quiet" only before it; neither is online now.
  for (const [id, seen] of [["gone", ago(5)], ["quiet", ago(20)]]) {
    await db.execute({
      sql: "UPDATE agents SET last_seen = ? WHERE room_id = ? AND id = ?",
      args: [seen, room.id, id],
    });
  }
  const d = (await digest(app, room, `after=${before.id}`)).body;
  assert.deepEqual(
    d.agents.map((
      a: { id: string; change: string; online: boolean },
    ) => [a.id, a.change, a.online]),
    [["gone", "left", false]],
  );
});

appTest("in open mode an agent reading its digest is seen", async (app) => {
  const room = await app.room();
  await app.agent(room, "sleepy");
  const db = await app.service.db();
  const old = new Date(Date.now() - 10 * 60_000).toISOString();
  await db.execute({
    sql: "UPDATE agents SET last_seen = ? WHERE room_id = ? AND id = ?",
    args: [old, room.id, "sleepy"],
  });
  assert.equal((await digest(app, room, "agent=sleepy")).body.agent, "sleepy");
  let agent;
  for (let i = 0; i < 100; i++) {
    agent = await app.request("GET", `/rooms/${room.id}/agents/sleepy`);
    if (agent.body.online) break;
    await sleep(10);
  }
  assert.equal(agent!.body.online, true);
}, { SYNC_AUTH: "open" });
