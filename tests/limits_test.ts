// Issue 4, consumption: every bound a client can hit, and the rate limit under 10,000 requests.
import assert from "node:assert/strict";
import { mintToken } from "../auth.ts";
import { appTest, makeApp, type TestApp } from "./helpers.ts";

/** Sends a request as if from `ip` (what Deno.serve passes as the connection info). */
function fromIp(app: TestApp, ip: string, method: string, path: string, init: RequestInit = {}) {
  return app.service.fetch(
    new Request(`http://test${path}`, { method, ...init }),
    { remoteAddr: { hostname: ip } },
  );
}

/** A body stream of `chunks` chunks of `size` bytes each, or without end when `chunks` is 0. */
function stream(size: number, chunks = 0): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (chunks > 0 && sent === chunks) return controller.close();
      sent++;
      controller.enqueue(new TextEncoder().encode(`{"body":"${"x".repeat(size - 11)}"} `));
    },
  });
}

appTest("a body over SYNC_MAX_BODY_BYTES gets 413, with or without Content-Length", async (app) => {
  const room = await app.room();
  const url = `http://test/rooms/${room.id}/messages`;
  const headers = { authorization: `Bearer ${room.token}`, "content-type": "application/json" };
  const big = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { body: "x".repeat(2000) },
  });
  assert.equal(big.status, 413);
  assert.equal(big.body.error, "payload_too_large");
  assert.equal(big.body.max_bytes, 1024);

  const chunked = (body: ReadableStream) =>
    app.service.fetch(
      new Request(url, { method: "POST", headers, body, duplex: "half" } as RequestInit),
    );
  const endless = await chunked(stream(100));
  assert.equal(endless.status, 413, "an endless chunked body is cut off");
  assert.equal((await endless.json()).error, "payload_too_large");
  const tooMany = await chunked(stream(100, 11));
  assert.equal(tooMany.status, 413);
  await tooMany.body?.cancel();
  const small = await chunked(stream(100, 1));
  assert.equal(small.status, 201, "a small chunked body is accepted");
  await small.body?.cancel();

  for (const [method, path] of [["POST", "/rooms"], ["PUT", `/rooms/${room.id}/state`]]) {
    const res = await app.request(method, path, {
      token: room.token,
      raw: JSON.stringify({ key: "k", value: "x".repeat(2000) }),
    });
    assert.equal(res.status, 413, path);
  }
  const list = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
    token: room.token,
  });
  assert.equal(list.body.length, 1, "only the small message was written");
}, { SYNC_MAX_BODY_BYTES: "1024" });

appTest("a value over SYNC_MAX_VALUE_BYTES gets 413 wherever JSON is stored", async (app) => {
  const room = await app.room();
  const base = `/rooms/${room.id}`;
  const fits = "x".repeat(98); // 100 bytes as JSON
  const over = "x".repeat(99);
  const cases = [
    ["POST", "/rooms", (v: string) => ({ meta: v })],
    ["POST", `${base}/agents`, (v: string) => ({ id: "a", name: "a", meta: v })],
    ["POST", `${base}/messages`, (v: string) => ({ body: v })],
    ["PUT", `${base}/state`, (v: string) => ({ key: "k", value: v })],
    ["PUT", `${base}/state/batch`, (v: string) => ({ ops: [{ key: "b", value: v }] })],
  ] as const;
  for (const [method, path, body] of cases) {
    const res = await app.request(method, path, { token: room.token, body: body(over) });
    assert.equal(res.status, 413, `${method} ${path}`);
    assert.equal(res.body.error, "value_too_large");
    assert.equal(res.body.max_bytes, 100);
    const ok = await app.request(method, path, { token: room.token, body: body(fits) });
    assert.ok(ok.status === 200 || ok.status === 201, `${method} ${path}: ${ok.text}`);
  }
  const patch = await app.request("PATCH", `${base}/agents/a`, {
    token: room.token,
    body: { meta: over },
  });
  assert.equal(patch.status, 413);
}, { SYNC_MAX_VALUE_BYTES: "100" });

