// Issue 3 in-process: compare-and-set, batches, races, blocking waits, the change feed, inboxes,
// threads, claims, TTLs, presence, idempotent retries, retention and idle room expiry.
import assert from "node:assert/strict";
import { appTest, held, post, type Room, settlesWithin, sleep, type TestApp } from "./helpers.ts";

async function rev(app: TestApp, room: Room): Promise<number> {
  const res = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
  assert.equal(res.status, 200);
  return res.body.rev;
}

function put(app: TestApp, room: Room, body: unknown, token = room.token) {
  return app.request("PUT", `/rooms/${room.id}/state`, { token, body });
}

async function getKey(app: TestApp, room: Room, key: string, scope = "_shared") {
  return await app.request("GET", `/rooms/${room.id}/state?scope=${scope}&key=${key}`, {
    token: room.token,
  });
}

async function ids(app: TestApp, room: Room, qs: string): Promise<number[]> {
  const res = await app.request("GET", `/rooms/${room.id}/messages?${qs}`, { token: room.token });
  assert.equal(res.status, 200, res.text);
  return res.body.map((m: { id: number }) => m.id);
}

// ---------------------------------------------------------------- compare-and-set

appTest("if_version 0 creates a key only if it does not exist", async (app) => {
  const room = await app.room();
  const created = await put(app, room, { key: "lock", value: "a", if_version: 0 });
  assert.equal(created.status, 200);
  assert.equal(created.body.version, 1);
  const revBefore = await rev(app, room);
  const again = await put(app, room, { key: "lock", value: "b", if_version: 0 });
  assert.equal(again.status, 409);
  assert.equal(again.body.error, "version_conflict");
  assert.equal(again.body.status, 409);
  assert.match(again.body.message, /"lock".*is at version 1.*expected it not to exist/);
  assert.deepEqual(again.body.current, { version: 1, value: "a", rev: created.body.rev });
  assert.equal((await getKey(app, room, "lock")).body.value, "a", "nothing written");
  assert.equal(await rev(app, room), revBefore, "no revision taken");
});

appTest("if_version writes only over the expected version", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "k", value: { n: 1 } });
  const ok = await put(app, room, { key: "k", value: { n: 2 }, if_version: 1 });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.version, 2);
  const revBefore = await rev(app, room);
  const stale = await put(app, room, { key: "k", value: { n: 99 }, if_version: 1 });
  assert.equal(stale.status, 409);
  assert.equal(stale.body.error, "version_conflict");
  assert.match(stale.body.message, /is at version 2; expected version 1/);
  assert.deepEqual(stale.body.current.value, { n: 2 });
  assert.equal(stale.body.current.version, 2);
  const ahead = await put(app, room, { key: "k", value: { n: 99 }, if_version: 3 });
  assert.equal(ahead.status, 409);
  const got = await getKey(app, room, "k");
  assert.deepEqual(got.body.value, { n: 2 });
  assert.equal(got.body.version, 2);
  assert.equal(await rev(app, room), revBefore);
});

appTest("if_version on an absent key is a 409 naming no current value", async (app) => {
  const room = await app.room();
  const res = await put(app, room, { key: "ghost", value: 1, if_version: 1 });
  assert.equal(res.status, 409);
  assert.equal(res.body.error, "version_conflict");
  assert.match(res.body.message, /does not exist/);
  assert.equal(res.body.current, null);
  assert.equal((await getKey(app, room, "ghost")).status, 404);
  assert.equal(await rev(app, room), 0);
});

appTest("a conditional delete happens only at the expected version", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "k", value: "v1" });
  await put(app, room, { key: "k", value: "v2" });
  const stale = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "k", if_version: 1 },
  });
  assert.equal(stale.status, 409);
  assert.equal(stale.body.error, "version_conflict");
  assert.deepEqual(stale.body.current, { version: 2, value: "v2", rev: 2 });
  assert.equal((await getKey(app, room, "k")).body.value, "v2");
  const ok = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "k", if_version: 2 },
  });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.deleted, true);
  assert.equal((await getKey(app, room, "k")).status, 404);
});

appTest("after a delete, if_version 0 re-creates the key at the next version", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "k", value: 1 });
  await put(app, room, { key: "k", value: 2 });
  await app.request("DELETE", `/rooms/${room.id}/state`, { token: room.token, body: { key: "k" } });
  const stale = await put(app, room, { key: "k", value: 3, if_version: 2 });
  assert.equal(stale.status, 409, "a writer holding the deleted version cannot win");
  const again = await put(app, room, { key: "k", value: 3, if_version: 0 });
  assert.equal(again.status, 200);
  assert.equal(again.body.version, 3);
});

appTest("concurrent conditional writers: exactly one wins per version", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "counter", value: 0, if_version: 0 });
  const WRITERS = 12;
  for (let version = 1; version <= 4; version++) {
    const results = await Promise.all(
      Array.from(
        { length: WRITERS },
        (_, w) =>
          put(app, room, { key: "counter", value: `v${version}-w${w}`, if_version: version }),
      ),
    );
    const winners = results.filter((r) => r.status === 200);
    const losers = results.filter((r) => r.status !== 200);
    assert.equal(winners.length, 1, `version ${version}: ${results.map((r) => r.status)}`);
    assert.ok(losers.every((r) => r.status === 409 && r.body.error === "version_conflict"));
    assert.equal(winners[0].body.version, version + 1);
    const got = await getKey(app, room, "counter");
    assert.equal(got.body.value, winners[0].body.value, "the winner's write is what is stored");
    assert.equal(got.body.version, version + 1);
  }
});

