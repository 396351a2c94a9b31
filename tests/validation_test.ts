// Bad input of every kind gets one JSON error shape, says what to do, and changes nothing.
import assert from "node:assert/strict";
import { appTest, type Res, type TestApp } from "./helpers.ts";

interface Case {
  name: string;
  method: string;
  /** `{room}` stands for the fixture room's id. */
  url: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  status: number;
  expect: { error: string; message?: RegExp };
}

/** A room holding agent `a1`, one message and one state key, so changes would show. */
async function fixture(app: TestApp) {
  const room = await app.room({ id: "fixture-room", meta: { m: 1 } });
  await app.agent(room, "a1", { role: "r" });
  const message = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { from: "a1", kind: "task", body: "do it" },
  });
  assert.equal(message.status, 201);
  const state = await app.request("PUT", `/rooms/${room.id}/state`, {
    token: room.token,
    body: { key: "k", value: { v: 1 } },
  });
  assert.equal(state.status, 200);
  return room;
}

/** Everything a request could have changed: every row of every table but the migrations. */
async function snapshot(app: TestApp): Promise<string> {
  const db = await app.service.db();
  const out: Record<string, unknown> = {};
  for (const table of ["rooms", "agents", "messages", "state", "idempotency"]) {
    const rs = await db.execute({ sql: `SELECT * FROM ${table} ORDER BY 1, 2` });
    out[table] = rs.rows.map((r) => Array.isArray(r) ? r : Object.values(r));
  }
  return JSON.stringify(out, (_, v) => typeof v === "bigint" ? Number(v) : v);
}