appTest("ids and keys longer than their limits get 400", async (app) => {
  const room = await app.room({ id: "r".repeat(16) });
  const base = `/rooms/${room.id}`;
  const long = "a".repeat(17);
  const cases = [
    ["POST", "/rooms", { id: long }],
    ["POST", `${base}/agents`, { id: long, name: "x" }],
    ["POST", `${base}/messages`, { from: long, body: 1 }],
    ["POST", `${base}/messages`, { to: long, body: 1 }],
    ["PUT", `${base}/state`, { scope: long, key: "k", value: 1 }],
    ["PUT", `${base}/state`, { key: "k".repeat(9), value: 1 }],
    ["PUT", `${base}/state/batch`, { ops: [{ key: "k".repeat(9), value: 1 }] }],
  ] as const;
  for (const [method, path, body] of cases) {
    const res = await app.request(method, path, { token: room.token, body });
    assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}`);
    assert.match(res.body.message, /at most (16|8) characters/);
  }
  const inPath = await app.request("GET", `/rooms/${long}`, { token: room.token });
  assert.equal(inPath.status, 400);
  assert.equal(inPath.body.error, "invalid_path");
  const atLimit = await app.request("PUT", `${base}/state`, {
    token: room.token,
    body: { scope: "s".repeat(16), key: "k".repeat(8), value: 1 },
  });
  assert.equal(atLimit.status, 200);
}, { SYNC_MAX_ID_LENGTH: "16", SYNC_MAX_KEY_LENGTH: "8" });

appTest("limit is clamped to SYNC_MAX_LIMIT and defaults to SYNC_DEFAULT_LIMIT", async (app) => {
  const room = await app.room();
  const base = `/rooms/${room.id}`;
  for (let i = 0; i < 8; i++) {
    await app.request("POST", `${base}/messages`, { token: room.token, body: { body: i } });
    await app.request("PUT", `${base}/state`, {
      token: room.token,
      body: { key: `k${i}`, value: i },
    });
  }
  const count = async (path: string) => {
    const res = await app.request("GET", path, { token: room.token });
    assert.equal(res.status, 200, res.text);
    return (Array.isArray(res.body) ? res.body : res.body.changes).length;
  };
  assert.equal(await count(`${base}/messages?after=0&limit=1000000`), 5);
  assert.equal(await count(`${base}/messages?after=0`), 3);
  assert.equal(await count(`${base}/messages?after=0&limit=0`), 1);
  assert.equal(await count(`${base}/changes?after=0&limit=1000000`), 5);
  assert.equal(await count(`${base}/state?limit=1000000`), 5);
}, { SYNC_MAX_LIMIT: "5", SYNC_DEFAULT_LIMIT: "3" });

/** Resolves to what `p` resolves to, or rejects if it takes longer than a generous bound. */
function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} was not cut short`)), 10_000);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

appTest("wait is clamped to SYNC_MAX_WAIT", async (app) => {
  const room = await app.room();
  for (const path of ["messages", "changes"]) {
    const res = await bounded(
      app.request("GET", `/rooms/${room.id}/${path}?after=0&wait=3600`, { token: room.token }),
      `wait=3600 on ${path}`,
    );
    assert.equal(res.status, 200);
  }
  assert.equal(app.service.waiters.size, 0);
}, { SYNC_MAX_WAIT: "0.2" });

/** Starts a waiting read and resolves once the server holds `n` waits. */
async function startWait(app: TestApp, path: string, token: string, n: number) {
  const res = app.request("GET", path, { token });
  for (let i = 0; i < 500 && app.service.waiters.size < n; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(app.service.waiters.size, n);
  return { res };
}

appTest("a client holding SYNC_MAX_WAITS_PER_CLIENT waits gets 429 for one more", async (app) => {
  const room = await app.room();
  const agent = await app.agent(room, "a");
  const path = `/rooms/${room.id}/messages?after=0&wait=25`;
  const { res: first } = await startWait(app, path, agent.token, 1);
  const rev = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
  const changes = `/rooms/${room.id}/changes?after=${rev}&wait=25`;
  const { res: second } = await startWait(app, changes, agent.token, 2);
  const third = await app.request("GET", path, { token: agent.token });
  assert.equal(third.status, 429);
  assert.equal(third.body.error, "too_many_waits");
  assert.ok(Number(third.headers.get("retry-after")) >= 1);
  const { res: other } = await startWait(app, path, room.view_token, 3);
  await app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body: { body: 1 } });
  for (const res of await Promise.all([first, second, other])) assert.equal(res.status, 200);
  assert.equal((await first).body.length, 1, "the held read woke with the message");
  assert.equal(app.service.waiters.size, 0);
  const after = await app.request("GET", `/rooms/${room.id}/messages?after=1&wait=0.05`, {
    token: agent.token,
  });
  assert.equal(after.status, 200, "released waits are counted back");
}, { SYNC_MAX_WAITS_PER_CLIENT: "2" });