appTest("concurrent creators with if_version 0: exactly one creates the key", async (app) => {
  const room = await app.room();
  const results = await Promise.all(
    Array.from(
      { length: 10 },
      (_, w) => put(app, room, { key: "leader", value: w, if_version: 0 }),
    ),
  );
  const winners = results.filter((r) => r.status === 200);
  assert.equal(winners.length, 1, `${results.map((r) => r.status)}`);
  assert.equal(results.filter((r) => r.status === 409).length, 9);
  assert.equal((await getKey(app, room, "leader")).body.value, winners[0].body.value);
  assert.equal(await rev(app, room), 1, "losers took no revision");
});

appTest("unconditional concurrent writes all land, each with its own version", async (app) => {
  const room = await app.room();
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, w) => put(app, room, { key: "k", value: w })),
  );
  assert.ok(results.every((r) => r.status === 200));
  assert.deepEqual(
    results.map((r) => r.body.version).sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  assert.equal((await getKey(app, room, "k")).body.version, 10);
});

// ---------------------------------------------------------------- batches

appTest("PUT /state/batch applies puts and deletes together", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "old", value: "x" });
  await put(app, room, { key: "a", value: 1 });
  const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: {
      ops: [
        { key: "a", value: 2, if_version: 1 },
        { scope: "planner", key: "b", value: [1], if_version: 0 },
        { key: "old", delete: true },
        { key: "c", value: { z: null } },
      ],
    },
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.results.length, 4);
  assert.deepEqual(res.body.results.map((r: { key: string }) => r.key), ["a", "b", "old", "c"]);
  assert.deepEqual(res.body.results.map((r: { version: number }) => r.version), [2, 1, 1, 1]);
  assert.deepEqual(res.body.results.map((r: { rev: number }) => r.rev), [3, 4, 5, 6]);
  assert.equal(res.body.rev, 6);
  assert.equal((await getKey(app, room, "a")).body.value, 2);
  assert.deepEqual((await getKey(app, room, "b", "planner")).body.value, [1]);
  assert.equal((await getKey(app, room, "old")).status, 404);
  assert.deepEqual((await getKey(app, room, "c")).body.value, { z: null });
  assert.equal(await rev(app, room), 6);
});

appTest("a batch with one failed condition writes nothing and names the entry", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "a", value: 1 });
  await put(app, room, { key: "b", value: 1 });
  const before = await rev(app, room);
  const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: {
      ops: [
        { key: "a", value: 2, if_version: 1 },
        { key: "new", value: "n" },
        { key: "b", value: 2, if_version: 7 },
        { key: "c", value: 3 },
      ],
    },
  });
  assert.equal(res.status, 409);
  assert.equal(res.body.error, "version_conflict");
  assert.equal(res.body.failed, 2);
  assert.match(res.body.message, /^ops\[2\]: .*"b".*nothing was written/);
  assert.equal(res.body.current.version, 1);
  assert.equal(res.body.current.value, 1);
  assert.equal((await getKey(app, room, "a")).body.version, 1, "ops[0] rolled back");
  assert.equal((await getKey(app, room, "new")).status, 404, "ops[1] rolled back");
  assert.equal((await getKey(app, room, "c")).status, 404);
  assert.equal(await rev(app, room), before);
  const changes = await app.request("GET", `/rooms/${room.id}/changes?after=${before}`, {
    token: room.token,
  });
  assert.deepEqual(changes.body.changes, []);
});

appTest("a batch deleting an absent key fails as a whole", async (app) => {
  const room = await app.room();
  const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: { ops: [{ key: "x", value: 1 }, { key: "missing", delete: true }] },
  });
  assert.equal(res.status, 409);
  assert.equal(res.body.failed, 1);
  assert.equal(res.body.current, null);
  assert.equal((await getKey(app, room, "x")).status, 404);
  assert.equal(await rev(app, room), 0);
});

appTest("a batch with if_version 0 on an existing key fails as a whole", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "taken", value: "mine" });
  const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: { ops: [{ key: "taken", value: "yours", if_version: 0 }, { key: "y", value: 1 }] },
  });
  assert.equal(res.status, 409);
  assert.equal(res.body.failed, 0);
  assert.equal(res.body.current.value, "mine");
  assert.equal((await getKey(app, room, "taken")).body.value, "mine");
  assert.equal((await getKey(app, room, "y")).status, 404);
});

appTest(
  "a batch whose first op fails on the room's last-written key writes nothing",
  async (app) => {
    const room = await app.room();
    await put(app, room, { key: "last", value: 1 });
    const before = await rev(app, room);
    for (
      const failing of [{ key: "last", value: 2, if_version: 0 }, {
        key: "last",
        delete: true,
        if_version: 9,
      }]
    ) {
      const res = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
        token: room.token,
        body: { ops: [failing, { key: "other", value: 1 }] },
      });
      assert.equal(res.status, 409, res.text);
      assert.equal(res.body.failed, 0);
      assert.equal((await getKey(app, room, "other")).status, 404, "ops[1] not written");
      assert.equal((await getKey(app, room, "last")).body.version, 1);
      assert.equal(await rev(app, room), before);
    }
  },
);

appTest("concurrent batches over the same keys: exactly one wins", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "x", value: 0 });
  await put(app, room, { key: "y", value: 0 });
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, w) =>
      app.request("PUT", `/rooms/${room.id}/state/batch`, {
        token: room.token,
        body: {
          ops: [
            { key: "x", value: w, if_version: 1 },
            { key: "y", value: w, if_version: 1 },
          ],
        },
      })),
  );
  const winners = results.filter((r) => r.status === 200);
  assert.equal(winners.length, 1, `${results.map((r) => r.status)}`);
  assert.ok(results.filter((r) => r.status !== 200).every((r) => r.status === 409));
  const w = winners[0].body.results[0].value;
  assert.equal((await getKey(app, room, "x")).body.value, w);
  assert.equal((await getKey(app, room, "y")).body.value, w, "both keys from the same winner");
});

