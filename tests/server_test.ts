// Real server processes started as `deno task start` does: the agent loop, crashes, races, wake-ups.
import assert from "node:assert/strict";
import { call, serverTest, startServer } from "./servers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const test = serverTest;

test("the README's typical agent loop works against the real server over HTTP", async (dir) => {
  const server = await startServer(`${dir}/sync.db`);
  try {
    const base = server.url;
    const room = await call(base, "POST", "/rooms", undefined, { meta: { goal: "ship" } });
    assert.equal(room.status, 201);
    const agent = await call(base, "POST", `/rooms/${room.body.id}/agents`, room.body.token, {
      id: "worker",
      name: "Worker",
      role: "coder",
    });
    assert.equal(agent.status, 201);
    const token = agent.body.token;
    let cursor = 0;
    for (let round = 1; round <= 3; round++) {
      const polled = await call(
        base,
        "GET",
        `/rooms/${room.body.id}/messages?after=${cursor}`,
        token,
      );
      assert.equal(polled.status, 200);
      assert.equal(polled.body.length, round === 1 ? 0 : 1);
      if (polled.body.length) cursor = polled.body.at(-1).id;
      const sent = await call(base, "POST", `/rooms/${room.body.id}/messages`, token, {
        kind: "result",
        body: { round },
      });
      assert.equal(sent.status, 201);
      assert.ok(sent.body.id > cursor);
      const state = await call(base, "PUT", `/rooms/${room.body.id}/state`, token, {
        key: "progress",
        value: round,
      });
      assert.equal(state.status, 200);
      assert.equal(state.body.version, round);
      assert.equal(state.body.value, round);
    }
  } finally {
    await server.stop();
  }
});

