// Real server processes: expiry recorded once across two of them, and the event stream over HTTP.
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

/** Reads an event stream over HTTP until it ends or `until` says stop; returns the event ids. */
async function readIds(res: Response, until = (_ids: number[]) => false): Promise<number[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const ids: number[] = [];
  let text = "";
  while (!until(ids)) {
    const { value, done } = await reader.read();
    if (done) return ids;
    text += value;
    for (const m of text.matchAll(/^id: (\d+)$/gm)) {
      if (!ids.includes(Number(m[1]))) ids.push(Number(m[1]));
    }
  }
  await reader.cancel();
  return ids;
}

serverTest("the real server streams events and ends the stream by itself", async (dir) => {
  const server = await startServer(`${dir}/sync.db`, { SYNC_STREAM_SECONDS: "2" });
  try {
    const room = await call(server.url, "POST", "/rooms", undefined, {});
    const sent = [];
    for (let i = 0; i < 3; i++) {
      sent.push(
        await call(server.url, "POST", `/rooms/${room.body.id}/messages`, room.body.token, {
          body: i,
        }),
      );
    }
    const res = await fetch(`${server.url}/rooms/${room.body.id}/changes`, {
      headers: { accept: "text/event-stream", authorization: `Bearer ${room.body.token}` },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.deepEqual(await readIds(res), sent.map((m) => m.body.rev), "then the server ends it");
  } finally {
    await server.stop();
  }
});

serverTest("a stream whose client goes away frees its held-request slot", async (dir) => {
  // Streams last 50 s here, so only the disconnect can free the one slot this client has.
  const server = await startServer(`${dir}/sync.db`, { SYNC_MAX_WAITS_PER_CLIENT: "1" });
  try {
    const room = await call(server.url, "POST", "/rooms", undefined, {});
    const headers = { accept: "text/event-stream", authorization: `Bearer ${room.body.token}` };
    const url = `${server.url}/rooms/${room.body.id}/changes`;
    const dropped = new AbortController();
    const first = await fetch(url, { headers, signal: dropped.signal });
    assert.equal(first.status, 200);
    const refused = await fetch(url, { headers });
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    dropped.abort();
    await first.body?.cancel().catch(() => {});
    let again: Response | undefined;
    for (let i = 0; i < 100; i++) {
      again = await fetch(url, { headers });
      if (again.status === 200) break;
      await again.body?.cancel();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(again!.status, 200, "the dropped stream's slot was freed");
    await again!.body?.cancel();
  } finally {
    await server.stop();
  }
});