// ---------------------------------------------------------------- blocking waits

appTest("a waiting message poll returns as soon as a message arrives", async (app) => {
  const room = await app.room();
  const first = await post(app, room, { body: "old" });
  const waiting = app.request("GET", `/rooms/${room.id}/messages?after=${first.id}&wait=20`, {
    token: room.token,
  });
  await held(app, 1);
  const sent = await post(app, room, { body: "new" });
  const res = await settlesWithin(waiting, 5000, "the held poll");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.map((m: { id: number }) => m.id), [sent.id]);
  assert.equal(res.body[0].body, "new");
  assert.equal(app.service.waiters.size, 0);
});

appTest("a waiting poll with nothing new returns an empty list after the wait", async (app) => {
  const room = await app.room();
  const m = await post(app, room, { body: 1 });
  const res = await app.request("GET", `/rooms/${room.id}/messages?after=${m.id}&wait=0.3`, {
    token: room.token,
  });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, []);
  const ch = await app.request("GET", `/rooms/${room.id}/changes?after=${m.id}&wait=0.3`, {
    token: room.token,
  });
  assert.equal(ch.status, 200);
  assert.deepEqual(ch.body, { changes: [], next: m.id });
  assert.equal(app.service.waiters.size, 0);
});

appTest("a wait with something already newer returns at once without holding", async (app) => {
  const room = await app.room();
  const m = await post(app, room, { body: 1 });
  const res = await settlesWithin(
    app.request("GET", `/rooms/${room.id}/messages?after=0&wait=20`, { token: room.token }),
    5000,
    "the poll",
  );
  assert.deepEqual(res.body.map((x: { id: number }) => x.id), [m.id]);
});

appTest("a wait above the maximum is clamped, not refused", async (app) => {
  const room = await app.room();
  const res = await settlesWithin(
    app.request("GET", `/rooms/${room.id}/changes?wait=3600`, { token: room.token }),
    5000,
    "the clamped wait",
  );
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.changes, []);
}, { SYNC_MAX_WAIT: "0.3" });

appTest("a waiting change feed wakes on a state write", async (app) => {
  const room = await app.room();
  const waiting = app.request("GET", `/rooms/${room.id}/changes?after=0&wait=20`, {
    token: room.token,
  });
  await held(app, 1);
  const w = await put(app, room, { key: "k", value: "v" });
  const res = await settlesWithin(waiting, 5000, "the held change feed");
  assert.equal(res.status, 200);
  assert.equal(res.body.changes.length, 1);
  assert.equal(res.body.changes[0].type, "state");
  assert.equal(res.body.changes[0].state.value, "v");
  assert.equal(res.body.next, w.body.rev);
});

appTest("a filtered wait is not ended by a write it does not match", async (app) => {
  const room = await app.room();
  const res = app.request("GET", `/rooms/${room.id}/messages?kind=task&wait=0.6`, {
    token: room.token,
  });
  await held(app, 1);
  await post(app, room, { kind: "chat", body: "not a task" });
  const got = await res;
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, [], "only tasks are returned");
});

appTest("a filtered wait returns the matching write that follows others", async (app) => {
  const room = await app.room();
  const waiting = app.request("GET", `/rooms/${room.id}/messages?to=bob&wait=20`, {
    token: room.token,
  });
  await held(app, 1);
  await post(app, room, { to: "alice", body: "for alice" });
  await held(app, 1);
  const forBob = await post(app, room, { to: "bob", body: "for bob" });
  const res = await settlesWithin(waiting, 5000, "bob's inbox wait");
  assert.deepEqual(res.body.map((m: { id: number }) => m.id), [forBob.id]);
});

appTest("many waiters in one room all wake on one write", async (app) => {
  const room = await app.room();
  const waits = Array.from(
    { length: 10 },
    () => app.request("GET", `/rooms/${room.id}/changes?after=0&wait=20`, { token: room.token }),
  );
  await held(app, 10);
  const m = await post(app, room, { body: "hello all" });
  const results = await settlesWithin(Promise.all(waits), 5000, "ten waiters");
  for (const res of results) assert.equal(res.body.next, m.id);
  assert.equal(app.service.waiters.size, 0);
});

appTest("a write in another room does not wake a wait", async (app) => {
  const room = await app.room();
  const other = await app.room();
  const waiting = app.request("GET", `/rooms/${room.id}/messages?wait=0.5`, {
    token: room.token,
  });
  await held(app, 1);
  await post(app, other, { body: "elsewhere" });
  const res = await waiting;
  assert.deepEqual(res.body, []);
});

appTest("a wait on a room deleted meanwhile answers 404", async (app) => {
  const room = await app.room();
  const waiting = app.request("GET", `/rooms/${room.id}/changes?wait=20`, { token: room.token });
  await held(app, 1);
  const del = await app.request("DELETE", `/rooms/${room.id}`, { token: room.token });
  assert.equal(del.status, 200);
  const res = await settlesWithin(waiting, 5000, "the wait on a deleted room");
  assert.equal(res.status, 404);
  assert.equal(res.body.error, "not_found");
});

// ---------------------------------------------------------------- change feed

