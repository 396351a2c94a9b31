// The core API of issue 2 in-process: rooms, agents, messages, state, JSON round-trips, revisions.
import assert from "node:assert/strict";
import { appTest, type TestApp } from "./helpers.ts";

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Counts a table's rows for one room, straight from the database. */
async function rows(app: TestApp, table: string, roomId: string): Promise<number> {
  const db = await app.service.db();
  const rs = await db.execute({
    sql: `SELECT count(*) AS n FROM ${table} WHERE ${table === "rooms" ? "id" : "room_id"} = ?`,
    args: [roomId],
  });
  const row = rs.rows[0] as ArrayLike<unknown> & Record<string, unknown>;
  return Number(row[0] ?? row.n);
}

async function post(app: TestApp, room: { id: string; token?: string }, body: unknown) {
  const res = await app.request("POST", `/rooms/${room.id}/messages`, { token: room.token, body });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

async function put(app: TestApp, room: { id: string; token?: string }, body: unknown) {
  const res = await app.request("PUT", `/rooms/${room.id}/state`, { token: room.token, body });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

// ---------------------------------------------------------------- rooms

appTest("POST /rooms without an id creates a room with a generated id", async (app) => {
  const res = await app.request("POST", "/rooms", { body: {} });
  assert.equal(res.status, 201);
  assert.match(res.body.id, UUID);
  assert.match(res.body.created_at, ISO_MS);
  assert.equal(res.body.meta, null);
  assert.equal(res.body.rev, 0);
  assert.match(res.body.token, /^as_room_/);
  assert.match(res.body.view_token, /^as_view_/);
  assert.deepEqual(Object.keys(res.body).sort(), [
    "created_at",
    "id",
    "meta",
    "rev",
    "token",
    "view_token",
  ]);
});

appTest("POST /rooms with an id and meta creates that room", async (app) => {
  const res = await app.request("POST", "/rooms", {
    body: { id: "team-alpha", meta: { goal: "ship", n: 1 } },
  });
  assert.equal(res.status, 201);
  assert.equal(res.body.id, "team-alpha");
  assert.deepEqual(res.body.meta, { goal: "ship", n: 1 });
});

appTest(
  "POST /rooms with an existing id and its token joins: 200, nothing created",
  async (app) => {
    const room = await app.room({ id: "joinme", meta: { v: 1 } });
    const res = await app.request("POST", "/rooms", {
      token: room.token,
      body: { id: "joinme", meta: { v: 2 } },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.id, "joinme");
    assert.deepEqual(res.body.meta, { v: 1 }, "joining does not overwrite meta");
    assert.equal(res.body.token, undefined, "the token is never returned again");
    assert.equal(res.body.view_token, undefined);
    assert.equal(await rows(app, "rooms", "joinme"), 1);
    const got = await app.request("GET", "/rooms/joinme", { token: room.token });
    assert.equal(got.body.created_at, res.body.created_at);
  },
);

appTest("POST /rooms with an existing id and the view token also joins", async (app) => {
  const room = await app.room({ id: "joinview" });
  const res = await app.request("POST", "/rooms", {
    token: room.view_token,
    body: { id: "joinview" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.token, undefined);
});

appTest("POST /rooms with an existing id and no or another room's token is 409", async (app) => {
  const room = await app.room({ id: "taken" });
  const other = await app.room({ id: "other" });
  for (const token of [undefined, other.token]) {
    const res = await app.request("POST", "/rooms", { token, body: { id: "taken" } });
    assert.equal(res.status, 409);
    assert.equal(res.body.error, "room_exists");
    assert.equal(res.body.token, undefined);
  }
  const got = await app.request("GET", "/rooms/taken", { token: room.token });
  assert.equal(got.status, 200);
});

appTest("POST /rooms with an existing id joins in open mode", async (app) => {
  await app.room({ id: "shared-room" });
  const res = await app.request("POST", "/rooms", { body: { id: "shared-room" } });
  assert.equal(res.status, 200);
  assert.equal(res.body.id, "shared-room");
  const list = await app.request("GET", "/rooms");
  assert.equal(list.body.length, 1);
}, { SYNC_AUTH: "open" });

appTest("GET /rooms/:id returns the room without any token", async (app) => {
  const room = await app.room({ meta: ["a", 1] });
  const res = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {
    id: room.id,
    created_at: res.body.created_at,
    meta: ["a", 1],
    rev: 0,
  });
  assert.ok(!res.text.includes("as_room_") && !res.text.includes("as_view_"));
  assert.ok(!res.text.includes("token_hash"));
});

appTest("GET /rooms/:id returns 404 for an unknown room", async (app) => {
  const res = await app.request("GET", "/rooms/nope");
  assert.equal(res.status, 404);
  assert.equal(res.body.error, "not_found");
  assert.match(res.body.message, /"nope"/);
}, { SYNC_AUTH: "open" });

appTest("GET /rooms lists every room in open mode", async (app) => {
  const a = await app.room({ id: "a-room", meta: { x: 1 } });
  const b = await app.room({ id: "b-room" });
  const res = await app.request("GET", "/rooms");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.map((r: { id: string }) => r.id).sort(), [a.id, b.id]);
  const first = res.body.find((r: { id: string }) => r.id === "a-room");
  assert.deepEqual(first.meta, { x: 1 });
  assert.match(first.created_at, ISO_MS);
}, { SYNC_AUTH: "open" });

appTest("DELETE /rooms/:id removes the room and everything in it", async (app) => {
  const room = await app.room({ id: "doomed" });
  const keep = await app.room({ id: "kept" });
  for (const r of [room, keep]) {
    await app.agent(r, "planner");
    await post(app, r, { body: "hello" });
    await put(app, r, { key: "k", value: 1 });
  }
  const res = await app.request("DELETE", "/rooms/doomed", { token: room.token });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { deleted: true, id: "doomed" });
  for (const table of ["rooms", "agents", "messages", "state"]) {
    assert.equal(await rows(app, table, "doomed"), 0, `${table} of the deleted room`);
    assert.equal(await rows(app, table, "kept"), 1, `${table} of the other room`);
  }
  const got = await app.request("GET", "/rooms/doomed", { token: room.token });
  assert.equal(got.status, 404);
  const again = await app.request("DELETE", "/rooms/doomed", { token: room.token });
  assert.equal(again.status, 404);
});

appTest("a room re-created after DELETE starts empty", async (app) => {
  await app.room({ id: "phoenix" });
  await app.agent({ id: "phoenix" }, "planner");
  await post(app, { id: "phoenix" }, { body: 1 });
  await put(app, { id: "phoenix" }, { key: "k", value: 1 });
  assert.equal((await app.request("DELETE", "/rooms/phoenix")).status, 200);
  const again = await app.room({ id: "phoenix" });
  assert.equal(again.rev, 0);
  assert.deepEqual((await app.request("GET", "/rooms/phoenix/agents")).body, []);
  assert.deepEqual((await app.request("GET", "/rooms/phoenix/messages")).body, []);
  assert.deepEqual((await app.request("GET", "/rooms/phoenix/state")).body, []);
  const first = await post(app, { id: "phoenix" }, { body: 2 });
  assert.equal(first.id, 1);
}, { SYNC_AUTH: "open" });

// ---------------------------------------------------------------- agents

appTest("POST /rooms/:id/agents registers an agent: 201 with every field", async (app) => {
  const room = await app.room();
  const res = await app.request("POST", `/rooms/${room.id}/agents`, {
    token: room.token,
    body: { id: "planner", name: "The Planner", role: "lead", meta: { model: "x", n: 2 } },
  });
  assert.equal(res.status, 201);
  const { token, ...agent } = res.body;
  assert.match(token, /^as_agent_/);
  assert.equal(agent.id, "planner");
  assert.equal(agent.room_id, room.id);
  assert.equal(agent.name, "The Planner");
  assert.equal(agent.role, "lead");
  assert.deepEqual(agent.meta, { model: "x", n: 2 });
  assert.match(agent.joined_at, ISO_MS);
  assert.equal(agent.rev, 1);

  const list = await app.request("GET", `/rooms/${room.id}/agents`, { token: room.token });
  assert.equal(list.status, 200);
  assert.equal(list.body.length, 1);
  assert.equal(list.body[0].id, "planner");
  assert.equal(list.body[0].name, "The Planner");
  assert.equal(list.body[0].role, "lead");
  assert.deepEqual(list.body[0].meta, { model: "x", n: 2 });
  assert.equal(list.body[0].joined_at, agent.joined_at);
  assert.equal(list.body[0].token, undefined, "listings never show tokens");
  assert.ok(!list.text.includes("as_agent_") && !list.text.includes("token_hash"));

  const one = await app.request("GET", `/rooms/${room.id}/agents/planner`, { token: room.token });
  assert.equal(one.status, 200);
  assert.equal(one.body.token, undefined);
  assert.equal(one.body.name, "The Planner");
});

appTest("POST /rooms/:id/agents fills in id, role and meta when omitted", async (app) => {
  const room = await app.room();
  const res = await app.request("POST", `/rooms/${room.id}/agents`, {
    token: room.token,
    body: { name: "anon" },
  });
  assert.equal(res.status, 201);
  assert.match(res.body.id, UUID);
  assert.equal(res.body.role, "agent");
  assert.equal(res.body.meta, null);
});

appTest("agent ids are unique per room, not globally", async (app) => {
  const a = await app.room();
  const b = await app.room();
  const pa = await app.agent(a, "planner", { role: "a-role" });
  const pb = await app.agent(b, "planner", { role: "b-role" });
  assert.notEqual(pa.token, pb.token);
  const la = await app.request("GET", `/rooms/${a.id}/agents`, { token: a.token });
  const lb = await app.request("GET", `/rooms/${b.id}/agents`, { token: b.token });
  assert.deepEqual(la.body.map((x: { role: string }) => x.role), ["a-role"]);
  assert.deepEqual(lb.body.map((x: { role: string }) => x.role), ["b-role"]);
  assert.equal(la.body[0].room_id, a.id);
  assert.equal(lb.body[0].room_id, b.id);
});

appTest("re-registering an agent in open mode updates it and adds nobody", async (app) => {
  const room = await app.room();
  await app.agent(room, "coder", { role: "dev" });
  const res = await app.request("POST", `/rooms/${room.id}/agents`, {
    body: { id: "coder", name: "Coder 2", role: "reviewer" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.name, "Coder 2");
  assert.equal(res.body.role, "reviewer");
  const list = await app.request("GET", `/rooms/${room.id}/agents`);
  assert.equal(list.body.length, 1);
}, { SYNC_AUTH: "open" });

appTest("GET /rooms/:id/agents/:agent_id returns 404 for an unregistered agent", async (app) => {
  const room = await app.room();
  await app.agent(room, "planner");
  const res = await app.request("GET", `/rooms/${room.id}/agents/ghost`, { token: room.token });
  assert.equal(res.status, 404);
  assert.equal(res.body.error, "not_found");
  assert.match(res.body.message, /"ghost"/);
});

appTest("an agent registered in one room is not listed in another", async (app) => {
  const a = await app.room();
  const b = await app.room();
  await app.agent(a, "only-in-a");
  const lb = await app.request("GET", `/rooms/${b.id}/agents`, { token: b.token });
  assert.deepEqual(lb.body, []);
  const one = await app.request("GET", `/rooms/${b.id}/agents/only-in-a`, { token: b.token });
  assert.equal(one.status, 404);
});

// ---------------------------------------------------------------- messages

appTest("POST /rooms/:id/messages answers 201 with the README's fields", async (app) => {
  const room = await app.room();
  const res = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { from: "human", to: "planner", kind: "task", body: { do: "plan" } },
  });
  assert.equal(res.status, 201);
  const m = res.body;
  assert.equal(typeof m.id, "number");
  assert.equal(m.room_id, room.id);
  assert.equal(m.from_agent, "human");
  assert.equal(m.to_agent, "planner");
  assert.equal(m.kind, "task");
  assert.deepEqual(m.body, { do: "plan" });
  assert.match(m.created_at, ISO_MS);
  assert.equal(m.reply_to, null);
  assert.equal(m.claim, null);
  assert.equal(m.rev, m.id);
});

appTest('a message without from, to or kind defaults to null, null and "message"', async (app) => {
  const room = await app.room();
  const m = await post(app, room, { body: "hi" });
  assert.equal(m.from_agent, null);
  assert.equal(m.to_agent, null);
  assert.equal(m.kind, "message");
  assert.equal(m.body, "hi");
});

appTest("message ids increase within a room and ignore other rooms' traffic", async (app) => {
  const a = await app.room();
  const b = await app.room();
  const ids: number[] = [];
  for (let i = 0; i < 5; i++) ids.push((await post(app, a, { body: i })).id);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `${ids}`);
  const first = await post(app, b, { body: "b" });
  assert.equal(first.id, 1, "room b's first message is id 1 whatever room a did");
  const list = await app.request("GET", `/rooms/${a.id}/messages`, { token: a.token });
  assert.deepEqual(list.body.map((m: { id: number }) => m.id), ids);
  assert.deepEqual(list.body.map((m: { body: number }) => m.body), [0, 1, 2, 3, 4]);
  assert.ok(!list.text.includes(`"${b.id}"`), "no message of another room is listed");
});

appTest("GET /rooms/:id/messages filters by after and kind", async (app) => {
  const room = await app.room();
  const m1 = await post(app, room, { kind: "task", body: 1 });
  const m2 = await post(app, room, { kind: "result", body: 2 });
  const m3 = await post(app, room, { kind: "task", body: 3 });
  const get = async (qs: string) => {
    const res = await app.request("GET", `/rooms/${room.id}/messages?${qs}`, {
      token: room.token,
    });
    assert.equal(res.status, 200, res.text);
    return res.body.map((m: { id: number }) => m.id);
  };
  assert.deepEqual(await get("after=0"), [m1.id, m2.id, m3.id]);
  assert.deepEqual(await get(`after=${m1.id}`), [m2.id, m3.id]);
  assert.deepEqual(await get(`after=${m3.id}`), []);
  const ahead = await app.request("GET", `/rooms/${room.id}/messages?after=999`, {
    token: room.token,
  });
  assert.equal(ahead.status, 400, "a cursor ahead of the room is refused, not waited on");
  assert.match(ahead.body.message, /after=0/);
  assert.deepEqual(await get("kind=task"), [m1.id, m3.id]);
  assert.deepEqual(await get(`kind=task&after=${m1.id}`), [m3.id]);
  assert.deepEqual(await get("kind=error"), []);
  assert.deepEqual(await get("limit=2"), [m1.id, m2.id]);
  assert.deepEqual(await get(`limit=1&after=${m1.id}`), [m2.id]);
});

appTest("before= returns the newest messages before an id, oldest first", async (app) => {
  const room = await app.room();
  const sent: number[] = [];
  for (let i = 0; i < 6; i++) sent.push((await post(app, room, { body: i })).id);
  const res = await app.request("GET", `/rooms/${room.id}/messages?before=${sent[5]}&limit=2`, {
    token: room.token,
  });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.map((m: { id: number }) => m.id), [sent[3], sent[4]]);
});

