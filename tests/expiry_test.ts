// Expiry is an event: a claim lease or a key's ttl running out takes the room's next revision,
// shows in the change feed and wakes the held requests it concerns.
import assert from "node:assert/strict";
import {
  appTest,
  claim,
  held,
  post,
  put,
  type Room,
  settlesWithin,
  sleep,
  type TestApp,
} from "./helpers.ts";

async function changes(app: TestApp, room: Room, after: number) {
  const res = await app.request("GET", `/rooms/${room.id}/changes?after=${after}`, {
    token: room.token,
  });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

appTest(
  "a claim lease that runs out appears in /changes at the room's next revision",
  async (app) => {
    const room = await app.room();
    const task = await post(app, room, { kind: "task", body: "x" });
    const leased = await claim(app, room, task.id, "alice", 0.2);
    await sleep(300);
    const feed = await changes(app, room, leased.rev);
    assert.equal(feed.changes.length, 1, JSON.stringify(feed));
    const [ch] = feed.changes;
    assert.equal(ch.type, "message");
    assert.equal(ch.rev, leased.rev + 1);
    assert.equal(ch.message.id, task.id);
    assert.equal(ch.message.rev, leased.rev + 1);
    assert.equal(ch.message.claim, null);
    assert.deepEqual(ch.message.expired_claim, {
      agent: "alice",
      expires_at: leased.claim.expires_at,
    });
    assert.equal(feed.next, leased.rev + 1);
    const room2 = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
    assert.equal(room2.body.rev, leased.rev + 1, "the expiry took exactly one revision");
    assert.deepEqual((await changes(app, room, feed.next)).changes, [], "and appears once");
  },
);

appTest("a key whose ttl runs out appears in /changes as deleted and expired", async (app) => {
  const room = await app.room();
  const lock = await put(app, room, { key: "lock", value: "alice", ttl: 0.2, if_version: 0 });
  await sleep(300);
  const feed = await changes(app, room, lock.rev);
  assert.equal(feed.changes.length, 1, JSON.stringify(feed));
  const [ch] = feed.changes;
  assert.equal(ch.type, "state");
  assert.equal(ch.rev, lock.rev + 1);
  assert.equal(ch.deleted, true);
  assert.equal(ch.expired, true);
  assert.equal(ch.state.key, "lock");
  assert.equal(ch.state.value, null, "the value is gone");
  assert.equal(ch.state.version, 1);
  assert.equal(ch.state.expires_at, lock.expires_at);
  const again = await put(app, room, { key: "lock", value: "bob", if_version: 0 });
  assert.equal(again.version, 2, "the key can be taken again, its version count continuing");
  assert.equal(again.rev, lock.rev + 2);
});

appTest("a plain delete is not marked expired", async (app) => {
  const room = await app.room();
  const w = await put(app, room, { key: "k", value: 1, ttl: 60 });
  const del = await app.request("DELETE", `/rooms/${room.id}/state?key=k`, { token: room.token });
  assert.equal(del.status, 200);
  const [ch] = (await changes(app, room, w.rev)).changes;
  assert.equal(ch.deleted, true);
  assert.equal("expired" in ch, false);
});

appTest("a lease renewed in time, or released, takes no expiry revision", async (app) => {
  const room = await app.room();
  const a = await post(app, room, { kind: "task", body: "a" });
  const b = await post(app, room, { kind: "task", body: "b" });
  await claim(app, room, a.id, "alice", 0.3);
  await claim(app, room, b.id, "bob", 0.3);
  await claim(app, room, a.id, "alice", 60);
  const released = await app.request("DELETE", `/rooms/${room.id}/messages/${b.id}/claim`, {
    token: room.token,
  });
  assert.equal(released.status, 200);
  await sleep(400);
  const feed = await changes(app, room, released.body.rev);
  assert.deepEqual(feed.changes, []);
  assert.equal(feed.next, released.body.rev);
});

appTest("several leases and ttls running out together take one revision each", async (app) => {
  const room = await app.room();
  const tasks = [];
  for (let i = 0; i < 3; i++) tasks.push(await post(app, room, { kind: "task", body: i }));
  for (const t of tasks) await claim(app, room, t.id, "alice", 0.2);
  let last = 0;
  for (let i = 0; i < 3; i++) {
    last = (await put(app, room, { key: `k${i}`, value: i, ttl: 0.2 })).rev;
  }
  await sleep(300);
  const feed = await changes(app, room, last);
  const revs = feed.changes.map((c: { rev: number }) => c.rev);
  assert.deepEqual(revs, [last + 1, last + 2, last + 3, last + 4, last + 5, last + 6]);
  assert.equal(feed.changes.filter((c: { type: string }) => c.type === "message").length, 3);
  assert.equal(feed.changes.filter((c: { expired?: true }) => c.expired).length, 3);
  assert.equal(feed.next, last + 6);
});

appTest("many requests noticing one expiry at once record it once", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: "x" });
  const leased = await claim(app, room, task.id, "alice", 0.2);
  await sleep(300);
  const reads = await Promise.all(
    Array.from({ length: 10 }, () => changes(app, room, leased.rev)),
  );
  for (const r of reads) assert.equal(r.next, leased.rev + 1);
  const after = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
  assert.equal(after.body.rev, leased.rev + 1);
});

appTest("a held unclaimed=true wait wakes when a task's lease runs out", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: "x" });
  await claim(app, room, task.id, "alice", 0.5);
  const waiting = app.request(
    "GET",
    `/rooms/${room.id}/messages?kind=task&unclaimed=true&wait=20`,
    { token: room.token },
  );
  await held(app, 1);
  const res = await settlesWithin(waiting, 10_000, "the unclaimed wait");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.map((m: { id: number }) => m.id), [task.id]);
  assert.equal(res.body[0].claim, null);
  assert.equal(res.body[0].expired_claim.agent, "alice");
});

appTest("a held /changes wait wakes when a key's ttl runs out", async (app) => {
  const room = await app.room();
  const lock = await put(app, room, { key: "lock", value: "alice", ttl: 0.5 });
  const waiting = app.request("GET", `/rooms/${room.id}/changes?after=${lock.rev}&wait=20`, {
    token: room.token,
  });
  await held(app, 1);
  const res = await settlesWithin(waiting, 10_000, "the change feed wait");
  assert.equal(res.status, 200);
  assert.equal(res.body.changes.length, 1);
  assert.equal(res.body.changes[0].expired, true);
  assert.equal(res.body.next, lock.rev + 1);
});

appTest("claiming a lapsed task again drops its expired_claim", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: "x" });
  await claim(app, room, task.id, "alice", 0.2);
  await sleep(300);
  const got = await app.request("GET", `/rooms/${room.id}/messages/${task.id}`, {
    token: room.token,
  });
  assert.equal(got.body.expired_claim.agent, "alice");
  const bob = await claim(app, room, task.id, "bob");
  assert.equal(bob.claim.agent, "bob");
  assert.equal("expired_claim" in bob, false);
  assert.equal(bob.rev, got.body.rev + 1, "the expiry came first, then bob's claim");
});