appTest("the change feed lists messages, agents and state in revision order", async (app) => {
  const room = await app.room();
  await app.agent(room, "planner"); // 1
  const m = await post(app, room, { from: "planner", kind: "task", body: "t1" }); // 2
  await put(app, room, { key: "a", value: 1 }); // 3
  await put(app, room, { key: "gone", value: 1 }); // 4
  await put(app, room, { key: "a", value: 2 }); // 5: collapses rev 3
  await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "gone" },
  }); // 6: collapses rev 4
  await app.agent(room, "coder"); // 7
  const res = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
    token: room.token,
  });
  assert.equal(res.status, 200);
  const changes = res.body.changes;
  assert.deepEqual(
    changes.map((c: { rev: number; type: string }) => [c.rev, c.type]),
    [[1, "agent"], [2, "message"], [5, "state"], [6, "state"], [7, "agent"]],
  );
  assert.equal(changes[0].agent.id, "planner");
  assert.equal(changes[0].agent.token, undefined, "no token in the feed");
  assert.deepEqual(changes[1].message, m);
  assert.equal(changes[2].deleted, false);
  assert.equal(changes[2].state.key, "a");
  assert.equal(changes[2].state.value, 2);
  assert.equal(changes[2].state.version, 2);
  assert.equal(changes[3].deleted, true);
  assert.equal(changes[3].state.key, "gone");
  assert.equal(changes[4].agent.id, "coder");
  assert.equal(res.body.next, 7);
  assert.ok(!res.text.includes("as_agent_") && !res.text.includes("token_hash"));
});

appTest("the change feed's next cursor follows a room page by page", async (app) => {
  const room = await app.room();
  const expected: number[] = [];
  for (let i = 0; i < 7; i++) {
    if (i % 2) expected.push((await put(app, room, { key: `k${i}`, value: i })).body.rev);
    else expected.push((await post(app, room, { body: i })).rev);
  }
  const seen: number[] = [];
  let after = 0;
  for (let page = 0; page < 10; page++) {
    const res = await app.request("GET", `/rooms/${room.id}/changes?after=${after}&limit=3`, {
      token: room.token,
    });
    assert.equal(res.status, 200);
    assert.ok(res.body.changes.length <= 3);
    if (res.body.changes.length === 0) {
      assert.equal(res.body.next, after, "an empty page keeps the cursor");
      break;
    }
    seen.push(...res.body.changes.map((c: { rev: number }) => c.rev));
    assert.equal(res.body.next, res.body.changes.at(-1).rev);
    after = res.body.next;
  }
  assert.deepEqual(seen, expected, "every change once, in order");
});

appTest("a claim moves its message to a newer revision in the feed", async (app) => {
  const room = await app.room();
  const m = await post(app, room, { kind: "task", body: "t" });
  await post(app, room, { body: "other" });
  const cursor = await rev(app, room);
  const claim = await app.request("POST", `/rooms/${room.id}/messages/${m.id}/claim`, {
    token: room.token,
    body: { agent: "worker" },
  });
  assert.equal(claim.status, 200);
  const res = await app.request("GET", `/rooms/${room.id}/changes?after=${cursor}`, {
    token: room.token,
  });
  assert.equal(res.body.changes.length, 1);
  assert.equal(res.body.changes[0].type, "message");
  assert.equal(res.body.changes[0].message.id, m.id);
  assert.equal(res.body.changes[0].message.claim.agent, "worker");
  assert.equal(res.body.changes[0].rev, cursor + 1);
});

appTest("a presence update moves an agent to a newer revision in the feed", async (app) => {
  const room = await app.room();
  await app.agent(room, "planner");
  await post(app, room, { body: "x" });
  const patch = await app.request("PATCH", `/rooms/${room.id}/agents/planner`, {
    token: room.token,
    body: { status: "busy", note: "migrating" },
  });
  assert.equal(patch.status, 200);
  const res = await app.request("GET", `/rooms/${room.id}/changes?after=2`, {
    token: room.token,
  });
  assert.deepEqual(res.body.changes.map((c: { type: string }) => c.type), ["agent"]);
  assert.equal(res.body.changes[0].agent.status, "busy");
  assert.equal(res.body.changes[0].agent.note, "migrating");
});

// ---------------------------------------------------------------- inboxes and threads

appTest("to= returns messages addressed to the agent plus broadcasts", async (app) => {
  const room = await app.room();
  const toA = await post(app, room, { from: "boss", to: "alice", body: 1 });
  const toB = await post(app, room, { from: "boss", to: "bob", body: 2 });
  const all = await post(app, room, { from: "carol", body: 3 });
  const toA2 = await post(app, room, { from: "bob", to: "alice", body: 4 });
  assert.deepEqual(await ids(app, room, "to=alice"), [toA.id, all.id, toA2.id]);
  assert.deepEqual(await ids(app, room, "to=bob"), [toB.id, all.id]);
  assert.deepEqual(await ids(app, room, "to=nobody"), [all.id]);
  assert.deepEqual(await ids(app, room, "from=boss"), [toA.id, toB.id]);
  assert.deepEqual(await ids(app, room, "from=bob&to=alice"), [toA2.id]);
  assert.deepEqual(await ids(app, room, `to=alice&after=${all.id}`), [toA2.id]);
  assert.deepEqual(await ids(app, room, "from=nobody"), []);
});

appTest("reply_to builds threads and thread= lists one", async (app) => {
  const room = await app.room();
  const root = await post(app, room, { body: "question" });
  const other = await post(app, room, { body: "unrelated" });
  const reply = await post(app, room, { body: "answer", reply_to: root.id });
  const nested = await post(app, room, { body: "follow-up", reply_to: reply.id });
  await post(app, room, { body: "other reply", reply_to: other.id });
  assert.equal(reply.reply_to, root.id);
  assert.equal(nested.reply_to, reply.id);
  assert.deepEqual(await ids(app, room, `thread=${root.id}`), [root.id, reply.id, nested.id]);
  assert.equal((await ids(app, room, `thread=${other.id}`)).length, 2);
});