/** The single error shape: `{ error, message, status }` (plus details), in Deno's message style. */
function assertErrorShape(res: Res, status: number, label: string) {
  assert.equal(res.status, status, `${label}: ${res.text}`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, label);
  assert.equal(typeof res.body, "object", label);
  assert.equal(typeof res.body.error, "string", label);
  assert.match(res.body.error, /^[a-z_]+$/, label);
  assert.equal(typeof res.body.message, "string", label);
  assert.ok(res.body.message.length > 0, label);
  assert.doesNotMatch(res.body.message, /\.$/, `${label}: no trailing period`);
  assert.equal(res.body.status, status, label);
  assert.doesNotMatch(res.text, /constraint failed|SQLITE|stack|at \w+ \(/i, label);
}

const LONG_ID = "x".repeat(129);
const BIG = "x".repeat(300 * 1024);

const BAD_INPUT: Case[] = [
  // ---- bodies that are not a JSON object
  {
    name: "malformed JSON",
    method: "POST",
    url: "/rooms/{room}/messages",
    raw: '{"body": ',
    status: 400,
    expect: { error: "invalid_json", message: /^Cannot parse body as JSON/ },
  },
  {
    name: "JSON with a trailing comma",
    method: "POST",
    url: "/rooms/{room}/messages",
    raw: '{"body": "x",}',
    status: 400,
    expect: { error: "invalid_json" },
  },
  {
    name: "a text/plain body",
    method: "POST",
    url: "/rooms/{room}/messages",
    raw: '{"body": "x"}',
    headers: { "content-type": "text/plain" },
    status: 415,
    expect: { error: "unsupported_media_type", message: /Content-Type: application\/json/ },
  },
  {
    name: "a form-encoded body (curl -d without -H)",
    method: "PUT",
    url: "/rooms/{room}/state",
    raw: '{"key": "k", "value": 2}',
    headers: { "content-type": "application/x-www-form-urlencoded" },
    status: 415,
    expect: { error: "unsupported_media_type" },
  },
  {
    name: "a JSON array body",
    method: "POST",
    url: "/rooms/{room}/messages",
    raw: '[{"body": 1}]',
    status: 400,
    expect: { error: "invalid_body", message: /expected a JSON object/ },
  },
  {
    name: "a JSON string body",
    method: "PUT",
    url: "/rooms/{room}/state",
    raw: '"k"',
    status: 400,
    expect: { error: "invalid_body", message: /expected a JSON object/ },
  },
  {
    name: "a JSON null body",
    method: "POST",
    url: "/rooms/{room}/agents",
    raw: "null",
    status: 400,
    expect: { error: "invalid_body", message: /expected a JSON object/ },
  },
  {
    name: "a JSON number body",
    method: "POST",
    url: "/rooms",
    raw: "42",
    status: 400,
    expect: { error: "invalid_body", message: /expected a JSON object/ },
  },
  {
    name: "an empty body",
    method: "POST",
    url: "/rooms/{room}/messages",
    raw: "",
    status: 400,
    expect: { error: "invalid_body", message: /got nothing/ },
  },
  {
    name: "a body larger than the cap",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { body: BIG },
    status: 413,
    expect: { error: "payload_too_large", message: /larger than 262144 bytes/ },
  },
  {
    name: "a message body larger than the value cap",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { body: "x".repeat(70 * 1024) },
    status: 413,
    expect: { error: "value_too_large", message: /"body"/ },
  },
  {
    name: "a state value larger than the value cap",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: ["x".repeat(70 * 1024)] },
    status: 413,
    expect: { error: "value_too_large", message: /"value"/ },
  },
  // ---- messages
  {
    name: "a message without body",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { kind: "task" },
    status: 400,
    expect: { error: "invalid_body", message: /missing field "body"/ },
  },
  {
    name: "a message with content instead of body",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { content: "hello" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "content": did you mean "body"\?/ },
  },
  {
    name: "a message with text instead of body",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { text: "hello" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "text": did you mean "body"\?/ },
  },
  {
    name: "a message with from_agent instead of from",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { from_agent: "a1", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "from_agent": did you mean "from"\?/ },
  },
  {
    name: "a message with a misspelt field",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { knd: "task", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "knd": did you mean "kind"\?/ },
  },
  {
    name: "a message setting its own id",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { id: 99, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "id"/ },
  },
  {
    name: "a message setting its own created_at",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { created_at: "2000-01-01T00:00:00.000Z", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "created_at"/ },
  },
  {
    name: "a message with a numeric kind",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { kind: 5, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "kind"/ },
  },
  {
    name: "a message with an empty kind",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { kind: "", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "kind" must not be empty/ },
  },
  {
    name: "a message with a numeric from",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { from: 7, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "from"/ },
  },
  {
    name: "a message with a boolean to",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { to: true, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "to"/ },
  },
  {
    name: "a message from an id with a control character",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { from: "a\u0001b", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "from" may contain only/ },
  },
  {
    name: "a message to an id over the length limit",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { to: LONG_ID, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "to" must be at most 128 characters/ },
  },
  {
    name: "a message with a string reply_to",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { reply_to: "2", body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "reply_to"/ },
  },
  {
    name: "a message with a negative reply_to",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { reply_to: -1, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "reply_to"/ },
  },
  {
    name: "a message replying to a message that does not exist",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { reply_to: 999, body: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /"reply_to" names message 999/ },
  },
  // ---- state
  {
    name: "a state write without key",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /missing field "key"/ },
  },
  {
    name: "a state write without value",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k" },
    status: 400,
    expect: { error: "invalid_body", message: /missing field "value"/ },
  },
  {
    name: "a state write with data instead of value",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", data: 2 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "data": did you mean "value"\?/ },
  },
  {
    name: "a state write with version instead of if_version",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, version: 1 },
    status: 400,
    expect: {
      error: "invalid_body",
      message: /unknown field "version": did you mean "if_version"\?/,
    },
  },
  {
    name: "a state write with a misspelt scope",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { scop: "x", key: "k", value: 2 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "scop": did you mean "scope"\?/ },
  },
  {
    name: "a state write with an empty key",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "", value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "key" must not be empty/ },
  },
  {
    name: "a state write with a key over the length limit",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k".repeat(257), value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "key" must be at most 256 characters/ },
  },
  {
    name: "a state write with a key holding a control character",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "a\u0000b", value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "key" must not contain control characters/ },
  },
  {
    name: "a state write with a numeric key",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: 5, value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "key"/ },
  },
  {
    name: "a state write with a scope holding a space",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { scope: "two words", key: "k", value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "scope" may contain only/ },
  },
  {
    name: "a state write with a negative if_version",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, if_version: -1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "if_version"/ },
  },
  {
    name: "a state write with a string if_version",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, if_version: "1" },
    status: 400,
    expect: { error: "invalid_body", message: /field "if_version"/ },
  },
  {
    name: "a state write with a fractional if_version",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, if_version: 1.5 },
    status: 400,
    expect: { error: "invalid_body", message: /field "if_version"/ },
  },
  {
    name: "a state write with a zero ttl",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, ttl: 0 },
    status: 400,
    expect: { error: "invalid_body", message: /field "ttl" must be positive/ },
  },
  {
    name: "a state write with a string ttl",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, ttl: "10" },
    status: 400,
    expect: { error: "invalid_body", message: /field "ttl"/ },
  },
  {
    name: "a state write setting its own version number",
    method: "PUT",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 2, rev: 100 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "rev"/ },
  },
  {
    name: "a state delete without key",
    method: "DELETE",
    url: "/rooms/{room}/state",
    body: {},
    status: 400,
    expect: { error: "invalid_body", message: /missing field "key"/ },
  },
  {
    name: "a state delete with if_version 0",
    method: "DELETE",
    url: "/rooms/{room}/state",
    body: { key: "k", if_version: 0 },
    status: 400,
    expect: { error: "invalid_body", message: /field "if_version"/ },
  },
  {
    name: "a state delete with a value",
    method: "DELETE",
    url: "/rooms/{room}/state",
    body: { key: "k", value: 1 },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "value"/ },
  },
  {
    name: "a state delete with neither a body nor a key in the query",
    method: "DELETE",
    url: "/rooms/{room}/state",
    status: 400,
    expect: { error: "invalid_query" },
  },
  {
    name: "a batch without ops",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: {},
    status: 400,
    expect: { error: "invalid_body", message: /missing field "ops"/ },
  },
  {
    name: "a batch with no operations",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: { ops: [] },
    status: 400,
    expect: { error: "invalid_body", message: /at least one operation/ },
  },
  {
    name: "a batch whose ops is not an array",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: { ops: { key: "k", value: 1 } },
    status: 400,
    expect: { error: "invalid_body", message: /field "ops"/ },
  },
  {
    name: "a batch writing one key twice",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: { ops: [{ key: "n", value: 1 }, { key: "n", value: 2 }] },
    status: 400,
    expect: { error: "invalid_body", message: /ops\[1\] writes key "n" in scope "_shared"/ },
  },
  {
    name: "a batch with an operation missing its value",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: { ops: [{ key: "n", value: 1 }, { key: "m" }] },
    status: 400,
    expect: { error: "invalid_body", message: /ops\[1\]/ },
  },
  {
    name: "a batch with over 100 operations",
    method: "PUT",
    url: "/rooms/{room}/state/batch",
    body: { ops: Array.from({ length: 101 }, (_, i) => ({ key: `n${i}`, value: i })) },
    status: 400,
    expect: { error: "invalid_body", message: /at most 100 operations/ },
  },
  // ---- agents
  {
    name: "an agent without name",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a2" },
    status: 400,
    expect: { error: "invalid_body", message: /missing field "name"/ },
  },
  {
    name: "an agent with a numeric name",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a2", name: 5 },
    status: 400,
    expect: { error: "invalid_body", message: /field "name"/ },
  },
  {
    name: "an agent with an empty name",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a2", name: "" },
    status: 400,
    expect: { error: "invalid_body", message: /field "name" must not be empty/ },
  },
  {
    name: "an agent id with a space",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a 2", name: "x" },
    status: 400,
    expect: { error: "invalid_body", message: /field "id" may contain only/ },
  },
  {
    name: "an agent id with a slash",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a/2", name: "x" },
    status: 400,
    expect: { error: "invalid_body", message: /field "id"/ },
  },
  {
    name: "an agent id over the length limit",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: LONG_ID, name: "x" },
    status: 400,
    expect: { error: "invalid_body", message: /field "id" must be at most 128 characters/ },
  },
  {
    name: "an agent with agent_id instead of id",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { agent_id: "a2", name: "x" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "agent_id": did you mean "id"\?/ },
  },
  {
    name: "an agent with a numeric role",
    method: "POST",
    url: "/rooms/{room}/agents",
    body: { id: "a2", name: "x", role: 5 },
    status: 400,
    expect: { error: "invalid_body", message: /field "role"/ },
  },
  {
    name: "an agent status that is not a string",
    method: "PATCH",
    url: "/rooms/{room}/agents/a1",
    body: { status: 5 },
    status: 400,
    expect: { error: "invalid_body", message: /field "status"/ },
  },
  {
    name: "an empty agent status",
    method: "PATCH",
    url: "/rooms/{room}/agents/a1",
    body: { status: "" },
    status: 400,
    expect: { error: "invalid_body", message: /field "status" must not be empty/ },
  },
  {
    name: "an agent note over 280 characters",
    method: "PATCH",
    url: "/rooms/{room}/agents/a1",
    body: { note: "n".repeat(281) },
    status: 400,
    expect: { error: "invalid_body", message: /field "note" must be at most 280 characters/ },
  },
  {
    name: "an agent patch with an unknown field",
    method: "PATCH",
    url: "/rooms/{room}/agents/a1",
    body: { mood: "happy" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "mood"/ },
  },
  {
    name: "an agent patch setting last_seen",
    method: "PATCH",
    url: "/rooms/{room}/agents/a1",
    body: { last_seen: "2000-01-01T00:00:00.000Z" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "last_seen"/ },
  },
  // ---- rooms
  {
    name: "a room id with a control character",
    method: "POST",
    url: "/rooms",
    body: { id: "a\u0007b" },
    status: 400,
    expect: { error: "invalid_body", message: /field "id" may contain only/ },
  },
  {
    name: "a room id over the length limit",
    method: "POST",
    url: "/rooms",
    body: { id: LONG_ID },
    status: 400,
    expect: { error: "invalid_body", message: /field "id" must be at most 128 characters/ },
  },
  {
    name: "a room with an unknown field",
    method: "POST",
    url: "/rooms",
    body: { name: "my room" },
    status: 400,
    expect: { error: "invalid_body", message: /unknown field "name"/ },
  },
  // ---- claims
  {
    name: "a claim with a negative ttl",
    method: "POST",
    url: "/rooms/{room}/messages/2/claim",
    body: { agent: "a1", ttl: -1 },
    status: 400,
    expect: { error: "invalid_body", message: /field "ttl" must be positive/ },
  },
  {
    name: "a claim by the room token that names no agent",
    method: "POST",
    url: "/rooms/{room}/messages/2/claim",
    body: {},
    status: 400,
    expect: { error: "invalid_body", message: /missing field "agent"/ },
  },
  {
    name: "a claim of a non-numeric message id",
    method: "POST",
    url: "/rooms/{room}/messages/abc/claim",
    body: { agent: "a1" },
    status: 400,
    expect: { error: "invalid_path", message: /Invalid message id "abc"/ },
  },
  // ---- headers and paths
  {
    name: "an Idempotency-Key with a space",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { body: 1 },
    headers: { "idempotency-key": "two words" },
    status: 400,
    expect: { error: "invalid_header", message: /Idempotency-Key/ },
  },
  {
    name: "an Idempotency-Key over 255 characters",
    method: "POST",
    url: "/rooms/{room}/messages",
    body: { body: 1 },
    headers: { "idempotency-key": "k".repeat(256) },
    status: 400,
    expect: { error: "invalid_header", message: /Idempotency-Key/ },
  },
  {
    name: "a room id with a control character in the path",
    method: "POST",
    url: "/rooms/a%01b/messages",
    body: { body: 1 },
    status: 400,
    expect: { error: "invalid_path", message: /Invalid id/ },
  },
  {
    name: "a room id over the length limit in the path",
    method: "PUT",
    url: `/rooms/${LONG_ID}/state`,
    body: { key: "k", value: 1 },
    status: 400,
    expect: { error: "invalid_path", message: /at most 128 characters/ },
  },
  {
    name: "an agent id with a control character in the path",
    method: "PATCH",
    url: "/rooms/{room}/agents/a%0A1",
    body: { status: "busy" },
    status: 400,
    expect: { error: "invalid_path", message: /Invalid agent_id/ },
  },
];

