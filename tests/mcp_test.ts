// MCP: the official clients (v2 and v1) connect with a token and run the agent workflow.
import assert from "node:assert/strict";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "npm:@modelcontextprotocol/client@^2.4.0";
import { Client as ClientV1 } from "npm:@modelcontextprotocol/sdk@^1.32.2/client/index.js";
import { StreamableHTTPClientTransport as TransportV1 } from "npm:@modelcontextprotocol/sdk@^1.32.2/client/streamableHttp.js";
import { makeApp, type TestApp } from "./helpers.ts";

/** The protocol versions clients sent, by the MCP-Protocol-Version header. */
const versions = new Set<string>();

interface ToolResult {
  isError?: boolean;
  // deno-lint-ignore no-explicit-any
  structuredContent?: any;
  content?: unknown;
}
interface McpClient {
  listTools(): Promise<{ tools: { name: string; annotations?: { readOnlyHint?: boolean } }[] }>;
  callTool(p: { name: string; arguments?: Record<string, unknown> }): Promise<ToolResult>;
  close(): Promise<void>;
}

/** Connects an official MCP client (v2 or v1) to the app in process, with a bearer token. */
async function connect(
  app: TestApp,
  version: "v1" | "v2",
  token: string | null,
  path = "/mcp",
  modern = false,
): Promise<McpClient> {
  const init = token ? { headers: { authorization: `Bearer ${token}` } } : {};
  const fetch = (url: string | URL, opts?: RequestInit) => {
    const req = new Request(url, opts);
    const v = req.headers.get("mcp-protocol-version");
    if (v) versions.add(v);
    return Promise.resolve(app.service.fetch(req));
  };
  const url = new URL(`http://test${path}`);
  if (version === "v2") {
    const client = new ClientV2(
      { name: "test", version: "1.0.0" },
      modern ? { versionNegotiation: { mode: "auto" } } : {},
    );
    await client.connect(new TransportV2(url, { requestInit: init, fetch }));
    return client as unknown as McpClient;
  }
  const client = new ClientV1({ name: "test", version: "1.0.0" });
  await client.connect(new TransportV1(url, { requestInit: init, fetch }));
  return client as unknown as McpClient;
}

async function setup(app: TestApp) {
  const room = await app.room();
  const lead = await app.agent(room, "lead");
  const worker = await app.agent(room, "worker");
  return { room, lead, worker };
}

for (const version of ["v2", "v1"] as const) {
  Deno.test(`MCP ${version}: an agent token lists the tools and runs the workflow`, async () => {
    await using t = await makeApp("embedded");
    const { room, lead, worker } = await setup(t.app);
    const client = await connect(t.app, version, worker.token);
    try {
      const names = (await client.listTools()).tools.map((x) => x.name);
      for (
        const n of [
          "post_message",
          "read_inbox",
          "list_messages",
          "claim_message",
          "release_message",
          "get_state",
          "put_state",
          "delete_state",
          "batch_state",
          "list_changes",
          "list_agents",
          "set_status",
        ]
      ) assert.ok(names.includes(n), `${n} missing from ${names}`);
      // The lead posts a task over REST; the worker sees it in its inbox, claims it, replies.
      const task = await t.app.request("POST", `/rooms/${room.id}/messages`, {
        token: lead.token,
        body: { kind: "task", body: { title: "parse" } },
      });
      const inbox = await client.callTool({ name: "read_inbox", arguments: { after: 0 } });
      assert.equal(inbox.isError, undefined);
      assert.equal(inbox.structuredContent.items[0].id, task.body.id);
      const claim = await client.callTool({
        name: "claim_message",
        arguments: { msg_id: task.body.id, ttl: 60 },
      });
      assert.equal(claim.structuredContent.claim.agent, "worker");
      const again = await client.callTool({
        name: "claim_message",
        arguments: { msg_id: task.body.id },
      });
      assert.equal(again.isError, undefined, "claiming one's own claim again renews it");
      const reply = await client.callTool({
        name: "post_message",
        arguments: { kind: "result", body: { ok: true }, reply_to: task.body.id },
      });
      assert.equal(reply.structuredContent.from_agent, "worker", "the token decides who posts");
      const status = await client.callTool({
        name: "set_status",
        arguments: { status: "busy", note: "parsing" },
      });
      assert.equal(status.structuredContent.status, "busy");
      assert.equal(status.structuredContent.id, "worker");
      const agents = await t.app.request("GET", `/rooms/${room.id}/agents/worker`, {
        token: lead.token,
      });
      assert.equal(agents.body.note, "parsing");
    } finally {
      await client.close();
    }
  });

  Deno.test(`MCP ${version}: a stale if_version is a tool error with the REST 409`, async () => {
    await using t = await makeApp("embedded");
    const { worker } = await setup(t.app);
    const client = await connect(t.app, version, worker.token);
    try {
      const put = await client.callTool({
        name: "put_state",
        arguments: { key: "plan", value: { step: 1 }, if_version: 0 },
      });
      assert.equal(put.structuredContent.version, 1);
      const stale = await client.callTool({
        name: "put_state",
        arguments: { key: "plan", value: { step: 2 }, if_version: 0 },
      });
      assert.equal(stale.isError, true);
      assert.equal(stale.structuredContent.error, "version_conflict");
      assert.equal(stale.structuredContent.current.version, 1);
      const read = await client.callTool({ name: "get_state", arguments: { key: "plan" } });
      assert.deepEqual(read.structuredContent.value, { step: 1 });
      const hint = await client.callTool({
        name: "post_message",
        arguments: { content: "hello" },
      });
      assert.equal(hint.isError, true);
      assert.match(JSON.stringify(hint.content), /did you mean \\"body\\"/);
    } finally {
      await client.close();
    }
  });

  Deno.test(`MCP ${version}: a view token gets read-only tools`, async () => {
    await using t = await makeApp("embedded");
    const { room } = await setup(t.app);
    const client = await connect(t.app, version, room.view_token);
    try {
      const tools = (await client.listTools()).tools;
      assert.ok(tools.length > 3);
      assert.ok(tools.every((x) => x.annotations?.readOnlyHint === true), "a write tool is listed");
      assert.ok(!tools.some((x) => x.name === "put_state"));
      const refused = await client.callTool({
        name: "put_state",
        arguments: { key: "k", value: 1 },
      }).catch((err) => ({ isError: true, content: String(err) }));
      assert.equal(refused.isError, true);
      const list = await t.app.request("GET", `/rooms/${room.id}/state`, { token: room.token });
      assert.deepEqual(list.body, [], "nothing was written");
    } finally {
      await client.close();
    }
  });
}