appTest("GET /rooms/:id/messages returns 100 by default, the oldest first", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 105; i++) await post(app, room, { body: i });
  const res = await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
  assert.equal(res.body.length, 100);
  assert.equal(res.body[0].body, 0);
  assert.equal(res.body[99].body, 99);
  const rest = await app.request("GET", `/rooms/${room.id}/messages?after=${res.body[99].id}`, {
    token: room.token,
  });
  assert.deepEqual(rest.body.map((m: { body: number }) => m.body), [100, 101, 102, 103, 104]);
});

appTest("a limit above the maximum is clamped, not refused", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 8; i++) await post(app, room, { body: i });
  for (let i = 0; i < 8; i++) await put(app, room, { key: `k${i}`, value: i });
  for (const path of ["messages?limit=1000000", "state?limit=1000000"]) {
    const res = await app.request("GET", `/rooms/${room.id}/${path}`, { token: room.token });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.length, 5, path);
  }
  const changes = await app.request("GET", `/rooms/${room.id}/changes?limit=999999`, {
    token: room.token,
  });
  assert.equal(changes.status, 200);
  assert.equal(changes.body.changes.length, 5);
}, { SYNC_MAX_LIMIT: "5", SYNC_DEFAULT_LIMIT: "3" });

appTest("the default limit comes from SYNC_DEFAULT_LIMIT", async (app) => {
  const room = await app.room();
  for (let i = 0; i < 6; i++) await post(app, room, { body: i });
  const res = await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
  assert.deepEqual(res.body.map((m: { body: number }) => m.body), [0, 1, 2]);
}, { SYNC_MAX_LIMIT: "5", SYNC_DEFAULT_LIMIT: "3" });