const BAD_QUERY: [string, string, RegExp][] = [
  ["a negative limit", "/rooms/{room}/messages?limit=-1", /field "limit"/],
  ["a non-numeric limit", "/rooms/{room}/messages?limit=abc", /field "limit"/],
  ["a fractional limit", "/rooms/{room}/messages?limit=1.5", /field "limit"/],
  ["an empty limit", "/rooms/{room}/messages?limit=", /field "limit"/],
  ["a negative after", "/rooms/{room}/messages?after=-5", /field "after"/],
  ["a non-numeric after", "/rooms/{room}/messages?after=abc", /field "after"/],
  ["an after beyond 15 digits", "/rooms/{room}/messages?after=99999999999999999999", /"after"/],
  ["a non-numeric wait", "/rooms/{room}/messages?wait=soon", /field "wait"/],
  ["a negative wait", "/rooms/{room}/changes?wait=-1", /field "wait"/],
  ["an unclaimed that is not a boolean", "/rooms/{room}/messages?unclaimed=maybe", /unclaimed/],
  ["a kind holding a space", "/rooms/{room}/messages?kind=a%20b", /field "kind"/],
  ["a to holding a control character", "/rooms/{room}/messages?to=a%01", /field "to"/],
  ["a non-numeric thread", "/rooms/{room}/messages?thread=x", /field "thread"/],
  ["an unknown parameter", "/rooms/{room}/messages?since=3", /unknown field "since"/],
  ["a misspelt limit", "/rooms/{room}/messages?limti=5", /did you mean "limit"\?/],
  ["a misspelt key", "/rooms/{room}/state?keys=k", /did you mean "key"\?/],
  ["an empty key", "/rooms/{room}/state?key=", /field "key" must not be empty/],
  ["a state limit that is not a number", "/rooms/{room}/state?limit=all", /field "limit"/],
  ["a negative changes cursor", "/rooms/{room}/changes?after=-1", /field "after"/],
  ["an unknown changes parameter", "/rooms/{room}/changes?cursor=5", /unknown field "cursor"/],
  ["a parameter on the agent list", "/rooms/{room}/agents?role=lead", /unknown field "role"/],
  ["a non-numeric room list limit", "/rooms?limit=many", /field "limit"/],
];

