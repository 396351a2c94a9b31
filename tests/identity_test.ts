// Issue 4, identity: an agent token acts as its agent only; the admin token, open mode, owned fields.
import assert from "node:assert/strict";
import { appTest, type TestApp } from "./helpers.ts";

const TOKEN_TEXT = /as_(room|view|agent)_[A-Za-z0-9_-]{43}/;

async function team(app: TestApp) {
  const room = await app.room();
  const alpha = await app.agent(room, "alpha");
  const beta = await app.agent(room, "beta");
  const rev = async () =>
    (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev as number;
  return { room, alpha, beta, rev, base: `/rooms/${room.id}` };
}

appTest("an agent token posts as its own agent and cannot post as another", async (app) => {
  const { alpha, rev, base } = await team(app);
  const implicit = await app.request("POST", `${base}/messages`, {
    token: alpha.token,
    body: { body: "mine" },
  });
  assert.equal(implicit.status, 201);
  assert.equal(implicit.body.from_agent, "alpha");
  const explicit = await app.request("POST", `${base}/messages`, {
    token: alpha.token,
    body: { from: "alpha", body: "mine too" },
  });
  assert.equal(explicit.body.from_agent, "alpha");

  const before = await rev();
  for (const from of ["beta", "human", "ALPHA"]) {
    const forged = await app.request("POST", `${base}/messages`, {
      token: alpha.token,
      body: { from, body: "forged" },
    });
    assert.equal(forged.status, 403, from);
    assert.equal(forged.body.error, "forbidden");
  }
  assert.equal(await rev(), before);
  const list = await app.request("GET", `${base}/messages?after=0`, { token: alpha.token });
  assert.deepEqual(list.body.map((m: { from_agent: string }) => m.from_agent), ["alpha", "alpha"]);
  assert.ok(!list.text.includes("forged"));
});

appTest("the room token may post as anyone, including an unregistered human", async (app) => {
  const { room, base } = await team(app);
  for (const from of ["human", "beta", null]) {
    const res = await app.request("POST", `${base}/messages`, {
      token: room.token,
      body: { from, body: "from the owner" },
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.from_agent, from);
  }
});

appTest(
  "an agent's own scope is writable only by it and the room token, readable by all",
  async (app) => {
    const { room, alpha, beta, rev, base } = await team(app);
    const put = (token: string, scope: string, value: unknown) =>
      app.request("PUT", `${base}/state`, { token, body: { scope, key: "k", value } });
    assert.equal((await put(alpha.token, "alpha", "a1")).status, 200);
    assert.equal((await put(beta.token, "_shared", "b")).status, 200);
    assert.equal((await put(beta.token, "notes", "b")).status, 200, "an unowned scope is open");
    assert.equal((await put(room.token, "alpha", "owner")).status, 200);

    const before = await rev();
    const denied = [
      await put(beta.token, "alpha", "overwrite"),
      await app.request("DELETE", `${base}/state`, {
        token: beta.token,
        body: { scope: "alpha", key: "k" },
      }),
      await app.request("PUT", `${base}/state/batch`, {
        token: beta.token,
        body: { ops: [{ key: "ok", value: 1 }, { scope: "alpha", key: "k", value: "x" }] },
      }),
      await app.request("PUT", `${base}/state/batch`, {
        token: beta.token,
        body: { ops: [{ scope: "alpha", key: "k", delete: true }] },
      }),
    ];
    for (const res of denied) {
      assert.equal(res.status, 403, res.text);
      assert.equal(res.body.error, "forbidden");
    }
    assert.equal(await rev(), before, "a refused batch writes nothing, not even its _shared op");

    for (const token of [beta.token, room.view_token]) {
      const read = await app.request("GET", `${base}/state?scope=alpha&key=k`, { token });
      assert.equal(read.status, 200);
      assert.equal(read.body.value, "owner");
    }
  },
);

appTest("re-registering an agent id needs that agent's token or the room token", async (app) => {
  const { room, alpha, beta, rev, base } = await team(app);
  const register = (token: string | undefined, body: Record<string, unknown>) =>
    app.request("POST", `${base}/agents`, { token, body: { id: "alpha", name: "x", ...body } });
  const joined = (await app.request("GET", `${base}/agents/alpha`, { token: room.token })).body;

  const before = await rev();
  assert.equal((await register(undefined, {})).status, 401);
  const other = await register(beta.token, { role: "impostor" });
  assert.equal(other.status, 409);
  assert.equal(other.body.error, "agent_exists");
  assert.equal((await register(room.view_token, {})).status, 403);
  const newId = await app.request("POST", `${base}/agents`, {
    token: alpha.token,
    body: { id: "gamma", name: "gamma" },
  });
  assert.equal(newId.status, 403, "an agent token cannot register other agents");
  assert.equal(await rev(), before);

  const self = await register(alpha.token, { name: "Alpha", role: "lead" });
  assert.equal(self.status, 200);
  assert.equal(self.body.role, "lead");
  assert.equal(self.body.joined_at, joined.joined_at, "identity is kept");
  assert.equal(self.body.token, undefined);
  const owner = await register(room.token, { role: "reviewer" });
  assert.equal(owner.status, 200);
  assert.equal(owner.body.role, "reviewer");
  assert.equal(owner.body.token, undefined);
  const check = await app.request("GET", `${base}/messages?after=0`, { token: alpha.token });
  assert.equal(check.status, 200, "the agent's token still works after re-registering");
});

appTest("rotating an agent's token revokes the old one everywhere", async (app) => {
  const { room, alpha, base } = await team(app);
  const rotated = await app.request("POST", `${base}/agents`, {
    token: room.token,
    body: { id: "alpha", name: "alpha", rotate_token: true },
  });
  assert.equal(rotated.status, 200);
  assert.match(rotated.body.token, /^as_agent_/);
  const old = await app.request("POST", `${base}/messages`, {
    token: alpha.token,
    body: { body: "stale" },
  });
  assert.equal(old.status, 404);
  const fresh = await app.request("POST", `${base}/messages`, {
    token: rotated.body.token,
    body: { body: "fresh" },
  });
  assert.equal(fresh.status, 201);
  assert.equal(fresh.body.from_agent, "alpha");
});

appTest("an agent patches only itself and deletes no room", async (app) => {
  const { alpha, rev, base } = await team(app);
  const before = await rev();
  const other = await app.request("PATCH", `${base}/agents/beta`, {
    token: alpha.token,
    body: { status: "hijacked" },
  });
  assert.equal(other.status, 403);
  const del = await app.request("DELETE", base, { token: alpha.token });
  assert.equal(del.status, 403);
  assert.equal(await rev(), before);
  const own = await app.request("PATCH", `${base}/agents/alpha`, {
    token: alpha.token,
    body: { status: "busy" },
  });
  assert.equal(own.status, 200);
  assert.equal(own.body.status, "busy");
});

appTest("claims are made and released as the token's agent", async (app) => {
  const { room, alpha, beta, rev, base } = await team(app);
  const task = await app.request("POST", `${base}/messages`, {
    token: room.token,
    body: { kind: "task", body: "do it" },
  });
  const claim = `${base}/messages/${task.body.id}/claim`;

  const before = await rev();
  const forged = await app.request("POST", claim, { token: alpha.token, body: { agent: "beta" } });
  assert.equal(forged.status, 403);
  const nameless = await app.request("POST", claim, { token: room.token });
  assert.equal(nameless.status, 400, "the room token must name the claimer");
  assert.equal(await rev(), before);

  const mine = await app.request("POST", claim, { token: alpha.token });
  assert.equal(mine.status, 200);
  assert.equal(mine.body.claim.agent, "alpha");
  const steal = await app.request("DELETE", claim, { token: beta.token });
  assert.equal(steal.status, 409);
  assert.equal(steal.body.claim.agent, "alpha");
  const forgedRelease = await app.request("DELETE", claim, {
    token: beta.token,
    body: { agent: "alpha" },
  });
  assert.equal(forgedRelease.status, 403);
  const owner = await app.request("DELETE", claim, { token: room.token });
  assert.equal(owner.status, 200);
  assert.equal(owner.body.claim, null);
});

appTest(
  "without SYNC_ADMIN_TOKEN GET /rooms lists nothing, whatever token is sent",
  async (app) => {
    const room = await app.room();
    const agent = await app.agent(room, "a");
    for (const token of [undefined, room.token, room.view_token, agent.token]) {
      const res = await app.request("GET", "/rooms", { token });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, []);
    }
  },
);

const ADMIN = "admin-secret-0123456789";

appTest("SYNC_ADMIN_TOKEN is needed to create and to list rooms", async (app) => {
  for (const token of [undefined, "admin-secret-012345678", `${ADMIN}x`, "as_room_x"]) {
    const res = await app.request("POST", "/rooms", { token, body: {} });
    assert.equal(res.status, 401, String(token));
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer /);
    assert.doesNotMatch(res.text, TOKEN_TEXT);
  }
  const created = await app.request("POST", "/rooms", { token: ADMIN, body: { id: "locked" } });
  assert.equal(created.status, 201);
  assert.match(created.body.token, /^as_room_/);
  for (const token of [undefined, created.body.token, `${ADMIN}x`]) {
    const res = await app.request("GET", "/rooms", { token });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, "unauthorized");
    assert.ok(!res.text.includes("locked"));
  }
  const listed = await app.request("GET", "/rooms", { token: ADMIN });
  assert.deepEqual(listed.body.map((r: { id: string }) => r.id), ["locked"]);
  assert.doesNotMatch(listed.text, TOKEN_TEXT);
  assert.doesNotMatch(listed.text, /token_hash/);
  const read = await app.request("GET", "/rooms/locked", { token: created.body.token });
  assert.equal(read.status, 200, "the room's own token still works");
}, { SYNC_ADMIN_TOKEN: ADMIN });