appTest("GET /rooms/:id/messages/:msg_id returns one message, 404 when absent", async (app) => {
  const room = await app.room();
  const m = await post(app, room, { body: { x: 1 } });
  const one = await app.request("GET", `/rooms/${room.id}/messages/${m.id}`, {
    token: room.token,
  });
  assert.equal(one.status, 200);
  assert.deepEqual(one.body, m);
  const none = await app.request("GET", `/rooms/${room.id}/messages/${m.id + 1}`, {
    token: room.token,
  });
  assert.equal(none.status, 404);
  assert.equal(none.body.error, "not_found");
});

appTest("a message's from and to need not be registered agents", async (app) => {
  const room = await app.room();
  const m = await post(app, room, { from: "someone-new", to: "nobody-yet", body: "hi" });
  assert.equal(m.from_agent, "someone-new");
  assert.equal(m.to_agent, "nobody-yet");
}, { SYNC_AUTH: "open" });

// ---------------------------------------------------------------- state

appTest("PUT /rooms/:id/state writes a key: version 1, then 2, 3", async (app) => {
  const room = await app.room();
  const first = await put(app, room, { key: "plan", value: { step: 1 } });
  assert.deepEqual(Object.keys(first).sort(), [
    "expires_at",
    "key",
    "rev",
    "room_id",
    "scope",
    "updated_at",
    "value",
    "version",
  ]);
  assert.equal(first.room_id, room.id);
  assert.equal(first.scope, "_shared");
  assert.equal(first.key, "plan");
  assert.deepEqual(first.value, { step: 1 });
  assert.equal(first.version, 1);
  assert.match(first.updated_at, ISO_MS);
  assert.equal(first.expires_at, null);
  const second = await put(app, room, { key: "plan", value: { step: 2 } });
  assert.equal(second.version, 2);
  assert.ok(second.rev > first.rev);
  const third = await put(app, room, { key: "plan", value: { step: 3 } });
  assert.equal(third.version, 3);
  const got = await app.request("GET", `/rooms/${room.id}/state?key=plan`, { token: room.token });
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, third);
});

