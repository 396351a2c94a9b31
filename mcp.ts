// MCP over Streamable HTTP (stateless): each tool is derived from an operation and runs it
// through the REST app in process, so validation, limits and error hints are the REST ones.
// Imported lazily by the /mcp routes: no other route pays for the MCP SDK's load.
import {
  createMcpHandler,
  fromJsonSchema,
  type McpHttpHandler,
  McpServer,
} from "npm:@modelcontextprotocol/server@^2.4.0";
import type { z } from "npm:zod@^4.6.7";
import { jsonSchema, parameterSchema } from "./openapi.ts";
import type { Operation } from "./operation.ts";

/** Who an MCP request acts as: the room and agent its token (or open-mode URL) names. */
export interface Binding {
  roomId: string;
  /** The agent the session acts as; null for the room token (the owner, `human`) or a view token. */
  agentId: string | null;
  readOnly: boolean;
  /** The Authorization header to pass on to the REST routes, if any. */
  authorization: string | null;
  /** Runs a REST request through the app, as this client. */
  fetch: (req: Request) => Promise<Response>;
}

type Json = Record<string, unknown>;

interface Tool {
  name: string;
  description: string;
  op: Operation;
  readOnly: boolean;
  /** The JSON Schema of the tool's arguments: path, query and body fields in one object. */
  input: (binding: Binding) => Json;
  /** Arguments fixed by the session, e.g. `to` for the inbox. */
  fixed?: (binding: Binding) => Json;
}

/** The operations agents use, as tools; the rest (rooms, documents) stay REST-only. */
const TOOL_OPS: Record<string, { tool: string; hint?: string }> = {
  getRoom: { tool: "get_room" },
  listAgents: { tool: "list_agents" },
  getAgent: { tool: "get_agent" },
  registerAgent: { tool: "register_agent", hint: "Needs the room token." },
  updateAgent: {
    tool: "set_status",
    hint: "Omit agent_id to update yourself; `status` (e.g. busy, idle) and a short `note`.",
  },
  postMessage: { tool: "post_message" },
  listMessages: { tool: "list_messages" },
  getMessage: { tool: "get_message" },
  claimMessage: { tool: "claim_message" },
  releaseMessage: { tool: "release_message" },
  getState: { tool: "get_state" },
  putState: { tool: "put_state" },
  deleteState: { tool: "delete_state" },
  batchState: { tool: "batch_state" },
  listChanges: { tool: "list_changes" },
  getDigest: { tool: "get_digest" },
};

function shapeOf(schema: unknown): Record<string, z.ZodType> {
  return (schema as { shape?: Record<string, z.ZodType> } | undefined)?.shape ?? {};
}

function toolFor(op: Operation, name: string, hint?: string): Tool {
  const readOnly = op.method === "GET";
  const params = Object.keys(shapeOf(op.params)).filter((p) => p !== "id");
  const query = shapeOf(op.query);
  const body = shapeOf(op.body);
  return {
    name,
    op,
    readOnly,
    description: [op.summary, op.description, hint].filter(Boolean).join(". "),
    input: (binding) => {
      const properties: Record<string, Json> = {};
      const required: string[] = [];
      for (const p of params) {
        const self = p === "agent_id" && binding.agentId !== null;
        properties[p] = {
          ...parameterSchema(op.params.shape[p]),
          ...(self ? { description: "Defaults to you" } : {}),
        };
        if (!self) required.push(p);
      }
      for (const [k, s] of Object.entries(query)) {
        properties[k] = parameterSchema(s);
        if (!s.safeParse(undefined).success) required.push(k);
      }
      for (const [k, s] of Object.entries(body)) {
        properties[k] = jsonSchema(s, "input");
        if (!s.safeParse(undefined).success && !op.bodyOptional) required.push(k);
      }
      return { type: "object", properties, ...(required.length ? { required } : {}) };
    },
  };
}

/** Every tool, derived from the operations once. */
export function tools(operations: Operation[]): Tool[] {
  const out: Tool[] = [];
  for (const op of operations) {
    const t = TOOL_OPS[op.name];
    if (!t) continue;
    out.push(toolFor(op, t.tool, t.hint));
    if (op.name === "listMessages") {
      const inbox = toolFor(
        op,
        "read_inbox",
        "Messages to you or to everyone; pass the last id you saw as `after`, and `wait` (seconds) to block until one arrives",
      );
      inbox.fixed = (b) => (b.agentId ? { to: b.agentId } : {});
      const input = inbox.input;
      inbox.input = (b) => {
        const s = input(b);
        delete (s.properties as Json).to;
        return s;
      };
      out.push(inbox);
    }
  }
  return out;
}

