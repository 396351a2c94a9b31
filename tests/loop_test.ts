// The README's typical agent loop, in-process, in token mode and in open mode.
import assert from "node:assert/strict";
import { appTest } from "./helpers.ts";

appTest("the typical agent loop works with tokens", async (app) => {
  const room = await app.room({ meta: { project: "demo" } });
  assert.match(room.token, /^as_room_/);
  assert.match(room.view_token, /^as_view_/);
  const planner = await app.agent(room, "planner", { role: "lead", meta: { n: 1 } });
  assert.match(planner.token, /^as_agent_/);

  const empty = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
    token: planner.token,
  });
  assert.equal(empty.status, 200);
  assert.deepEqual(empty.body, []);

  const sent = await app.request("POST", `/rooms/${room.id}/messages`, {
    token: planner.token,
    body: { kind: "task", body: { step: 1 } },
  });
  assert.equal(sent.status, 201);
  assert.equal(sent.body.from_agent, "planner");
  assert.deepEqual(sent.body.body, { step: 1 });

  const put = await app.request("PUT", `/rooms/${room.id}/state`, {
    token: planner.token,
    body: { key: "plan", value: [1, "two"] },
  });
  assert.equal(put.status, 200);
  assert.equal(put.body.version, 1);
  assert.equal(put.body.scope, "_shared");

  const polled = await app.request("GET", `/rooms/${room.id}/messages?after=0`, {
    token: room.view_token,
  });
  assert.equal(polled.body.length, 1);
  assert.equal(polled.body[0].id, sent.body.id);

  const changes = await app.request("GET", `/rooms/${room.id}/changes?after=0`, {
    token: room.token,
  });
  assert.deepEqual(changes.body.changes.map((ch: { type: string }) => ch.type), [
    "agent",
    "message",
    "state",
  ]);
  assert.equal(changes.body.next, put.body.rev);
});

appTest("the typical agent loop works in open mode", async (app) => {
  const room = await app.room();
  assert.equal(room.token, undefined);
  await app.agent(room, "coder");
  const sent = await app.request("POST", `/rooms/${room.id}/messages`, {
    body: { from: "coder", body: "hi" },
  });
  assert.equal(sent.status, 201);
  const rooms = await app.request("GET", "/rooms");
  assert.deepEqual(rooms.body.map((r: { id: string }) => r.id), [room.id]);
}, { SYNC_AUTH: "open" });
