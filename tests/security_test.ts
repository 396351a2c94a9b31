// Issue 4, isolation: every route against every kind of token, and tokens that never leak.
import assert from "node:assert/strict";
import { mintToken, RateLimiter, safeEqual, sha256, TOKEN_PREFIX, tokenKind } from "../auth.ts";
import { appTest, type Res, ROUTE_FILES, type TestApp } from "./helpers.ts";

const TOKEN_TEXT = /as_(room|view|agent)_[A-Za-z0-9_-]{43}/;

/** A room with two agents, a message, a message claimed by alpha and a shared key. */
async function fixture(app: TestApp) {
  const room = await app.room();
  const alpha = await app.agent(room, "alpha");
  const beta = await app.agent(room, "beta");
  const post = (body: unknown) =>
    app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body });
  const m1 = (await post({ from: "beta", body: "task one" })).body.id as number;
  const m2 = (await post({ from: "beta", body: "task two" })).body.id as number;
  const claimed = await app.request("POST", `/rooms/${room.id}/messages/${m2}/claim`, {
    token: alpha.token,
  });
  assert.equal(claimed.status, 200);
  const put = await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "k", value: 1 },
  });
  assert.equal(put.status, 200);
  return { room, alpha, beta, m1, m2 };
}
type Fixture = Awaited<ReturnType<typeof fixture>>;

async function roomRev(app: TestApp, f: Fixture): Promise<number> {
  const res = await app.request("GET", `/rooms/${f.room.id}`, { token: f.room.token });
  assert.equal(res.status, 200);
  return res.body.rev;
}

interface Route {
  method: string;
  path: (f: Fixture, roomId: string) => string;
  body?: unknown;
  /** Status with the room token; the agent token (alpha) gets `agent` when it differs. */
  ok: number;
  agent?: number;
  write: boolean;
}

const ROUTES: Route[] = [
  { method: "GET", path: (_, r) => `/rooms/${r}`, ok: 200, write: false },
  { method: "DELETE", path: (_, r) => `/rooms/${r}`, ok: 200, agent: 403, write: true },
  {
    method: "POST",
    path: (_, r) => `/rooms/${r}/agents`,
    body: { id: "alpha", name: "Alpha" },
    ok: 200,
    write: true,
  },
  { method: "GET", path: (_, r) => `/rooms/${r}/agents`, ok: 200, write: false },
  { method: "GET", path: (_, r) => `/rooms/${r}/agents/alpha`, ok: 200, write: false },
  {
    method: "PATCH",
    path: (_, r) => `/rooms/${r}/agents/alpha`,
    body: { status: "busy" },
    ok: 200,
    write: true,
  },
  {
    method: "POST",
    path: (_, r) => `/rooms/${r}/messages`,
    body: { body: "hello" },
    ok: 201,
    write: true,
  },
  { method: "GET", path: (_, r) => `/rooms/${r}/messages?after=0`, ok: 200, write: false },
  { method: "GET", path: (f, r) => `/rooms/${r}/messages/${f.m1}`, ok: 200, write: false },
  {
    method: "POST",
    path: (f, r) => `/rooms/${r}/messages/${f.m1}/claim`,
    body: { agent: "alpha" },
    ok: 200,
    write: true,
  },
  {
    method: "DELETE",
    path: (f, r) => `/rooms/${r}/messages/${f.m2}/claim`,
    ok: 200,
    write: true,
  },
  { method: "GET", path: (_, r) => `/rooms/${r}/state`, ok: 200, write: false },
  {
    method: "PUT",
    path: (_, r) => `/rooms/${r}/state`,
    body: { key: "k2", value: 2 },
    ok: 200,
    write: true,
  },
  {
    method: "DELETE",
    path: (_, r) => `/rooms/${r}/state`,
    body: { key: "k" },
    ok: 200,
    write: true,
  },
  {
    method: "PUT",
    path: (_, r) => `/rooms/${r}/state/batch`,
    body: { ops: [{ key: "k3", value: 3 }] },
    ok: 200,
    write: true,
  },
  { method: "GET", path: (_, r) => `/rooms/${r}/changes?after=0`, ok: 200, write: false },
];