appTest("reply_to cannot name a message of another room", async (app) => {
  const room = await app.room();
  const other = await app.room();
  await post(app, room, { body: 1 });
  const foreign = await post(app, other, { body: 2 });
  await post(app, other, { body: 3 });
  const res = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body: "x", reply_to: foreign.id + 1 },
  });
  assert.equal(res.status, 400);
  assert.match(res.body.message, /not in this room/);
});

// ---------------------------------------------------------------- claims

appTest(
  "exactly one of many concurrent claimers wins; the others learn the holder",
  async (app) => {
    const room = await app.room();
    const agents = await Promise.all(
      Array.from({ length: 8 }, (_, i) => app.agent(room, `worker-${i}`)),
    );
    for (let round = 0; round < 3; round++) {
      const task = await post(app, room, { kind: "task", body: { round } });
      const results = await Promise.all(
        agents.map((a) =>
          app.request("POST", `/rooms/${room.id}/messages/${task.id}/claim`, { token: a.token })
        ),
      );
      const winners = results.filter((r) => r.status === 200);
      assert.equal(winners.length, 1, `round ${round}: ${results.map((r) => r.status)}`);
      const holder = winners[0].body.claim.agent;
      assert.match(holder, /^worker-\d$/);
      for (const r of results.filter((r) => r.status !== 200)) {
        assert.equal(r.status, 409);
        assert.equal(r.body.error, "already_claimed");
        assert.match(r.body.message, new RegExp(`claimed by "${holder}"`));
        assert.equal(r.body.claim.agent, holder);
      }
      const got = await app.request("GET", `/rooms/${room.id}/messages/${task.id}`, {
        token: room.token,
      });
      assert.equal(got.body.claim.agent, holder);
    }
  },
);

appTest("a claim shows its holder; release frees it for another agent", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  const bob = await app.agent(room, "bob");
  const task = await post(app, room, { kind: "task", body: "build" });
  const path = `/rooms/${room.id}/messages/${task.id}/claim`;
  const claim = await app.request("POST", path, { token: alice.token });
  assert.equal(claim.status, 200);
  assert.equal(claim.body.id, task.id);
  assert.equal(claim.body.claim.agent, "alice");
  assert.match(claim.body.claim.claimed_at, /Z$/);
  assert.equal(claim.body.claim.expires_at, null);

  const again = await app.request("POST", path, { token: alice.token });
  assert.equal(again.status, 200, "the holder may claim again");
  assert.equal(again.body.claim.claimed_at, claim.body.claim.claimed_at);

  const steal = await app.request("DELETE", path, { token: bob.token });
  assert.equal(steal.status, 409);
  assert.equal(steal.body.error, "claimed_by_other");
  assert.match(steal.body.message, /"alice"/);

  const release = await app.request("DELETE", path, { token: alice.token });
  assert.equal(release.status, 200);
  assert.equal(release.body.claim, null);

  const twice = await app.request("DELETE", path, { token: alice.token });
  assert.equal(twice.status, 409);
  assert.equal(twice.body.error, "not_claimed");

  const bobs = await app.request("POST", path, { token: bob.token });
  assert.equal(bobs.status, 200);
  assert.equal(bobs.body.claim.agent, "bob");
});

appTest("the room token releases anyone's claim", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  const task = await post(app, room, { kind: "task", body: "x" });
  const path = `/rooms/${room.id}/messages/${task.id}/claim`;
  assert.equal((await app.request("POST", path, { token: alice.token })).status, 200);
  const res = await app.request("DELETE", path, { token: room.token });
  assert.equal(res.status, 200);
  assert.equal(res.body.claim, null);
});

appTest("an expired claim lease can be claimed by another agent", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: "x" });
  const path = `/rooms/${room.id}/messages/${task.id}/claim`;
  const lease = await app.request("POST", path, { body: { agent: "alice", ttl: 0.3 } });
  assert.equal(lease.status, 200);
  assert.ok(Date.parse(lease.body.claim.expires_at) > Date.parse(lease.body.claim.claimed_at));
  const early = await app.request("POST", path, { body: { agent: "bob" } });
  assert.equal(early.status, 409);
  assert.equal(early.body.claim.agent, "alice");
  await sleep(400);
  const got = await app.request("GET", `/rooms/${room.id}/messages/${task.id}`);
  assert.equal(got.body.claim, null, "an expired lease shows as unclaimed");
  const late = await app.request("POST", path, { body: { agent: "bob" } });
  assert.equal(late.status, 200);
  assert.equal(late.body.claim.agent, "bob");
  const release = await app.request("DELETE", path, { body: { agent: "alice" } });
  assert.equal(release.status, 409, "the old holder cannot release bob's claim");
}, { SYNC_AUTH: "open" });

appTest("unclaimed=true lists only messages nobody holds", async (app) => {
  const room = await app.room();
  const t1 = await post(app, room, { kind: "task", body: 1 });
  const t2 = await post(app, room, { kind: "task", body: 2 });
  const t3 = await post(app, room, { kind: "task", body: 3 });
  const t4 = await post(app, room, { kind: "task", body: 4 });
  const claim = (id: number, body: unknown) =>
    app.request("POST", `/rooms/${room.id}/messages/${id}/claim`, { body });
  assert.equal((await claim(t1.id, { agent: "a" })).status, 200);
  assert.equal((await claim(t3.id, { agent: "b", ttl: 0.2 })).status, 200);
  assert.equal((await claim(t4.id, { agent: "c" })).status, 200);
  await app.request("DELETE", `/rooms/${room.id}/messages/${t4.id}/claim`, {
    body: { agent: "c" },
  });
  assert.deepEqual(await ids(app, room, "kind=task&unclaimed=true"), [t2.id, t4.id]);
  assert.deepEqual(await ids(app, room, "kind=task&unclaimed=false"), [t1.id, t2.id, t3.id, t4.id]);
  await sleep(300);
  assert.deepEqual(await ids(app, room, "unclaimed=true"), [t2.id, t3.id, t4.id]);
}, { SYNC_AUTH: "open" });

