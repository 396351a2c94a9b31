// Expiry across server processes on one database: recorded once, waking waiters on any of them.
import assert from "node:assert/strict";
import { call, serverTest, startServer } from "./servers.ts";

serverTest(
  "leases and ttls running out wake waiters on two servers and take one revision each",
  async (dir) => {
    const db = `${dir}/sync.db`;
    const env = { SYNC_RATE_LIMIT: "off" };
    const a = await startServer(db, env);
    const b = await startServer(db, env);
    try {
      const room = await call(a.url, "POST", "/rooms", undefined, {});
      const id = room.body.id;
      const token = room.body.token;
      const tasks = [];
      for (let i = 0; i < 3; i++) {
        const t = await call(a.url, "POST", `/rooms/${id}/messages`, token, {
          kind: "task",
          body: i,
        });
        tasks.push(t.body);
      }
      for (const t of tasks) {
        const c = await call(a.url, "POST", `/rooms/${id}/messages/${t.id}/claim`, token, {
          agent: `worker-${t.body}`,
          ttl: 1,
        });
        assert.equal(c.status, 200);
      }
      let rev = 0;
      for (let i = 0; i < 3; i++) {
        const w = await call(b.url, "PUT", `/rooms/${id}/state`, token, {
          key: `lock:${i}`,
          value: i,
          ttl: 1,
        });
        assert.equal(w.status, 200);
        rev = w.body.rev;
      }
      // Waiters on both processes, so both run their expiry timers and race to record each one.
      const follow = async (base: string) => {
        let after = rev;
        while (after < rev + 6) {
          const w = await call(base, "GET", `/rooms/${id}/changes?after=${after}&wait=20`, token);
          assert.equal(w.status, 200);
          assert.ok(w.body.changes.length > 0, "woken by an expiry");
          after = w.body.next;
        }
        return after;
      };
      const unclaimed = [a, b].map((s) =>
        call(s.url, "GET", `/rooms/${id}/messages?kind=task&unclaimed=true&wait=20`, token)
      );
      assert.deepEqual(await Promise.all([follow(a.url), follow(b.url)]), [rev + 6, rev + 6]);
      for (const w of await Promise.all(unclaimed)) {
        assert.equal(w.status, 200);
        assert.ok(w.body.length >= 1, "an unclaimed task came back");
      }
      const feed = await call(a.url, "GET", `/rooms/${id}/changes?after=${rev}`, token);
      assert.deepEqual(
        feed.body.changes.map((c: { rev: number }) => c.rev),
        [rev + 1, rev + 2, rev + 3, rev + 4, rev + 5, rev + 6],
        "six expiries, one revision each",
      );
      const messages = feed.body.changes.filter((c: { type: string }) => c.type === "message");
      assert.deepEqual(
        messages.map((c: { message: { id: number } }) => c.message.id).sort(),
        tasks.map((t) => t.id).sort(),
      );
      for (const c of messages) assert.equal(c.message.claim, null);
      const keys = feed.body.changes.filter((c: { type: string }) => c.type === "state");
      assert.equal(keys.length, 3);
      for (const c of keys) assert.equal(c.expired, true);
      const later = await call(b.url, "GET", `/rooms/${id}`, token);
      assert.equal(later.body.rev, rev + 6, "no process recorded an expiry twice");
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  },
);

serverTest(
  "a wait on one server wakes for a lease that runs out with no other request",
  async (dir) => {
    const db = `${dir}/sync.db`;
    const a = await startServer(db);
    const b = await startServer(db);
    try {
      const room = await call(b.url, "POST", "/rooms", undefined, {});
      const id = room.body.id;
      const task = await call(b.url, "POST", `/rooms/${id}/messages`, room.body.token, {
        kind: "task",
        body: "free me",
      });
      const claimed = await call(
        b.url,
        "POST",
        `/rooms/${id}/messages/${task.body.id}/claim`,
        room.body.token,
        { agent: "gone", ttl: 1 },
      );
      assert.equal(claimed.status, 200);
      const woke = await call(
        a.url,
        "GET",
        `/rooms/${id}/messages?kind=task&unclaimed=true&wait=20`,
        room.body.token,
      );
      assert.equal(woke.status, 200);
      assert.deepEqual(woke.body.map((m: { id: number }) => m.id), [task.body.id]);
      assert.deepEqual(woke.body[0].expired_claim, {
        agent: "gone",
        expires_at: claimed.body.claim.expires_at,
      });
      assert.equal(woke.body[0].rev, claimed.body.rev + 1);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  },
);