test("every acknowledged message survives SIGKILL of the server under concurrent writes", async (dir) => {
  const db = `${dir}/sync.db`;
  const env = { SYNC_RATE_LIMIT: "off" };
  let server = await startServer(db, env);
  const room = await call(server.url, "POST", "/rooms", undefined, {});
  const acked: number[] = [];
  let stop = false;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i++) {
      try {
        const res = await call(
          server.url,
          "POST",
          `/rooms/${room.body.id}/messages`,
          room.body.token,
          {
            from: `writer-${w}`,
            body: { w, i },
          },
        );
        if (res.status === 201) acked.push(res.body.id);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = Array.from({ length: 8 }, (_, w) => writer(w));
  while (acked.length < 300) await new Promise((r) => setTimeout(r, 10));
  await server.stop("SIGKILL");
  stop = true;
  await Promise.all(writers);

  server = await startServer(db, env);
  try {
    const ids = new Set<number>();
    let after = 0;
    while (true) {
      const page = await call(
        server.url,
        "GET",
        `/rooms/${room.body.id}/messages?after=${after}&limit=1000`,
        room.body.token,
      );
      if (page.body.length === 0) break;
      for (const m of page.body) ids.add(m.id);
      after = page.body.at(-1).id;
    }
    const lost = acked.filter((id) => !ids.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${acked.length} acknowledged messages lost`);
  } finally {
    await server.stop();
  }
});

test("a wait on one server wakes for a write made through another server on the same database", async (dir) => {
  const db = `${dir}/sync.db`;
  const a = await startServer(db);
  const b = await startServer(db);
  try {
    const room = await call(a.url, "POST", "/rooms", undefined, {});
    const rev = room.body.rev;
    const waiting = call(
      a.url,
      "GET",
      `/rooms/${room.body.id}/changes?after=${rev}&wait=20`,
      room.body.token,
    );
    await new Promise((r) => setTimeout(r, 300));
    const sent = await call(b.url, "POST", `/rooms/${room.body.id}/messages`, room.body.token, {
      body: "across processes",
    });
    assert.equal(sent.status, 201);
    const woke = await waiting;
    assert.equal(woke.status, 200);
    assert.equal(woke.body.changes.length, 1);
    assert.equal(woke.body.changes[0].message.body, "across processes");
    assert.equal(woke.body.next, sent.body.rev);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("concurrent compare-and-set writers on two servers lose no update and have one winner per version", async (dir) => {
  const db = `${dir}/sync.db`;
  // Eight workers share one token, so one client's rate limit would slow them down.
  const env = { SYNC_RATE_LIMIT: "off" };
  const servers = [await startServer(db, env), await startServer(db, env)];
  try {
    const room = await call(servers[0].url, "POST", "/rooms", undefined, {});
    const path = `/rooms/${room.body.id}/state`;
    const token = room.body.token;
    const created = await call(servers[0].url, "PUT", path, token, {
      key: "n",
      value: 0,
      if_version: 0,
    });
    assert.equal(created.status, 200);

    // Each worker increments the counter 10 times, re-reading and retrying on conflict.
    const winsPerVersion = new Map<number, number>();
    const worker = async (w: number) => {
      const base = servers[w % 2].url;
      for (let done = 0; done < 10;) {
        const cur = await call(base, "GET", `${path}?key=n`, token);
        const put = await call(base, "PUT", path, token, {
          key: "n",
          value: cur.body.value + 1,
          if_version: cur.body.version,
        });
        if (put.status === 200) {
          done++;
          winsPerVersion.set(put.body.version, (winsPerVersion.get(put.body.version) ?? 0) + 1);
        } else {
          assert.equal(put.status, 409);
          assert.equal(put.body.error, "version_conflict");
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    const final = await call(servers[1].url, "GET", `${path}?key=n`, token);
    assert.equal(final.body.value, 80);
    assert.equal(final.body.version, 81);
    assert.equal(winsPerVersion.size, 80);
    assert.ok([...winsPerVersion.values()].every((n) => n === 1));
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
});

test("of many agents claiming one task at once through two servers exactly one wins", async (dir) => {
  const db = `${dir}/sync.db`;
  const servers = [await startServer(db), await startServer(db)];
  try {
    const room = await call(servers[0].url, "POST", "/rooms", undefined, {});
    const id = room.body.id;
    const tokens: string[] = [];
    for (let i = 0; i < 10; i++) {
      const a = await call(servers[0].url, "POST", `/rooms/${id}/agents`, room.body.token, {
        id: `agent-${i}`,
        name: `Agent ${i}`,
      });
      tokens.push(a.body.token);
    }
    const task = await call(servers[0].url, "POST", `/rooms/${id}/messages`, room.body.token, {
      kind: "task",
      body: "only one of you",
    });
    const results = await Promise.all(
      tokens.map((t, i) =>
        call(servers[i % 2].url, "POST", `/rooms/${id}/messages/${task.body.id}/claim`, t)
      ),
    );
    const winners = results.filter((r) => r.status === 200);
    assert.equal(winners.length, 1);
    const holder = winners[0].body.claim.agent;
    for (const r of results.filter((r) => r.status !== 200)) {
      assert.equal(r.status, 409);
      assert.equal(r.body.claim.agent, holder);
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
});

test("the README's first curl session runs as written against the real server", async (dir) => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const start = readme.indexOf("```sh\nBASE=http://localhost:8000\n");
  assert.ok(start >= 0, "the README has its first session");
  const script = readme.slice(start + 6, readme.indexOf("```", start + 6));
  const server = await startServer(`${dir}/sync.db`);
  try {
    const run = await new Deno.Command("bash", {
      args: [
        "-euo",
        "pipefail",
        "-c",
        script.replace("http://localhost:8000", server.url)
          .replace("wait=25", "wait=1"),
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    assert.match(out, /"kind":"task"/);
    assert.match(out, /"type":"agent"/);
    assert.match(out, /\/\?room=[0-9a-f-]{36}#token=as_view_/);
  } finally {
    await server.stop();
  }
});