appTest("a claim in open mode needs the agent named in the body", async (app) => {
  const room = await app.room();
  const task = await post(app, room, { kind: "task", body: 1 });
  const res = await app.request("POST", `/rooms/${room.id}/messages/${task.id}/claim`);
  assert.equal(res.status, 400);
  assert.match(res.body.message, /missing field "agent"/);
  const got = await app.request("GET", `/rooms/${room.id}/messages/${task.id}`);
  assert.equal(got.body.claim, null);
}, { SYNC_AUTH: "open" });

// ---------------------------------------------------------------- state ttl

appTest("an expired state entry reads as absent and can be re-created", async (app) => {
  const room = await app.room();
  const lock = await put(app, room, { key: "lock", value: "alice", ttl: 0.3, if_version: 0 });
  assert.equal(lock.status, 200);
  assert.match(lock.body.expires_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  const taken = await put(app, room, { key: "lock", value: "bob", if_version: 0 });
  assert.equal(taken.status, 409, "a live lease cannot be taken");
  assert.equal((await getKey(app, room, "lock")).body.value, "alice");
  await sleep(400);
  assert.equal((await getKey(app, room, "lock")).status, 404);
  const list = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
  assert.deepEqual(list.body, []);
  const renew = await put(app, room, { key: "lock", value: "alice", if_version: 1 });
  assert.equal(renew.status, 409, "an expired version cannot be renewed");
  const del = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "lock" },
  });
  assert.equal(del.status, 404, "an expired key cannot be deleted");
  const bob = await put(app, room, { key: "lock", value: "bob", if_version: 0 });
  assert.equal(bob.status, 200);
  assert.equal(bob.body.value, "bob");
  assert.equal(bob.body.version, 2, "the version count continues");
  assert.equal(bob.body.expires_at, null);
});

appTest("a write without ttl clears an earlier expiry", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "k", value: 1, ttl: 0.3 });
  const w = await put(app, room, { key: "k", value: 2, if_version: 1 });
  assert.equal(w.status, 200);
  assert.equal(w.body.expires_at, null);
  await sleep(400);
  assert.equal((await getKey(app, room, "k")).body.value, 2);
});

// ---------------------------------------------------------------- presence

appTest("agents show status, note, last_seen and online; PATCH changes them", async (app) => {
  const room = await app.room();
  const agent = await app.agent(room, "planner");
  const list = await app.request("GET", `/rooms/${room.id}/agents`, { token: room.token });
  const a = list.body[0];
  assert.equal(a.status, "idle");
  assert.equal(a.note, null);
  assert.match(a.last_seen, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.equal(a.online, true);

  const patch = await app.request("PATCH", `/rooms/${room.id}/agents/planner`, {
    token: agent.token,
    body: { status: "busy", note: "busy: migrating schema, back by 14:30" },
  });
  assert.equal(patch.status, 200);
  assert.equal(patch.body.status, "busy");
  assert.equal(patch.body.note, "busy: migrating schema, back by 14:30");
  assert.equal(patch.body.token, undefined);
  const one = await app.request("GET", `/rooms/${room.id}/agents/planner`, { token: room.token });
  assert.equal(one.body.status, "busy");
  assert.equal(one.body.note, "busy: migrating schema, back by 14:30");
  assert.equal(one.body.name, "planner", "fields not patched keep their value");

  const cleared = await app.request("PATCH", `/rooms/${room.id}/agents/planner`, {
    token: agent.token,
    body: { note: null },
  });
  assert.equal(cleared.body.note, null);
  assert.equal(cleared.body.status, "busy");
});

appTest("an agent not seen within the online window is offline until it acts", async (app) => {
  const room = await app.room();
  const agent = await app.agent(room, "sleepy");
  const db = await app.service.db();
  const old = new Date(Date.now() - 10 * 60_000).toISOString();
  await db.execute({
    sql: "UPDATE agents SET last_seen = ? WHERE room_id = ? AND id = ?",
    args: [old, room.id, "sleepy"],
  });
  const before = await app.request("GET", `/rooms/${room.id}/agents/sleepy`, {
    token: room.token,
  });
  assert.equal(before.body.online, false);
  assert.equal(before.body.last_seen, old);
  assert.equal(await rev(app, room), 1);

  const read = await app.request("GET", `/rooms/${room.id}/messages`, { token: agent.token });
  assert.equal(read.status, 200);
  let after = before;
  for (let i = 0; i < 100 && !after.body.online; i++) {
    await sleep(10);
    after = await app.request("GET", `/rooms/${room.id}/agents/sleepy`, { token: room.token });
  }
  assert.equal(after.body.online, true, "any request with its token marks the agent seen");
  assert.ok(after.body.last_seen > old);
  assert.equal(await rev(app, room), 1, "being seen takes no revision");
});

appTest("a room token reading does not mark any agent seen", async (app) => {
  const room = await app.room();
  await app.agent(room, "idle-one");
  const db = await app.service.db();
  const old = new Date(Date.now() - 10 * 60_000).toISOString();
  await db.execute({
    sql: "UPDATE agents SET last_seen = ? WHERE room_id = ?",
    args: [old, room.id],
  });
  await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
  await sleep(50);
  const a = await app.request("GET", `/rooms/${room.id}/agents/idle-one`, { token: room.token });
  assert.equal(a.body.last_seen, old);
  assert.equal(a.body.online, false);
});

// ---------------------------------------------------------------- idempotency

appTest("a POST retried with the same Idempotency-Key is replayed, not repeated", async (app) => {
  const room = await app.room();
  const send = () =>
    app.request("POST", `/rooms/${room.id}/messages`, {
      token: room.token,
      body: { kind: "result", body: { answer: 42 } },
      headers: { "idempotency-key": "retry-1" },
    });
  const first = await send();
  assert.equal(first.status, 201);
  assert.equal(first.headers.get("idempotent-replayed"), null);
  const revAfter = await rev(app, room);
  const second = await send();
  assert.equal(second.status, 201);
  assert.equal(second.headers.get("idempotent-replayed"), "true");
  assert.deepEqual(second.body, first.body);
  const third = await send();
  assert.deepEqual(third.body, first.body);
  assert.deepEqual(await ids(app, room, "after=0"), [first.body.id], "one message only");
  assert.equal(await rev(app, room), revAfter);
});

appTest("the same Idempotency-Key with a different body is 422 and writes nothing", async (app) => {
  const room = await app.room();
  const first = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body: "one" },
    headers: { "idempotency-key": "k-1" },
  });
  assert.equal(first.status, 201);
  const other = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body: "two" },
    headers: { "idempotency-key": "k-1" },
  });
  assert.equal(other.status, 422);
  assert.equal(other.body.error, "idempotency_key_reused");
  assert.equal(other.body.status, 422);
  assert.deepEqual(await ids(app, room, "after=0"), [first.body.id]);
});