/** Runs one tool call as the REST request its operation defines. */
async function call(tool: Tool, binding: Binding, args: Json) {
  const op = tool.op;
  const all: Json = { ...args, ...tool.fixed?.(binding) };
  let path = op.path.replace(":id", encodeURIComponent(binding.roomId));
  for (const p of Object.keys(shapeOf(op.params))) {
    if (p === "id") continue;
    const value = all[p] ?? (p === "agent_id" ? binding.agentId : undefined);
    delete all[p];
    path = path.replace(`:${p}`, encodeURIComponent(String(value ?? "")));
  }
  const search = new URLSearchParams();
  for (const k of Object.keys(shapeOf(op.query))) {
    if (all[k] !== undefined) search.set(k, String(all[k]));
    delete all[k];
  }
  // The room token acts as the room's owner, a human.
  if (op.name === "postMessage" && binding.agentId === null && all.from === undefined) {
    all.from = "human";
  }
  // In open mode the session's agent is named in the body (`from`, `agent`), as the REST
  // routes expect; with a token the token already says who acts.
  if (binding.agentId !== null && binding.authorization === null) {
    for (const field of ["from", "agent"]) {
      if (field in shapeOf(op.body) && all[field] === undefined) all[field] = binding.agentId;
    }
  }
  const headers: Record<string, string> = {};
  if (binding.authorization) headers.authorization = binding.authorization;
  let body: string | undefined;
  if (op.body && (Object.keys(all).length > 0 || !op.bodyOptional)) {
    body = JSON.stringify(all);
    headers["content-type"] = "application/json";
  }
  const qs = search.size ? `?${search}` : "";
  const res = await binding.fetch(
    new Request(`http://mcp.internal${path}${qs}`, { method: op.method, headers, body }),
  );
  const text = await res.text();
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch { /* not JSON */ }
  const structured = (Array.isArray(value) ? { items: value } : value) as Json;
  if (!res.ok) {
    const message = (value as { message?: string })?.message ?? text;
    return {
      content: [{ type: "text" as const, text: `${res.status}: ${message}` }],
      structuredContent: structured,
      isError: true,
    };
  }
  return {
    content: [{ type: "text" as const, text: JSON.stringify(value) }],
    structuredContent: structured,
  };
}

/** A validator that lets every argument through to the REST route's own validation. */
const PASS: Parameters<typeof fromJsonSchema>[1] = {
  getValidator: () => (input: unknown) => ({
    valid: true as const,
    data: input as never,
    errorMessage: undefined,
  }),
};

/** The JSON-RPC answer inside a short SSE exchange, for a client that accepts only JSON. */
async function sseToJson(res: Response): Promise<Response> {
  const text = await res.text();
  const messages = text.split(/\r?\n\r?\n/).map((event) =>
    event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart())
      .join("\n")
  ).filter(Boolean);
  const headers = new Headers(res.headers);
  headers.set("content-type", "application/json");
  return new Response(messages.at(-1) ?? "", { status: res.status, headers });
}

let handler: McpHttpHandler | undefined;
let toolList: Tool[] | undefined;

/** Serves one MCP request for a caller bound to a room (and maybe an agent). */
export async function serveMcp(req: Request, binding: Binding, operations: Operation[]) {
  toolList ??= tools(operations);
  const list = toolList;
  handler ??= createMcpHandler(({ authInfo }) => {
    const b = authInfo?.extra?.binding as Binding;
    const server = new McpServer({ name: "agent-sync", version: "1.0.0" }, {
      instructions: `You are in agent-sync room "${b.roomId}"${
        b.agentId ? ` as agent "${b.agentId}"` : ""
      }. Read your inbox with read_inbox (after = the last id you saw, wait = seconds to block), claim a task with claim_message before working on it, reply with post_message (kind "result", reply_to the task), and keep shared state with put_state (if_version for compare-and-set; a 409 means re-read and retry).`,
    });
    for (const tool of list) {
      if (b.readOnly && !tool.readOnly) continue;
      if (tool.name === "read_inbox" && b.agentId === null) continue;
      // Registering others needs the room token; an agent's session has no use for it.
      if (tool.name === "register_agent" && b.agentId !== null) continue;
      server.registerTool(
        tool.name,
        {
          description: tool.description,
          // The REST route validates, with its hints; the schema tells the model what to send.
          inputSchema: fromJsonSchema(tool.input(b), PASS),
          annotations: { readOnlyHint: tool.readOnly },
        },
        (args: unknown) => call(tool, b, (args ?? {}) as Json),
      );
    }
    return server;
  }, { responseMode: "json" });
  // curl and simple clients may accept only JSON: answers are JSON here in any case.
  const jsonOnly = !(req.headers.get("accept") ?? "").includes("text/event-stream");
  if (jsonOnly) {
    const headers = new Headers(req.headers);
    headers.set("accept", "application/json, text/event-stream");
    req = new Request(req, { headers });
  }
  const res = await handler.fetch(req, {
    authInfo: { token: "", clientId: binding.agentId ?? "human", scopes: [], extra: { binding } },
  });
  const sse = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
  return jsonOnly && sse ? await sseToJson(res) : res;
}