/** The Authorization header each kind of caller sends, given a fresh fixture of room A. */
type Caller = {
  name: string;
  auth: (app: TestApp, a: Fixture) => Promise<string | null>;
  expect: "401" | "404" | "view" | "agent" | "room";
};

const CALLERS: Caller[] = [
  { name: "no token", auth: () => Promise.resolve(null), expect: "401" },
  { name: "a non-bearer header", auth: () => Promise.resolve("Basic YWxhZGRpbg=="), expect: "401" },
  { name: "an empty bearer", auth: () => Promise.resolve("Bearer"), expect: "401" },
  { name: "a token of no kind", auth: () => Promise.resolve("Bearer hunter2"), expect: "401" },
  {
    name: "a truncated room token",
    auth: (_, a) => Promise.resolve(`Bearer ${a.room.token.slice(0, -1)}`),
    expect: "401",
  },
  {
    name: "a token of another kind's prefix",
    auth: (_, a) => Promise.resolve(`Bearer as_admin_${a.room.token.slice(8)}`),
    expect: "401",
  },
  {
    name: "another room's room token",
    auth: async (app) => `Bearer ${(await app.room()).token}`,
    expect: "404",
  },
  {
    name: "another room's view token",
    auth: async (app) => `Bearer ${(await app.room()).view_token}`,
    expect: "404",
  },
  {
    name: "an agent token of another room with the same agent id",
    auth: async (app) => `Bearer ${(await app.agent(await app.room(), "alpha")).token}`,
    expect: "404",
  },
  {
    name: "a well-formed token nobody was given",
    auth: (_, a) =>
      Promise.resolve(`Bearer as_room_${a.room.token.slice(8).split("").reverse().join("")}`),
    expect: "404",
  },
  {
    name: "a revoked (rotated) agent token",
    auth: async (app, a) => {
      const res = await app.request("POST", `/rooms/${a.room.id}/agents`, {
        token: a.alpha.token,
        body: { name: "alpha", rotate_token: true },
      });
      assert.equal(res.status, 200);
      assert.match(res.body.token, /^as_agent_/);
      assert.notEqual(res.body.token, a.alpha.token);
      return `Bearer ${a.alpha.token}`;
    },
    expect: "404",
  },
  {
    name: "the view token",
    auth: (_, a) => Promise.resolve(`Bearer ${a.room.view_token}`),
    expect: "view",
  },
  {
    name: "an agent token",
    auth: (_, a) => Promise.resolve(`Bearer ${a.alpha.token}`),
    expect: "agent",
  },
  {
    name: "the room token",
    auth: (_, a) => Promise.resolve(`Bearer ${a.room.token}`),
    expect: "room",
  },
];

function send(app: TestApp, route: Route, path: string, auth: string | null): Promise<Res> {
  return app.request(route.method, path, {
    body: route.body,
    headers: auth === null ? {} : { authorization: auth },
  });
}

for (const route of ROUTES) {
  const label = `${route.method} ${route.path({ m1: 1, m2: 2 } as Fixture, ":id")}`;
  appTest(`${label} answers each kind of token as the security model says`, async (app) => {
    for (const caller of CALLERS) {
      const f = await fixture(app);
      const auth = await caller.auth(app, f);
      const before = await roomRev(app, f);
      const res = await send(app, route, route.path(f, f.room.id), auth);
      const why = `${caller.name}: ${res.status} ${res.text}`;
      const expected = {
        "401": 401,
        "404": 404,
        view: route.write ? 403 : route.ok,
        agent: route.agent ?? route.ok,
        room: route.ok,
      }[caller.expect];
      assert.equal(res.status, expected, why);
      if (expected >= 400) {
        assert.equal(res.body.status, expected, why);
        assert.equal(typeof res.body.message, "string", why);
        assert.doesNotMatch(res.text, TOKEN_TEXT, why);
        assert.equal(await roomRev(app, f), before, `${why}: nothing may be written`);
      }
      if (expected === 401) {
        assert.equal(res.body.error, "unauthorized", why);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer /, why);
      }
      if (expected === 403) assert.equal(res.body.error, "forbidden", why);
      if (expected === 404) {
        // Exactly what a room that never existed answers to the same request.
        const ghost = `ghost-${crypto.randomUUID()}`;
        const unknown = await send(app, route, route.path(f, ghost), auth);
        assert.equal(unknown.status, 404, why);
        assert.equal(res.text, unknown.text.replaceAll(ghost, f.room.id), why);
      }
      if (route.write && expected < 400) {
        const after = await app.request("GET", `/rooms/${f.room.id}`, { token: f.room.token });
        if (route.method === "DELETE" && route.path(f, "") === "/rooms/") {
          assert.equal(after.status, 404, `${why}: the room must be gone`);
        } else assert.ok(after.body.rev > before, `${why}: the write must take effect`);
      }
    }
  });
}