appTest("GET /rooms/:id/state lists keys, filtered by scope when given", async (app) => {
  const room = await app.room();
  await put(app, room, { key: "b", value: 1 });
  await put(app, room, { key: "a", value: 2 });
  await put(app, room, { scope: "planner", key: "a", value: 3 });
  await put(app, room, { scope: "coder", key: "z", value: 4 });
  const list = async (qs: string) => {
    const res = await app.request("GET", `/rooms/${room.id}/state${qs}`, { token: room.token });
    assert.equal(res.status, 200);
    assert.ok(Array.isArray(res.body));
    return res.body.map((e: { scope: string; key: string; value: number }) =>
      `${e.scope}/${e.key}=${e.value}`
    ).sort();
  };
  assert.deepEqual(await list(""), ["_shared/a=2", "_shared/b=1", "coder/z=4", "planner/a=3"]);
  assert.deepEqual(await list("?scope=_shared"), ["_shared/a=2", "_shared/b=1"]);
  assert.deepEqual(await list("?scope=planner"), ["planner/a=3"]);
  assert.deepEqual(await list("?scope=nobody"), []);
  const scoped = await app.request("GET", `/rooms/${room.id}/state?scope=planner&key=a`, {
    token: room.token,
  });
  assert.equal(scoped.body.value, 3);
  const shared = await app.request("GET", `/rooms/${room.id}/state?key=a`, { token: room.token });
  assert.equal(shared.body.value, 2, "key without scope reads _shared");
});