appTest("SYNC_AUTH=open needs no tokens and lists every room", async (app) => {
  const a = await app.request("POST", "/rooms", { body: { id: "open-a" } });
  assert.equal(a.status, 201);
  assert.equal(a.body.token, undefined);
  assert.equal(a.body.view_token, undefined);
  await app.request("POST", "/rooms", { body: { id: "open-b" } });
  const rooms = await app.request("GET", "/rooms");
  assert.deepEqual(rooms.body.map((r: { id: string }) => r.id).sort(), ["open-a", "open-b"]);
  const agent = await app.request("POST", "/rooms/open-a/agents", {
    body: { id: "coder", name: "coder" },
  });
  assert.equal(agent.status, 201);
  assert.equal(agent.body.token, undefined);
  const again = await app.request("POST", "/rooms/open-a/agents", {
    body: { id: "coder", name: "coder", role: "lead" },
  });
  assert.equal(again.status, 200);
  assert.equal(again.body.role, "lead");
  const sent = await app.request("POST", "/rooms/open-a/messages", {
    body: { from: "coder", body: "hi" },
  });
  assert.equal(sent.body.from_agent, "coder");
  const claim = await app.request("POST", `/rooms/open-a/messages/${sent.body.id}/claim`, {
    body: { agent: "coder" },
  });
  assert.equal(claim.body.claim.agent, "coder");
  const put = await app.request("PUT", "/rooms/open-a/state", {
    body: { scope: "coder", key: "k", value: 1 },
  });
  assert.equal(put.status, 200);
}, { SYNC_AUTH: "open" });