for (const [name, url, message] of BAD_QUERY) {
  BAD_INPUT.push({
    name,
    method: "GET",
    url,
    status: 400,
    expect: { error: "invalid_query", message },
  });
}

for (const c of BAD_INPUT) {
  appTest(
    `${c.method} ${
      c.url.replace(/\?.*/, "")
    } with ${c.name} answers ${c.status} ${c.expect.error} and changes nothing`,
    async (app) => {
      const room = await fixture(app);
      const before = await snapshot(app);
      const res = await app.request(c.method, c.url.replaceAll("{room}", room.id), {
        token: room.token,
        body: c.body,
        raw: c.raw,
        headers: c.headers,
      });
      assertErrorShape(res, c.status, c.name);
      assert.equal(res.body.error, c.expect.error, res.text);
      if (c.expect.message) assert.match(res.body.message, c.expect.message);
      assert.equal(await snapshot(app), before, "nothing changed");
    },
  );
}

appTest("a field error lists the allowed fields and carries per-field details", async (app) => {
  const room = await fixture(app);
  const res = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: room.token,
    body: { content: "hello" },
  });
  assert.equal(res.status, 400);
  assert.match(res.body.message, /allowed: from, to, kind, body, reply_to/);
  assert.ok(Array.isArray(res.body.fields));
  const fields = res.body.fields.map((f: { field: string }) => f.field).sort();
  assert.deepEqual(fields, ["body", "content"]);
});