appTest("GET /rooms/:id/state?key= returns 404 for an absent key", async (app) => {
  const room = await app.room();
  await put(app, room, { scope: "planner", key: "only-here", value: 1 });
  for (const qs of ["key=missing", "key=only-here", "scope=coder&key=only-here"]) {
    const res = await app.request("GET", `/rooms/${room.id}/state?${qs}`, { token: room.token });
    assert.equal(res.status, 404, qs);
    assert.equal(res.body.error, "not_found");
    assert.equal(res.body.status, 404);
  }
});

appTest("DELETE /rooms/:id/state removes a key; re-creating continues its version", async (app) => {
  const room = await app.room();
  await put(app, room, { scope: "s", key: "k", value: "a" });
  await put(app, room, { scope: "s", key: "k", value: "b" });
  const del = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { scope: "s", key: "k" },
  });
  assert.equal(del.status, 200);
  assert.equal(del.body.deleted, true);
  assert.equal(del.body.key, "k");
  assert.equal(del.body.scope, "s");
  const gone = await app.request("GET", `/rooms/${room.id}/state?scope=s&key=k`, {
    token: room.token,
  });
  assert.equal(gone.status, 404);
  const list = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
  assert.deepEqual(list.body, [], "a deleted key is not listed");
  const again = await put(app, room, { scope: "s", key: "k", value: "c" });
  assert.equal(again.version, 3, "a version once used for a key is never used again");
  assert.equal(again.value, "c");
});