appTest("different Idempotency-Keys are different requests", async (app) => {
  const room = await app.room();
  for (const key of ["a", "b"]) {
    const res = await app.request("POST", `/rooms/${room.id}/messages`, {
      token: room.token,
      body: { body: "same" },
      headers: { "idempotency-key": key },
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("idempotent-replayed"), null);
  }
  assert.equal((await ids(app, room, "after=0")).length, 2);
});

appTest(
  "an Idempotency-Key is scoped to its path: another room does not replay it",
  async (app) => {
    const a = await app.room();
    const b = await app.room();
    for (const room of [a, b]) {
      const res = await app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { body: "x" },
        headers: { "idempotency-key": "shared-key" },
      });
      assert.equal(res.status, 201);
      assert.equal(res.body.room_id, room.id);
      assert.equal(res.headers.get("idempotent-replayed"), null);
    }
  },
);

appTest("a failed request does not burn its Idempotency-Key", async (app) => {
  const room = await app.room();
  const bad = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { content: "oops" },
    headers: { "idempotency-key": "fix-me" },
  });
  assert.equal(bad.status, 400);
  const good = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body: "fixed" },
    headers: { "idempotency-key": "fix-me" },
  });
  assert.equal(good.status, 201);
  assert.equal(good.headers.get("idempotent-replayed"), null);
});

appTest("concurrent requests with one Idempotency-Key write once", async (app) => {
  const room = await app.room();
  const results = await Promise.all(
    Array.from({ length: 6 }, () =>
      app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { body: "once" },
        headers: { "idempotency-key": "race-1" },
      })),
  );
  for (const r of results) assert.equal(r.status, 201, r.text);
  for (const r of results) assert.equal(r.body.id, results[0].body.id);
  const replayed = results.filter((r) => r.headers.get("idempotent-replayed") === "true");
  assert.equal(replayed.length, results.length - 1, "one wrote, the others replayed it");
  assert.equal((await ids(app, room, "after=0")).length, 1);
});

appTest("an Idempotency-Key older than the window is forgotten on sweep", async (app) => {
  const room = await app.room();
  const send = () =>
    app.request("POST", `/rooms/${room.id}/messages`, {
      token: room.token,
      body: { body: "daily" },
      headers: { "idempotency-key": "day-1" },
    });
  const first = await send();
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE idempotency SET created_at = ?",
    args: [new Date(Date.now() - 2 * 3600_000).toISOString()],
  });
  await app.service.sweep();
  const second = await send();
  assert.equal(second.status, 201);
  assert.equal(second.headers.get("idempotent-replayed"), null);
  assert.notEqual(second.body.id, first.body.id);
}, { SYNC_IDEMPOTENCY_HOURS: "1" });

appTest("a retried room creation replays the room with its tokens, once created", async (app) => {
  const send = () =>
    app.request("POST", "/rooms", {
      body: { meta: { n: 1 } },
      headers: { "idempotency-key": "create-room-6a1f0d3e-8c2b-4f57-9d10-3b7e2c4a9f81" },
    });
  const first = await send();
  assert.equal(first.status, 201);
  const second = await send();
  assert.equal(second.status, 201);
  assert.equal(second.headers.get("idempotent-replayed"), "true");
  assert.deepEqual(second.body, first.body);
  const db = await app.service.db();
  const rs = await db.execute({ sql: "SELECT count(*) FROM rooms" });
  assert.equal(Number((rs.rows[0] as ArrayLike<unknown>)[0]), 1, "one room created");
  const stored = await db.execute({ sql: "SELECT response FROM idempotency" });
  const text = JSON.stringify(stored.rows);
  assert.ok(!text.includes(first.body.token), "the stored response does not hold the token");
});

appTest("a retried claim is replayed with the original response", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  const task = await post(app, room, { kind: "task", body: 1 });
  const claim = () =>
    app.request("POST", `/rooms/${room.id}/messages/${task.id}/claim`, {
      token: alice.token,
      headers: { "idempotency-key": "claim-1" },
    });
  const first = await claim();
  assert.equal(first.status, 200);
  const before = await rev(app, room);
  const second = await claim();
  assert.equal(second.headers.get("idempotent-replayed"), "true");
  assert.deepEqual(second.body, first.body);
  assert.equal(await rev(app, room), before);
});