/** Sends `chunks` as a streamed body with no Content-Length, as chunked transfer does. */
function streamed(app: TestApp, url: string, chunks: Uint8Array[], token: string) {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  return app.service.fetch(
    new Request(`http://test${url}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body,
    }),
  );
}

appTest("a chunked body without Content-Length over the cap answers 413", async (app) => {
  const room = await fixture(app);
  const before = await snapshot(app);
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  const head = new TextEncoder().encode('{"body":"');
  const res = await streamed(
    app,
    `/rooms/${room.id}/messages`,
    [head, ...Array(5).fill(chunk)],
    room.token,
  );
  const body = await res.json();
  assert.equal(res.status, 413);
  assert.equal(body.error, "payload_too_large");
  assert.equal(body.status, 413);
  assert.equal(await snapshot(app), before);
});

appTest("a chunked body within the cap is accepted", async (app) => {
  const room = await fixture(app);
  const enc = new TextEncoder();
  const res = await streamed(
    app,
    `/rooms/${room.id}/messages`,
    [enc.encode('{"bo'), enc.encode('dy": "stream'), enc.encode('ed"}')],
    room.token,
  );
  assert.equal(res.status, 201);
  assert.equal((await res.json()).body, "streamed");
});

appTest("a body that is not UTF-8 answers 400 and changes nothing", async (app) => {
  const room = await fixture(app);
  const before = await snapshot(app);
  const bytes = new Uint8Array([
    0x7b,
    0x22,
    0x62,
    0x6f,
    0x64,
    0x79,
    0x22,
    0x3a,
    0x22,
    0xff,
    0xfe,
    0x22,
    0x7d,
  ]);
  const res = await streamed(app, `/rooms/${room.id}/messages`, [bytes], room.token);
  const body = await res.json();
  assert.equal(res.status, 400);
  assert.equal(body.error, "invalid_body");
  assert.match(body.message, /UTF-8/);
  assert.equal(await snapshot(app), before);
});

// ---------------------------------------------------------------- unknown things: 404

const NOT_FOUND: Case[] = [
  {
    name: "an unknown room",
    method: "GET",
    url: "/rooms/nope",
    status: 404,
    expect: { error: "not_found", message: /"nope"/ },
  },
  {
    name: "the messages of an unknown room",
    method: "GET",
    url: "/rooms/nope/messages",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "the changes of an unknown room",
    method: "GET",
    url: "/rooms/nope/changes",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "the agents of an unknown room",
    method: "GET",
    url: "/rooms/nope/agents",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "the state of an unknown room",
    method: "GET",
    url: "/rooms/nope/state",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "a message into an unknown room",
    method: "POST",
    url: "/rooms/nope/messages",
    body: { body: 1 },
    status: 404,
    expect: { error: "not_found", message: /"nope"/ },
  },
  {
    name: "an agent into an unknown room",
    method: "POST",
    url: "/rooms/nope/agents",
    body: { id: "a", name: "a" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "a state write into an unknown room",
    method: "PUT",
    url: "/rooms/nope/state",
    body: { key: "k", value: 1 },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "a conditional state write into an unknown room",
    method: "PUT",
    url: "/rooms/nope/state",
    body: { key: "k", value: 1, if_version: 0 },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "a batch into an unknown room",
    method: "PUT",
    url: "/rooms/nope/state/batch",
    body: { ops: [{ key: "k", value: 1 }] },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "a state delete in an unknown room",
    method: "DELETE",
    url: "/rooms/nope/state",
    body: { key: "k" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "deleting an unknown room",
    method: "DELETE",
    url: "/rooms/nope",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "an absent key",
    method: "GET",
    url: "/rooms/{room}/state?key=absent",
    status: 404,
    expect: { error: "not_found", message: /"absent"/ },
  },
  {
    name: "an absent key in another scope",
    method: "GET",
    url: "/rooms/{room}/state?scope=a1&key=k",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "deleting an absent key",
    method: "DELETE",
    url: "/rooms/{room}/state",
    body: { key: "absent" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "an unregistered agent",
    method: "GET",
    url: "/rooms/{room}/agents/ghost",
    status: 404,
    expect: { error: "not_found", message: /"ghost"/ },
  },
  {
    name: "patching an unregistered agent",
    method: "PATCH",
    url: "/rooms/{room}/agents/ghost",
    body: { status: "busy" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "an absent message",
    method: "GET",
    url: "/rooms/{room}/messages/999",
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "claiming an absent message",
    method: "POST",
    url: "/rooms/{room}/messages/999/claim",
    body: { agent: "a1" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "releasing an absent message",
    method: "DELETE",
    url: "/rooms/{room}/messages/999/claim",
    body: { agent: "a1" },
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "an unknown route",
    method: "GET",
    url: "/nowhere",
    status: 404,
    expect: { error: "not_found", message: /GET \/nowhere/ },
  },
  {
    name: "an unknown route under a room",
    method: "POST",
    url: "/rooms/{room}/nothing",
    body: {},
    status: 404,
    expect: { error: "not_found" },
  },
  {
    name: "an unsupported method on a route",
    method: "PUT",
    url: "/rooms/{room}/messages",
    body: { body: 1 },
    status: 405,
    expect: { error: "method_not_allowed" },
  },
];

for (const mode of ["token", "open"] as const) {
  for (const c of NOT_FOUND) {
    appTest(
      `${c.method} ${c.url.replace(/\?.*/, "")} for ${c.name} answers ${
        c.status ?? 404
      } and changes nothing (${mode} mode)`,
      async (app) => {
        const room = await fixture(app);
        const before = await snapshot(app);
        const res = await app.request(c.method, c.url.replaceAll("{room}", room.id), {
          token: room.token,
          body: c.body,
        });
        assertErrorShape(res, c.status ?? 404, c.name);
        assert.equal(res.body.error, c.expect.error);
        if (c.expect.message) assert.match(res.body.message, c.expect.message);
        assert.equal(await snapshot(app), before, "nothing changed");
      },
      mode === "open" ? { SYNC_AUTH: "open" } : {},
    );
  }
}

// ---------------------------------------------------------------- never a 500

const ODD_VALUES: unknown[] = [null, true, 0, -1, 1e308, "", "x", [], [null], {}, { a: {} }];
const WRITE_ROUTES: [string, string, string[]][] = [
  ["POST", "/rooms", ["id", "meta"]],
  ["POST", "/rooms/{room}/agents", ["id", "name", "role", "meta"]],
  ["PATCH", "/rooms/{room}/agents/a1", ["name", "status", "note", "meta"]],
  ["POST", "/rooms/{room}/messages", ["from", "to", "kind", "body", "reply_to"]],
  ["PUT", "/rooms/{room}/state", ["scope", "key", "value", "if_version", "ttl"]],
  ["DELETE", "/rooms/{room}/state", ["scope", "key", "if_version"]],
  ["POST", "/rooms/{room}/messages/2/claim", ["agent", "ttl"]],
];

appTest("no field of any write route answers 500 whatever JSON it holds", async (app) => {
  const room = await fixture(app);
  for (const [method, url, fields] of WRITE_ROUTES) {
    for (const field of fields) {
      for (const value of ODD_VALUES) {
        const res = await app.request(method, url.replaceAll("{room}", room.id), {
          token: room.token,
          body: { [field]: value },
        });
        assert.ok(
          res.status < 500,
          `${method} ${url} {${field}: ${JSON.stringify(value)}}: ${res.status} ${res.text}`,
        );
        if (res.status >= 400) assertErrorShape(res, res.status, `${method} ${url} ${field}`);
      }
    }
  }
}, { SYNC_AUTH: "open" });