appTest("DELETE /rooms/:id/state returns 404 for an absent key", async (app) => {
  const room = await app.room();
  const before = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
  const res = await app.request("DELETE", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "never" },
  });
  assert.equal(res.status, 404);
  assert.equal(res.body.error, "not_found");
  const after = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
  assert.equal(after, before);
});

appTest("state of one room is invisible to another", async (app) => {
  const a = await app.room();
  const b = await app.room();
  await put(app, a, { key: "secret", value: "a-only" });
  const got = await app.request("GET", `/rooms/${b.id}/state?key=secret`, { token: b.token });
  assert.equal(got.status, 404);
  const list = await app.request("GET", `/rooms/${b.id}/state`, { token: b.token });
  assert.deepEqual(list.body, []);
  const first = await put(app, b, { key: "secret", value: "b" });
  assert.equal(first.version, 1);
});

// ---------------------------------------------------------------- JSON round-trips

const JSON_VALUES: [string, unknown][] = [
  ["the number 1", 1],
  ['the string "1"', "1"],
  ["zero", 0],
  ["a negative float", -12.5],
  ["a large integer", 9007199254740991],
  ["true", true],
  ["false", false],
  ["null", null],
  ["an empty string", ""],
  ["an empty object", {}],
  ["an empty array", []],
  ["an array of mixed types", [1, "1", null, true, { a: [] }]],
  ["a nested object", { a: { b: { c: [1, { d: "e" }] } }, n: 1, s: "1" }],
  ["unicode text", 'héllo wörld ✓ 日本語 🤖 \u2028 "quoted" \\ back'],
  ["a string that looks like JSON", '{"a":1}'],
  ["unicode keys", { "ключ": "значение", "🔑": ["✓"] }],
  ["an object with a __proto__ key", JSON.parse('{"__proto__": {"x": 1}, "a": 1}')],
];

for (const [name, value] of JSON_VALUES) {
  appTest(`${name} round-trips exactly as message body, state value and meta`, async (app) => {
    const room = await app.room({ meta: value });
    assert.deepEqual((room as unknown as { meta: unknown }).meta, value, "room meta on create");
    const got = await app.request("GET", `/rooms/${room.id}`, { token: room.token });
    assert.deepEqual(got.body.meta, value, "room meta");

    const agent = await app.request("POST", `/rooms/${room.id}/agents`, {
      token: room.token,
      body: { id: "a", name: "a", meta: value },
    });
    assert.deepEqual(agent.body.meta, value, "agent meta on create");
    const agents = await app.request("GET", `/rooms/${room.id}/agents`, { token: room.token });
    assert.deepEqual(agents.body[0].meta, value, "agent meta listed");

    const m = await post(app, room, { body: value });
    assert.deepEqual(m.body, value, "message body on create");
    const list = await app.request("GET", `/rooms/${room.id}/messages`, { token: room.token });
    assert.deepEqual(list.body[0].body, value, "message body listed");

    const s = await put(app, room, { key: "k", value });
    assert.deepEqual(s.value, value, "state value on write");
    const one = await app.request("GET", `/rooms/${room.id}/state?key=k`, { token: room.token });
    assert.deepEqual(one.body.value, value, "state value read");
    const all = await app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
    assert.deepEqual(all.body[0].value, value, "state value listed");
    assert.equal(typeof one.body.value, typeof value);
  });
}

appTest("unicode room ids, agent ids, scopes and keys round-trip", async (app) => {
  const room = await app.room({ id: "комната-1" });
  await app.agent(room, "агент");
  const e = await put(app, room, { scope: "агент", key: "ключ с пробелом 🔑", value: 1 });
  assert.equal(e.key, "ключ с пробелом 🔑");
  const got = await app.request(
    "GET",
    `/rooms/${encodeURIComponent(room.id)}/state?scope=${encodeURIComponent("агент")}&key=${
      encodeURIComponent("ключ с пробелом 🔑")
    }`,
    { token: room.token },
  );
  assert.equal(got.status, 200, got.text);
  assert.equal(got.body.room_id, "комната-1");
  assert.equal(got.body.scope, "агент");
});

