// The typed client: its types are current, its calls are typed, its loops and retries behave.
import assert from "node:assert/strict";
import { ApiError, type Change, createClient, ok, retryingFetch } from "../client/client.ts";
import { generateTypes } from "../client/generate.ts";
import { appTest, type TestApp } from "./helpers.ts";

Deno.test("the checked-in client types are what openapi-typescript makes of the OpenAPI document", async () => {
  const checkedIn = await Deno.readTextFile(new URL("../client/api.d.ts", import.meta.url));
  assert.ok(checkedIn.includes('"/rooms/{id}/messages/{msg_id}/claim"'));
  assert.equal(
    await generateTypes(),
    checkedIn,
    "client/api.d.ts is stale: run `deno task client:types`",
  );
});

/** A client that talks to the app in-process; `through` sees (and may change) every request. */
function clientOf(
  app: TestApp,
  token?: string,
  through?: (req: Request, send: () => Promise<Response>) => Promise<Response>,
) {
  const send = async (req: Request) => await app.service.fetch(req);
  return createClient({
    baseUrl: "http://test",
    token,
    fetch: through ? (req) => through(req, () => send(req)) : send,
    retry: { baseDelayMs: 1 },
  });
}

appTest("typed calls create a room, register an agent and post a message", async (app) => {
  const anon = clientOf(app);
  const room = ok(await anon.api.POST("/rooms", { body: { meta: { goal: "ship" } } }));
  assert.ok("token" in room && room.token?.startsWith("as_room_"), "a new room has its token");
  const lead = clientOf(app, room.token);
  const agent = ok(
    await lead.api.POST("/rooms/{id}/agents", {
      params: { path: { id: room.id } },
      body: { id: "w1", name: "Worker 1" },
    }),
  );
  const w1 = clientOf(app, agent.token);
  const sent = ok(
    await w1.api.POST("/rooms/{id}/messages", {
      params: { path: { id: room.id } },
      body: { kind: "note", body: { n: 1 } },
    }),
  );
  assert.equal(sent.from_agent, "w1");
  const list = ok(
    await lead.api.GET("/rooms/{id}/messages", {
      params: { path: { id: room.id }, query: { kind: "note" } },
    }),
  );
  assert.deepEqual(list.map((m) => m.body), [{ n: 1 }]);
});

appTest("ok() throws the service's error as an ApiError with its code and status", async (app) => {
  const room = await app.room();
  const view = clientOf(app, room.view_token);
  const refused = await view.api.POST("/rooms/{id}/messages", {
    params: { path: { id: room.id } },
    body: { body: "read only" },
  });
  assert.throws(() => ok(refused), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 403);
    assert.equal(err.code, "forbidden");
    assert.match(err.message, /view token/i);
    return true;
  });
});

appTest("claimNext claims the oldest open task, and none when none is open", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  const sync = clientOf(app, alice.token);
  assert.equal(await sync.claimNext(room.id), null);
  const lead = clientOf(app, room.token);
  const ids: number[] = [];
  for (const body of ["a", "b"]) {
    const m = ok(
      await lead.api.POST("/rooms/{id}/messages", {
        params: { path: { id: room.id } },
        body: { kind: "task", body },
      }),
    );
    ids.push(m.id);
  }
  await lead.api.POST("/rooms/{id}/messages", {
    params: { path: { id: room.id } },
    body: { kind: "note", body: "not a task" },
  });
  const first = await sync.claimNext(room.id, { ttl: 60 });
  assert.equal(first?.id, ids[0]);
  assert.equal(first?.claim?.agent, "alice");
  assert.ok(first?.claim?.expires_at, "the ttl made it a lease");
  assert.equal((await sync.claimNext(room.id))?.id, ids[1]);
  assert.equal(await sync.claimNext(room.id), null, "both are taken, the note is no task");
});

appTest("claimNext with `to` leaves tasks addressed to another agent alone", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  await app.agent(room, "bob");
  const task = (to: string | null) =>
    app.request("POST", `/rooms/${room.id}/messages`, {
      token: room.token,
      body: { kind: "task", to, body: "x" },
    });
  await task("bob");
  const forAll = (await task(null)).body.id;
  const forAlice = (await task("alice")).body.id;
  const sync = clientOf(app, alice.token);
  assert.equal((await sync.claimNext(room.id, { to: "alice" }))?.id, forAll);
  assert.equal((await sync.claimNext(room.id, { to: "alice" }))?.id, forAlice);
  assert.equal(await sync.claimNext(room.id, { to: "alice" }), null, "bob's task is his");
});

appTest(
  "claimNext moves on to the next task when another agent wins the race (409)",
  async (app) => {
    const room = await app.room();
    const alice = await app.agent(room, "alice");
    const bob = await app.agent(room, "bob");
    const tasks: number[] = [];
    for (const body of ["a", "b"]) {
      const r = await app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { kind: "task", body },
      });
      tasks.push(r.body.id);
    }
    const claims: number[] = [];
    const sync = clientOf(app, alice.token, async (req, send) => {
      const m = /\/messages\/(\d+)\/claim$/.exec(new URL(req.url).pathname);
      if (m) {
        claims.push(Number(m[1]));
        // Bob claims the first task between Alice's listing and her claim.
        if (claims.length === 1) {
          const r = await app.request("POST", `/rooms/${room.id}/messages/${m[1]}/claim`, {
            token: bob.token,
          });
          assert.equal(r.status, 200);
        }
      }
      return await send();
    });
    const won = await sync.claimNext(room.id);
    assert.deepEqual(claims, tasks, "it tried the first, lost, and tried the second");
    assert.equal(won?.id, tasks[1]);
    assert.equal(won?.claim?.agent, "alice");
  },
);