// ---------------------------------------------------------------- retention

appTest("SYNC_MAX_MESSAGES keeps the newest messages; older cursors get 410", async (app) => {
  const room = await app.room();
  const sent: number[] = [];
  for (let i = 0; i < 12; i++) sent.push((await post(app, room, { body: i })).id);
  const kept = await ids(app, room, "after=0");
  assert.deepEqual(kept, sent.slice(-5), "only the newest 5 are kept");
  const trimmed = sent[sent.length - 6];

  for (const path of ["messages", "changes"]) {
    const res = await app.request("GET", `/rooms/${room.id}/${path}?after=${sent[1]}`, {
      token: room.token,
    });
    assert.equal(res.status, 410, path);
    assert.equal(res.body.error, "cursor_expired");
    assert.equal(res.body.status, 410);
    assert.equal(res.body.trimmed_rev, trimmed);
    // Messages may resume past the gap; the feed must re-read, or it would skip kept changes.
    assert.match(
      res.body.message,
      path === "messages" ? new RegExp(`after=${trimmed}`) : /after=0/,
    );
    if (path === "changes") assert.doesNotMatch(res.body.message, new RegExp(`after=${trimmed}`));
  }
  assert.deepEqual(await ids(app, room, `after=${trimmed}`), sent.slice(-5));
  assert.deepEqual(await ids(app, room, `after=${sent[8]}`), sent.slice(-3));
  const changes = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
    token: room.token,
  });
  assert.equal(changes.status, 200);
  assert.deepEqual(changes.body.changes.map((c: { rev: number }) => c.rev), sent.slice(-5));
  const gone = await app.request("GET", `/rooms/${room.id}/messages/${sent[0]}`, {
    token: room.token,
  });
  assert.equal(gone.status, 404);
}, { SYNC_MAX_MESSAGES: "5" });

appTest("retention in one room leaves another room's messages alone", async (app) => {
  const busy = await app.room();
  const quiet = await app.room();
  const q1 = await post(app, quiet, { body: "keep me" });
  for (let i = 0; i < 10; i++) await post(app, busy, { body: i });
  assert.deepEqual(await ids(app, quiet, "after=0"), [q1.id]);
  assert.equal((await ids(app, busy, "after=0")).length, 3);
}, { SYNC_MAX_MESSAGES: "3" });

appTest("SYNC_MESSAGE_TTL_DAYS drops old messages on sweep; older cursors get 410", async (app) => {
  const room = await app.room();
  const old1 = await post(app, room, { body: "old" });
  const old2 = await post(app, room, { body: "old too" });
  const fresh = await post(app, room, { body: "fresh" });
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE messages SET created_at = ? WHERE room_id = ? AND id IN (?, ?)",
    args: [new Date(Date.now() - 3 * 86400_000).toISOString(), room.id, old1.id, old2.id],
  });
  await app.service.sweep();
  assert.deepEqual(await ids(app, room, "after=0"), [fresh.id]);
  const res = await app.request("GET", `/rooms/${room.id}/messages?after=${old1.id}`, {
    token: room.token,
  });
  assert.equal(res.status, 410);
  assert.equal(res.body.trimmed_rev, old2.id);
}, { SYNC_MESSAGE_TTL_DAYS: "1" });

appTest("sweep expires rooms idle longer than SYNC_ROOM_TTL_DAYS, and only those", async (app) => {
  const idle = await app.room({ id: "idle-room" });
  const active = await app.room({ id: "active-room" });
  for (const room of [idle, active]) {
    await app.agent(room, "a");
    await post(app, room, { body: 1 });
    await put(app, room, { key: "k", value: 1 });
  }
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE rooms SET active_at = ? WHERE id = ?",
    args: [new Date(Date.now() - 3 * 86400_000).toISOString(), idle.id],
  });
  await app.service.sweep();
  const gone = await app.request("GET", `/rooms/${idle.id}`, { token: idle.token });
  assert.equal(gone.status, 404);
  for (const table of ["agents", "messages", "state"]) {
    const rs = await db.execute({
      sql: `SELECT count(*) FROM ${table} WHERE room_id = ?`,
      args: [idle.id],
    });
    assert.equal(Number((rs.rows[0] as ArrayLike<unknown>)[0]), 0, table);
  }
  const kept = await app.request("GET", `/rooms/${active.id}`, { token: active.token });
  assert.equal(kept.status, 200);
  assert.equal(kept.body.rev, 3);
  assert.equal((await ids(app, active, "after=0")).length, 1);
}, { SYNC_ROOM_TTL_DAYS: "1" });

appTest("a write keeps a room alive past the idle period", async (app) => {
  const room = await app.room();
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE rooms SET active_at = ? WHERE id = ?",
    args: [new Date(Date.now() - 3 * 86400_000).toISOString(), room.id],
  });
  await post(app, room, { body: "still here" });
  await app.service.sweep();
  const res = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
  assert.equal(res.status, 200);
}, { SYNC_ROOM_TTL_DAYS: "1" });

appTest("without SYNC_ROOM_TTL_DAYS rooms never expire", async (app) => {
  const room = await app.room();
  const db = await app.service.db();
  await db.execute({
    sql: "UPDATE rooms SET active_at = ? WHERE id = ?",
    args: ["2000-01-01T00:00:00.000Z", room.id],
  });
  await app.service.sweep();
  assert.equal((await app.request("GET", `/rooms/${room.id}`, { token: room.token })).status, 200);
});