// ---------------------------------------------------------------- revisions

appTest("every write takes the room's next revision", async (app) => {
  const room = await app.room();
  const tok = { token: room.token };
  const base = `/rooms/${room.id}`;
  const revs: [string, number][] = [];
  const planner = await app.request("POST", `${base}/agents`, {
    ...tok,
    body: { id: "planner", name: "p" },
  });
  revs.push(["agent registered", planner.body.rev]);
  const m = await app.request("POST", `${base}/messages`, {
    ...tok,
    body: { from: "planner", kind: "task", body: "t" },
  });
  revs.push(["message", m.body.rev]);
  assert.equal(m.body.id, m.body.rev, "a message's id is the revision it was written at");
  const s1 = await app.request("PUT", `${base}/state`, { ...tok, body: { key: "k", value: 1 } });
  revs.push(["state put", s1.body.rev]);
  const s2 = await app.request("PUT", `${base}/state`, { ...tok, body: { key: "k", value: 2 } });
  revs.push(["state overwrite", s2.body.rev]);
  const patch = await app.request("PATCH", `${base}/agents/planner`, {
    ...tok,
    body: { status: "busy" },
  });
  revs.push(["agent patched", patch.body.rev]);
  const claim = await app.request("POST", `${base}/messages/${m.body.id}/claim`, {
    ...tok,
    body: { agent: "planner" },
  });
  assert.equal(claim.status, 200, claim.text);
  revs.push(["claim", claim.body.rev]);
  const del = await app.request("DELETE", `${base}/state`, { ...tok, body: { key: "k" } });
  revs.push(["state delete", del.body.rev]);
  const m2 = await app.request("POST", `${base}/messages`, { ...tok, body: { body: "x" } });
  revs.push(["second message", m2.body.rev]);
  assert.equal(m2.body.id, m2.body.rev);

  assert.deepEqual(
    revs.map(([what, rev]) => [what, rev]),
    revs.map(([what], i) => [what, i + 1]),
  );
  const got = await app.request("GET", base, tok);
  assert.equal(got.body.rev, revs.length);
});

appTest("state entries carry the revision of their last write", async (app) => {
  const room = await app.room();
  await post(app, room, { body: "first" });
  const s = await put(app, room, { key: "k", value: 1 });
  assert.equal(s.rev, 2);
  await post(app, room, { body: "second" });
  const got = await app.request("GET", `/rooms/${room.id}/state?key=k`, { token: room.token });
  assert.equal(got.body.rev, 2, "a later message does not change the key's rev");
  const s2 = await put(app, room, { key: "k", value: 2 });
  assert.equal(s2.rev, 4);
});

appTest("reads take no revision", async (app) => {
  const room = await app.room();
  const agent = await app.agent(room, "reader");
  await post(app, room, { body: 1 });
  const before = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
  for (const path of ["", "/messages", "/agents", "/state", "/changes", "/agents/reader"]) {
    const res = await app.request("GET", `/rooms/${room.id}${path}`, { token: agent.token });
    assert.equal(res.status, 200, path);
  }
  const after = (await app.request("GET", `/rooms/${room.id}`, { token: room.token })).body.rev;
  assert.equal(after, before);
});

// ---------------------------------------------------------------- pages and fallbacks

appTest("GET /health answers ok", async (app) => {
  const res = await app.request("GET", "/health");
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, true);
});

appTest("an unknown route answers 404 with the JSON error shape", async (app) => {
  for (const [method, path] of [["GET", "/nope"], ["POST", "/rooms/x/y/z"]]) {
    const res = await app.request(method, path);
    assert.equal(res.status, 404, `${method} ${path}`);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(res.body.error, "not_found");
    assert.equal(res.body.status, 404);
    assert.equal(typeof res.body.message, "string");
  }
});

appTest(
  "a known route with the wrong method answers 405 naming the methods to use",
  async (app) => {
    const res = await app.request("PATCH", "/rooms");
    assert.equal(res.status, 405);
    assert.equal(res.body.error, "method_not_allowed");
    assert.equal(res.headers.get("allow"), "POST, GET");
    assert.match(res.body.message, /use POST or GET/);
  },
);