appTest("a token of room A gets the very answer room B gives once B is deleted", async (app) => {
  const a = await app.room();
  const b = await app.room();
  const m = await app.request("POST", `/rooms/${b.id}/messages`, {
    token: b.token,
    body: { body: "secret plan" },
  });
  const probes = [
    ["GET", `/rooms/${b.id}`],
    ["GET", `/rooms/${b.id}/messages?after=0`],
    ["GET", `/rooms/${b.id}/messages/${m.body.id}`],
    ["POST", `/rooms/${b.id}/messages`],
    ["PUT", `/rooms/${b.id}/state`],
  ];
  const bodies: Record<string, unknown> = { POST: { body: "x" }, PUT: { key: "k", value: 1 } };
  const ask = () =>
    Promise.all(
      probes.map(([method, path]) =>
        app.request(method, path, { token: a.token, body: bodies[method] })
      ),
    );
  const whileExists = await ask();
  assert.equal(
    (await app.request("DELETE", `/rooms/${b.id}`, { token: b.token })).status,
    200,
  );
  const afterDelete = await ask();
  for (const [i, res] of whileExists.entries()) {
    assert.equal(res.status, 404);
    assert.equal(res.text, afterDelete[i].text);
    assert.doesNotMatch(res.text, /secret plan/);
  }
});

appTest("creating a room returns a room token and a view token once", async (app) => {
  const res = await app.request("POST", "/rooms", { body: { id: "tokens-once" } });
  assert.equal(res.status, 201);
  assert.match(res.body.token, /^as_room_[A-Za-z0-9_-]{43}$/);
  assert.match(res.body.view_token, /^as_view_[A-Za-z0-9_-]{43}$/);
  assert.equal(res.body.id, "tokens-once");
  assert.equal(res.body.token_hash, undefined);
  assert.equal(res.body.view_token_hash, undefined);
  const other = await app.room();
  assert.notEqual(other.token, res.body.token);
  assert.notEqual(other.view_token, res.body.view_token);

  const again = await app.request("POST", "/rooms", {
    token: res.body.token,
    body: { id: "tokens-once" },
  });
  assert.equal(again.status, 200);
  assert.doesNotMatch(again.text, TOKEN_TEXT);
  const stranger = await app.request("POST", "/rooms", { body: { id: "tokens-once" } });
  assert.equal(stranger.status, 409);
  assert.doesNotMatch(stranger.text, TOKEN_TEXT);
});

appTest("registering an agent returns its token once; re-registering returns none", async (app) => {
  const room = await app.room();
  const first = await app.request("POST", `/rooms/${room.id}/agents`, {
    token: room.token,
    body: { id: "coder", name: "Coder" },
  });
  assert.equal(first.status, 201);
  assert.match(first.body.token, /^as_agent_[A-Za-z0-9_-]{43}$/);
  for (const token of [first.body.token, room.token]) {
    const again = await app.request("POST", `/rooms/${room.id}/agents`, {
      token,
      body: { id: "coder", name: "Coder" },
    });
    assert.equal(again.status, 200);
    assert.doesNotMatch(again.text, TOKEN_TEXT);
    assert.doesNotMatch(again.text, /token/);
  }
});