appTest("claimNext with wait answers with a task posted while it waits", async (app) => {
  const room = await app.room();
  const alice = await app.agent(room, "alice");
  const waiting = clientOf(app, alice.token).claimNext(room.id, { wait: 10 });
  await new Promise((r) => setTimeout(r, 100));
  const task = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { kind: "task", body: "late" },
  });
  const got = await waiting;
  assert.equal(got?.id, task.body.id);
  assert.equal(got?.claim?.agent, "alice");
});

appTest(
  "changes yields every change once, in order, waits for the next, and ends on abort",
  async (app) => {
    const room = await app.room();
    const post = (body: string) =>
      app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body: { body } });
    await post("one");
    await post("two");
    const stop = new AbortController();
    const sync = clientOf(app, room.view_token);
    const feed = sync.changes(room.id, { wait: 10, signal: stop.signal });
    const seen: Change[] = [];
    for (let i = 0; i < 2; i++) seen.push((await feed.next()).value as Change);
    const third = feed.next();
    await new Promise((r) => setTimeout(r, 100));
    await post("three");
    seen.push((await third).value as Change);
    assert.deepEqual(
      seen.map((c) => c.type === "message" ? c.message.body : null),
      ["one", "two", "three"],
    );
    assert.ok(seen.every((c, i) => i === 0 || c.rev > seen[i - 1].rev));
    const fourth = feed.next();
    stop.abort();
    assert.equal((await fourth).done, true);
  },
);

appTest(
  "changes restarts from 0 when retention passed its cursor (410), skipping what it saw",
  async (app) => {
    const room = await app.room();
    const revs: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await app.request("POST", `/rooms/${room.id}/messages`, {
        token: room.token,
        body: { body: i },
      });
      revs.push(r.body.rev);
    }
    const put = await app.request("PUT", `/rooms/${room.id}/state`, {
      token: room.token,
      body: { key: "k", value: 1 },
    });
    const cursor = revs[1]; // messages up to the 4th were trimmed: SYNC_MAX_MESSAGES=4
    const expired = await app.request("GET", `/rooms/${room.id}/changes?after=${cursor}`, {
      token: room.token,
    });
    assert.equal(expired.status, 410);
    const stop = new AbortController();
    const got: Change[] = [];
    for await (
      const c of clientOf(app, room.token).changes(room.id, { after: cursor, signal: stop.signal })
    ) {
      got.push(c);
      if (c.rev === put.body.rev) stop.abort();
    }
    assert.deepEqual(got.map((c) => c.rev), [...revs.slice(4), put.body.rev]);
    assert.ok(got.every((c) => c.rev > cursor));
  },
  { SYNC_MAX_MESSAGES: "4" },
);

appTest(
  "a write whose answer is lost is retried with the same Idempotency-Key and applied once",
  async (app) => {
    const room = await app.room();
    const keys: (string | null)[] = [];
    const answers: Response[] = [];
    const sync = clientOf(app, room.token, async (req, send) => {
      keys.push(req.headers.get("idempotency-key"));
      const res = await send();
      answers.push(res);
      if (keys.length === 1) throw new TypeError("connection reset"); // applied, answer lost
      return res;
    });
    const r = await sync.api.POST("/rooms/{id}/messages", {
      params: { path: { id: room.id } },
      body: { body: "once" },
    });
    assert.equal(r.response.status, 201);
    assert.equal(keys.length, 2);
    assert.ok(keys[0] && keys[0] === keys[1], "the same key on both attempts");
    assert.equal(answers[1].headers.get("idempotent-replayed"), "true");
    const list = await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
    assert.deepEqual(list.body.map((m: { body: unknown }) => m.body), ["once"]);
  },
);

appTest(
  "a 429 is retried after its Retry-After and a 5xx after a backoff; a 4xx is not retried",
  async (app) => {
    const room = await app.room();
    const seen: string[] = [];
    let failures = ["429", "503"];
    const sync = clientOf(app, room.token, async (req, send) => {
      seen.push(req.method);
      const fail = failures.shift();
      if (fail === "429") {
        return Response.json({ error: "rate_limited", message: "Too many", status: 429 }, {
          status: 429,
          headers: { "Retry-After": "0" },
        });
      }
      if (fail === "503") return new Response("unavailable", { status: 503 });
      return await send();
    });
    const got = ok(await sync.api.GET("/rooms/{id}", { params: { path: { id: room.id } } }));
    assert.equal(got.id, room.id);
    assert.equal(seen.length, 3);
    seen.length = 0;
    failures = [];
    const bad = await sync.api.GET("/rooms/{id}/messages", {
      params: { path: { id: room.id }, query: { after: -1 } },
    });
    assert.equal(bad.response.status, 400);
    assert.equal(seen.length, 1);
  },
);

Deno.test("retryingFetch gives up after its retries and returns the last answer", async () => {
  let calls = 0;
  const send = retryingFetch(() => {
    calls++;
    return Promise.resolve(new Response("down", { status: 502 }));
  }, { retries: 2, baseDelayMs: 1 });
  const res = await send(new Request("http://test/x"));
  assert.equal(res.status, 502);
  assert.equal(calls, 3);
});

Deno.test("the README's typed client example type-checks", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const start = readme.indexOf("```ts\n", readme.indexOf("**Typed client.**"));
  assert.ok(start > 0, "the README has the example");
  const code = readme.slice(start + 6, readme.indexOf("```", start + 6));
  const dir = await Deno.makeTempDir();
  try {
    const client = new URL("../client/client.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/example.ts`,
      "declare const BASE: string, TOKEN: string, ROOM: string;\n" +
        code.replace('"./client/client.ts"', JSON.stringify(client)),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--config", new URL("../deno.json", import.meta.url).pathname, "example.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