appTest("the server holding SYNC_MAX_WAITS waits answers 429 to any client", async (app) => {
  const room = await app.room();
  const path = `/rooms/${room.id}/messages?after=0&wait=25`;
  const held = [
    (await startWait(app, path, room.token, 1)).res,
    (await startWait(app, path, room.view_token, 2)).res,
  ];
  const agent = await app.agent(room, "late");
  const res = await app.request("GET", path, { token: agent.token });
  assert.equal(res.status, 429);
  assert.equal(res.body.error, "too_many_waits");
  const plain = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
    token: agent.token,
  });
  assert.equal(plain.status, 200, "reads without wait still work");
  await app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body: { body: 1 } });
  for (const r of await Promise.all(held)) assert.equal(r.status, 200);
}, { SYNC_MAX_WAITS: "2" });

const RATED = { SYNC_RATE_LIMIT: "600", SYNC_RATE_BURST: "50" };

appTest(
  "SYNC_ROOMS_PER_HOUR limits room creation per address with 429 and Retry-After",
  async (app) => {
    const create = (ip: string) =>
      fromIp(app, ip, "POST", "/rooms", {
        headers: { "content-type": "application/json" },
        body: "{}",
      });
    for (let i = 0; i < 3; i++) assert.equal((await create("10.0.0.1")).status, 201);
    const refused = await create("10.0.0.1");
    assert.equal(refused.status, 429);
    const body = await refused.json();
    assert.equal(body.error, "rate_limited");
    assert.doesNotMatch(JSON.stringify(body), /as_room_/);
    const retry = Number(refused.headers.get("retry-after"));
    assert.ok(Number.isInteger(retry) && retry > 0 && retry <= 3600, `Retry-After ${retry}`);
    assert.match(refused.headers.get("ratelimit") ?? "", /limit=3, remaining=0, reset=\d+/);
    assert.equal((await create("10.0.0.2")).status, 201, "another address is not affected");
  },
  { ...RATED, SYNC_ROOMS_PER_HOUR: "3" },
);

appTest("SYNC_RATE_LIMIT=off lifts the rooms-per-hour limit", async (app) => {
  for (let i = 0; i < 5; i++) {
    const res = await app.request("POST", "/rooms", { body: {} });
    assert.equal(res.status, 201);
  }
}, { SYNC_RATE_LIMIT: "off", SYNC_ROOMS_PER_HOUR: "3" });

appTest("SYNC_MAX_AGENTS caps the agents of a room", async (app) => {
  const room = await app.room();
  await app.agent(room, "a");
  await app.agent(room, "b");
  const third = await app.request("POST", `/rooms/${room.id}/agents`, {
    token: room.token,
    body: { id: "c", name: "c" },
  });
  assert.equal(third.status, 409);
  assert.equal(third.body.error, "room_full");
  assert.doesNotMatch(third.text, /as_agent_/);
  const again = await app.request("POST", `/rooms/${room.id}/agents`, {
    token: room.token,
    body: { id: "a", name: "a2" },
  });
  assert.equal(again.status, 200, "re-registering a member still works");
  const list = await app.request("GET", `/rooms/${room.id}/agents`, { token: room.token });
  assert.deepEqual(list.body.map((a: { id: string }) => a.id), ["a", "b"]);
  const other = await app.room();
  await app.agent(other, "c");
}, { SYNC_MAX_AGENTS: "2" });

appTest("SYNC_MAX_KEYS caps the live keys of a room across scopes", async (app) => {
  const room = await app.room();
  const put = (key: string, scope = "_shared") =>
    app.request("PUT", `/rooms/${room.id}/state`, {
      token: room.token,
      body: { scope, key, value: 1 },
    });
  assert.equal((await put("a")).status, 200);
  assert.equal((await put("b", "other")).status, 200);
  const full = await put("c");
  assert.equal(full.status, 409);
  assert.equal(full.body.error, "room_full");
  assert.equal((await put("a")).status, 200, "updating a key is not adding one");
  const batch = await app.request("PUT", `/rooms/${room.id}/state/batch`, {
    token: room.token,
    body: { ops: [{ key: "a", delete: true }, { key: "c", value: 1 }, { key: "d", value: 1 }] },
  });
  assert.equal(batch.status, 409);
  assert.equal(batch.body.error, "room_full");
  const del = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "a" },
  });
  assert.equal(del.status, 200, "the refused batch deleted nothing");
  assert.equal((await put("c")).status, 200, "a deleted key frees its place");
  const keys = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
  assert.deepEqual(keys.body.map((e: { key: string }) => e.key).sort(), ["b", "c"]);
}, { SYNC_MAX_KEYS: "2" });