appTest("no GET response ever carries a token, a token hash or a cookie", async (app) => {
  const f = await fixture(app);
  const tokens = [f.room.token, f.room.view_token, f.alpha.token, f.beta.token];
  const secrets = [...tokens, ...tokens.map(sha256)];
  const r = f.room.id;
  const paths = [
    "/",
    "/SKILL.md",
    "/health",
    `/?room=${r}`,
    "/rooms",
    `/rooms/${r}`,
    `/rooms/${r}/agents`,
    `/rooms/${r}/agents/alpha`,
    `/rooms/${r}/messages?after=0`,
    `/rooms/${r}/messages/${f.m2}`,
    `/rooms/${r}/state`,
    `/rooms/${r}/state?key=k`,
    `/rooms/${r}/changes?after=0`,
  ];
  for (const path of paths) {
    for (const token of [undefined, ...tokens]) {
      const res = await app.request("GET", path, { token, headers: { accept: "text/html" } });
      const all = res.text + JSON.stringify([...res.headers]);
      assert.ok(res.status < 500, `${path}: ${res.status}`);
      assert.doesNotMatch(all, TOKEN_TEXT, path);
      assert.doesNotMatch(all, /token_hash/, path);
      for (const secret of secrets) assert.ok(!all.includes(secret), `${path} leaks a secret`);
      assert.equal(res.headers.get("set-cookie"), null, path);
    }
  }
});

appTest(
  "a CORS preflight from any origin is allowed and may send the Authorization header",
  async (app) => {
    for (const path of ["/rooms", "/rooms/some-room/messages", "/rooms/some-room/state/batch"]) {
      const res = await app.request("OPTIONS", path, {
        headers: {
          origin: "https://agent.example",
          "access-control-request-method": "PUT",
          "access-control-request-headers": "authorization, content-type, idempotency-key",
        },
      });
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      const headers = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      for (const h of ["authorization", "content-type", "idempotency-key"]) {
        assert.ok(headers.includes(h), `${path} allows ${h}`);
      }
      const methods = res.headers.get("access-control-allow-methods") ?? "";
      for (const m of ["GET", "POST", "PUT", "PATCH", "DELETE"]) assert.ok(methods.includes(m));
      assert.equal(res.headers.get("access-control-allow-credentials"), null);
      assert.equal(res.headers.get("set-cookie"), null);
    }
  },
);

appTest("answers and errors to a cross-origin request can be read by the browser", async (app) => {
  const room = await app.room();
  const origin = { origin: "https://agent.example" };
  const cases = [
    { status: 200, token: room.view_token, path: `/rooms/${room.id}` },
    { status: 401, token: undefined, path: `/rooms/${room.id}` },
    { status: 404, token: (await app.room()).token, path: `/rooms/${room.id}` },
    { status: 400, token: room.token, path: `/rooms/${room.id}/messages?limit=x` },
  ];
  for (const { status, token, path } of cases) {
    const res = await app.request("GET", path, { token, headers: origin });
    assert.equal(res.status, status);
    assert.equal(res.headers.get("access-control-allow-origin"), "*", `${status}`);
    const exposed = res.headers.get("access-control-expose-headers") ?? "";
    assert.match(exposed, /Retry-After/);
    assert.match(exposed, /RateLimit/);
    assert.equal(res.headers.get("set-cookie"), null);
  }
  const created = await app.request("POST", "/rooms", { body: {}, headers: origin });
  assert.equal(created.status, 201);
  assert.equal(created.headers.get("access-control-allow-origin"), "*");
  assert.equal(created.headers.get("set-cookie"), null);
});

Deno.test("mintToken makes distinct 256-bit tokens that tokenKind recognizes", () => {
  for (const kind of ["room", "view", "agent"] as const) {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const token = mintToken(kind);
      assert.equal(token, TOKEN_PREFIX[kind] + token.slice(TOKEN_PREFIX[kind].length));
      assert.match(token.slice(TOKEN_PREFIX[kind].length), /^[A-Za-z0-9_-]{43}$/);
      assert.equal(tokenKind(token), kind);
      seen.add(token);
    }
    assert.equal(seen.size, 500);
  }
});

Deno.test("tokenKind rejects anything that is not exactly a minted token's shape", () => {
  const good = mintToken("room");
  for (
    const bad of [
      "",
      "as_room_",
      good.slice(0, -1),
      good + "A",
      ` ${good}`,
      `${good}\n`,
      good.toUpperCase(),
      good.replace("as_room_", "as_admin_"),
      good.replace("as_room_", "room_"),
      good.slice(0, -1) + "=",
      good.slice(0, -1) + ".",
    ]
  ) {
    assert.equal(tokenKind(bad), null, JSON.stringify(bad));
  }
});