const OWNED: { name: string; method: string; path: string; body: unknown }[] = [
  { name: "a room's created_at", method: "POST", path: "/rooms", body: { created_at: "2000" } },
  { name: "a room's rev", method: "POST", path: "/rooms", body: { rev: 99 } },
  { name: "a room's token", method: "POST", path: "/rooms", body: { token: "as_room_x" } },
  { name: "a room's token_hash", method: "POST", path: "/rooms", body: { token_hash: "00" } },
  { name: "a room's view_token", method: "POST", path: "/rooms", body: { view_token: "x" } },
  ...["token", "token_hash", "joined_at", "last_seen", "rev", "room_id", "status", "online"].map(
    (field) => ({
      name: `an agent's ${field} on registration`,
      method: "POST",
      path: "/agents",
      body: { id: "delta", name: "delta", [field]: "x" },
    }),
  ),
  ...["id", "token", "token_hash", "joined_at", "last_seen", "rev", "room_id"].map((field) => ({
    name: `an agent's ${field} on PATCH`,
    method: "PATCH",
    path: "/agents/alpha",
    body: { [field]: "x" },
  })),
  ...["id", "rev", "created_at", "room_id", "from_agent", "claim", "thread_id"].map((field) => ({
    name: `a message's ${field}`,
    method: "POST",
    path: "/messages",
    body: { body: "x", [field]: 7 },
  })),
  ...["claimed_at", "expires_at"].map((field) => ({
    name: `a claim's ${field}`,
    method: "POST",
    path: "/messages/1/claim",
    body: { agent: "alpha", [field]: "2999-01-01T00:00:00.000Z" },
  })),
  ...["version", "rev", "updated_at", "expires_at", "room_id", "deleted"].map((field) => ({
    name: `a key's ${field}`,
    method: "PUT",
    path: "/state",
    body: { key: "k", value: 1, [field]: 5 },
  })),
  ...["version", "rev", "updated_at"].map((field) => ({
    name: `a key's ${field} in a batch`,
    method: "PUT",
    path: "/state/batch",
    body: { ops: [{ key: "k", value: 1, [field]: 5 }] },
  })),
];

appTest("no request can set a field the server owns", async (app) => {
  const { room, rev, base } = await team(app);
  await app.request("POST", `${base}/messages`, { token: room.token, body: { body: "m" } });
  for (const c of OWNED) {
    const before = await rev();
    const path = c.path === "/rooms" ? c.path : `${base}${c.path}`;
    const res = await app.request(c.method, path, { token: room.token, body: c.body });
    assert.equal(res.status, 400, `${c.name}: ${res.text}`);
    assert.match(res.body.error, /^invalid_/, c.name);
    assert.match(res.body.message, /unknown field/, c.name);
    assert.equal(await rev(), before, `${c.name}: nothing is written`);
  }
  const rooms = await app.request("GET", `${base}/messages?after=0`, { token: room.token });
  assert.equal(rooms.body.length, 1);
});

appTest("the tokens of a deleted room open nothing in a new room of the same id", async (app) => {
  const old = await app.room({ id: "reused" });
  const agent = await app.agent(old, "alpha");
  assert.equal((await app.request("DELETE", "/rooms/reused", { token: old.token })).status, 200);
  const fresh = await app.room({ id: "reused" });
  assert.notEqual(fresh.token, old.token);
  for (const token of [old.token, old.view_token, agent.token]) {
    const read = await app.request("GET", "/rooms/reused/agents", { token });
    assert.equal(read.status, 404);
    const write = await app.request("POST", "/rooms/reused/messages", {
      token,
      body: { body: "ghost" },
    });
    assert.equal(write.status, 404);
  }
  const agents = await app.request("GET", "/rooms/reused/agents", { token: fresh.token });
  assert.deepEqual(agents.body, [], "the old agents are gone");
});