Deno.test("MCP v2 on the 2026-07-28 stateless revision posts and reads back", async () => {
  await using t = await makeApp("embedded");
  const { worker } = await setup(t.app);
  versions.clear();
  const client = await connect(t.app, "v2", worker.token, "/mcp", true);
  try {
    assert.ok(versions.has("2026-07-28"), `negotiated ${[...versions]}`);
    const posted = await client.callTool({ name: "post_message", arguments: { body: "modern" } });
    assert.equal(posted.isError, undefined, JSON.stringify(posted.content));
    const list = await client.callTool({ name: "list_messages", arguments: { after: 0 } });
    assert.deepEqual(list.structuredContent.items.map((m: { body: string }) => m.body), [
      "modern",
    ]);
  } finally {
    await client.close();
  }
});

Deno.test("MCP: a held read_inbox wakes when a message arrives", async () => {
  await using t = await makeApp("embedded");
  const { room, lead, worker } = await setup(t.app);
  const client = await connect(t.app, "v2", worker.token);
  try {
    const waiting = client.callTool({ name: "read_inbox", arguments: { after: 0, wait: 10 } });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await t.app.request("POST", `/rooms/${room.id}/messages`, {
      token: lead.token,
      body: { to: "worker", body: "wake up" },
    });
    const got = await waiting;
    assert.equal(got.structuredContent.items[0].body, "wake up");
    assert.ok(Date.now() - started < 5000, "answered at the wait's end, not on the write");
  } finally {
    await client.close();
  }
});

Deno.test("MCP: no token, a bad token or a token of no room is refused with 401/404", async () => {
  await using t = await makeApp("embedded");
  await setup(t.app);
  const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
  const headers = { "content-type": "application/json", accept: "application/json" };
  const none = await t.app.request("POST", "/mcp", { raw: body, headers });
  assert.equal(none.status, 401);
  const unknown = await t.app.request("POST", "/mcp", {
    raw: body,
    headers,
    token: `as_agent_${"x".repeat(43)}`,
  });
  assert.equal(unknown.status, 404);
});

Deno.test("MCP: a client that accepts only application/json (curl) gets JSON", async () => {
  await using t = await makeApp("embedded");
  const { worker } = await setup(t.app);
  const res = await t.app.request("POST", "/mcp", {
    token: worker.token,
    headers: { accept: "application/json" },
    body: {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-11-25",
        capabilities: {},
        clientInfo: { name: "curl", version: "1" },
      },
    },
  });
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  assert.equal(res.body.result.serverInfo.name, "agent-sync");
});

Deno.test("MCP: open mode names the agent in the URL", async () => {
  await using t = await makeApp("embedded", { SYNC_AUTH: "open" });
  const room = await t.app.room();
  await t.app.agent(room, "w1");
  const client = await connect(t.app, "v2", null, `/rooms/${room.id}/mcp?agent=w1`);
  try {
    const posted = await client.callTool({ name: "post_message", arguments: { body: "hi" } });
    assert.equal(posted.structuredContent.from_agent, "w1");
    const task = await client.callTool({
      name: "post_message",
      arguments: { kind: "task", body: "t" },
    });
    const claim = await client.callTool({
      name: "claim_message",
      arguments: { msg_id: task.structuredContent.id },
    });
    assert.equal(claim.structuredContent.claim.agent, "w1");
  } finally {
    await client.close();
  }
});

Deno.test("no route but /mcp loads the MCP SDK", async () => {
  const main = await Deno.readTextFile(new URL("../main.ts", import.meta.url));
  assert.doesNotMatch(main, /^import .*modelcontextprotocol/m);
  assert.doesNotMatch(main, /^import .*"\.\/mcp\.ts"/m);
});