Deno.test("safeEqual is true only for identical strings", () => {
  const cases: [string | null, string, boolean][] = [
    ["abc", "abc", true],
    ["", "", true],
    ["abc", "abd", false],
    ["abc", "abcd", false],
    ["abcd", "abc", false],
    [null, "abc", false],
    [null, "", false],
    ["é", "e\u0301", false],
    ["\u00e9", "\u00e9", true],
  ];
  for (const [a, b, want] of cases) assert.equal(safeEqual(a, b), want, `${a} vs ${b}`);
});

Deno.test("secrets are only ever compared through safeEqual, which is constant-time", async () => {
  const auth = await Deno.readTextFile(new URL("../auth.ts", import.meta.url));
  const main = (await Promise.all(
    ["main.ts", "context.ts", ...ROUTE_FILES].map((f) =>
      Deno.readTextFile(new URL(`../${f}`, import.meta.url))
    ),
  )).join("\n");
  const body = auth.slice(auth.indexOf("export function safeEqual"));
  assert.match(body.slice(0, body.indexOf("\n}")), /timingSafeEqual\(/);
  assert.match(main, /safeEqual\(token, admin\)/);
  assert.match(main, /safeEqual\(room\.token_hash, hash!?\)/);
  assert.match(main, /safeEqual\(room\.view_token_hash, hash!?\)/);
  const comparisons = [...main.matchAll(/([\w.!?]+)\s*[!=]==?\s*([\w.!?"]+)/g)]
    .map(([, left, right]) => [left, right])
    .filter((sides) =>
      sides.some((side) => /adminToken|token_hash|tokenHash|\bhash\b|token\b/.test(side))
    )
    .filter((sides) => !sides.some((side) => /^(null|undefined)$/.test(side)));
  assert.deepEqual(comparisons, [], "a secret compared with === or !==");
});

Deno.test("RateLimiter allows a burst, then refills at its rate, per key", () => {
  const limiter = new RateLimiter(3, 1);
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) {
    const r = limiter.take("a", t0);
    assert.equal(r.ok, true);
    assert.equal(r.remaining, 2 - i);
  }
  assert.deepEqual(limiter.take("a", t0), { ok: false, remaining: 0, retryAfter: 1 });
  assert.equal(limiter.take("b", t0).ok, true, "another key has its own bucket");
  assert.equal(limiter.take("a", t0 + 500).ok, false);
  assert.equal(limiter.take("a", t0 + 1000).ok, true, "one token back after a second");
  const later = t0 + 3_600_000;
  const takes = Array.from({ length: 5 }, () => limiter.take("a", later).ok);
  assert.deepEqual(
    takes,
    [true, true, true, false, false],
    "a bucket never holds more than its capacity",
  );
  const slow = new RateLimiter(1, 1 / 60);
  slow.take("x", t0);
  assert.equal(slow.take("x", t0).retryAfter, 60);
});

appTest("an Idempotency-Key never replays a room's tokens to another client", async (app) => {
  const create = async (ip: string, headers: Record<string, string> = {}) => {
    const res = await app.service.fetch(
      new Request("http://test/rooms", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "idempotency-key": "create-room-0b9e4c7a-1d2f-4e3a-8b5c-6f7d8e9a0b1c",
          ...headers,
        },
        body: "{}",
      }),
      { remoteAddr: { hostname: ip } },
    );
    return { status: res.status, text: await res.text() };
  };
  const victim = await create("10.1.1.1");
  assert.equal(victim.status, 201);
  const token = JSON.parse(victim.text).token;
  const retry = await create("10.1.1.1");
  assert.equal(retry.text, victim.text, "the same client's retry is replayed");
  for (
    const [ip, headers] of [
      ["10.6.6.6", {}],
      ["10.6.6.6", { authorization: "ip:10.1.1.1" }],
      ["10.6.6.6", { authorization: "t:ip:10.1.1.1" }],
    ] as const
  ) {
    const other = await create(ip, headers);
    assert.ok(!other.text.includes(token), `${JSON.stringify(headers)} got the victim's token`);
  }
});