appTest(
  "10,000 rapid requests from one client get 429s, never a 500, and spare others",
  async (app) => {
    const room = await app.room();
    const statuses = new Map<number, number>();
    let limited: Response | undefined;
    for (let sent = 0; sent < 10_000; sent += 250) {
      const batch = await Promise.all(
        Array.from({ length: 250 }, () =>
          app.service.fetch(
            new Request(`http://test/rooms/${room.id}/messages?after=0`, {
              headers: { authorization: `Bearer ${room.token}` },
            }),
          )),
      );
      for (const res of batch) {
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 429) limited ??= res.clone();
        await res.body?.cancel();
      }
    }
    assert.deepEqual([...statuses.keys()].sort(), [200, 429]);
    assert.ok(statuses.get(200)! >= 50, "the burst is served");
    assert.ok(statuses.get(429)! > 9_000, `${statuses.get(429)} refused`);
    assert.ok(limited);
    assert.equal((await limited.json()).error, "rate_limited");
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.match(limited.headers.get("ratelimit") ?? "", /^limit=50, remaining=0, reset=\d+$/);
    assert.match(limited.headers.get("ratelimit-policy") ?? "", /^50;w=\d+$/);

    const other = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
      token: room.view_token,
    });
    assert.equal(other.status, 200, "another client is not affected");
    const health = await fromIp(app, "10.9.9.9", "GET", "/health");
    assert.equal(health.status, 200, "nor is another address");
    await health.body?.cancel();
  },
  RATED,
);

appTest("a 429 from the rate limit can be read by a browser on another origin", async (app) => {
  const room = await app.room();
  let res;
  for (let i = 0; i < 60; i++) {
    res = await app.request("GET", `/rooms/${room.id}`, {
      token: room.token,
      headers: { origin: "https://agent.example" },
    });
    if (res.status === 429) break;
  }
  assert.equal(res?.status, 429);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("access-control-expose-headers") ?? "", /Retry-After/);
}, RATED);

appTest("SYNC_RATE_LIMIT=off serves every request", async (app) => {
  const room = await app.room();
  for (let sent = 0; sent < 1_000; sent += 250) {
    const batch = await Promise.all(
      Array.from(
        { length: 250 },
        () => app.request("GET", `/rooms/${room.id}`, { token: room.token }),
      ),
    );
    for (const res of batch) assert.equal(res.status, 200);
  }
}, { SYNC_RATE_LIMIT: "off", SYNC_RATE_BURST: "5" });

// Tokens that open nothing spend the address's budget.
Deno.test({
  name: "a client cannot escape the rate limit by making up a new token per request",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using t = await makeApp("embedded", RATED);
    const room = await t.app.room();
    const statuses = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const res = await fromIp(t.app, "10.6.6.6", "GET", `/rooms/${room.id}`, {
        headers: { authorization: `Bearer ${mintToken("room")}` },
      });
      statuses.add(res.status);
      await res.body?.cancel();
    }
    assert.ok(statuses.has(429), `statuses: ${[...statuses]}`);
  },
});

appTest("JSON nested deeper than the limit gets 400 on every route, not a 500", async (app) => {
  const room = await app.room();
  await app.agent(room, "a");
  const base = `/rooms/${room.id}`;
  const nest = (n: number) => "[".repeat(n) + "]".repeat(n);
  const cases = [
    ["POST", "/rooms", (v: string) => `{"meta":${v}}`],
    ["POST", `${base}/agents`, (v: string) => `{"name":"b","meta":${v}}`],
    ["PATCH", `${base}/agents/a`, (v: string) => `{"meta":${v}}`],
    ["POST", `${base}/messages`, (v: string) => `{"body":{"deep":${v}}}`],
    ["PUT", `${base}/state`, (v: string) => `{"key":"k","value":${v}}`],
    ["PUT", `${base}/state/batch`, (v: string) => `{"ops":[{"key":"b","value":${v}}]}`],
  ] as const;
  const rev = async () =>
    (await app.request("GET", base, { token: room.token })).body.rev as number;
  for (const [method, path, body] of cases) {
    const before = await rev();
    for (const depth of [150, 20_000, 100_000]) {
      const res = await app.request(method, path, { token: room.token, raw: body(nest(depth)) });
      assert.equal(res.status, 400, `${method} ${path} at depth ${depth}: ${res.text}`);
      assert.equal(res.body.error, "invalid_body");
    }
    assert.equal(await rev(), before, `${method} ${path}: nothing is written`);
    const fits = await app.request(method, path, { token: room.token, raw: body(nest(90)) });
    assert.ok(fits.status < 300, `${method} ${path}: ${fits.text}`);
  }
  const stored = await app.request("GET", `${base}/state?key=k`, { token: room.token });
  assert.deepEqual(stored.body.value, JSON.parse(nest(90)));
}, { SYNC_MAX_BODY_BYTES: "300000", SYNC_MAX_VALUE_BYTES: "300000" });
