// The OpenAPI 3.1 document, generated from the operation definitions so that it cannot drift.
import { z } from "npm:zod@^4.6.7";
import type { Config } from "./config.ts";
import "./models.ts"; // registers the answer schemas, by id, for components
import type { Operation } from "./operation.ts";

const uri = (id: string) => `#/components/schemas/${id}`;
type Json = Record<string, unknown>;

function clean(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

/**
 * A schema as JSON Schema; the named answer shapes it uses become references to the document's
 * components (they are converted once there, from the registry).
 */
export function jsonSchema(schema: z.ZodType, io: "input" | "output"): Json {
  const { $defs: _defs, ...rest } = clean(
    z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Json,
  );
  return portable(
    JSON.parse(JSON.stringify(rest).replaceAll('"#/$defs/', '"#/components/schemas/')),
  );
}

/**
 * Unicode property escapes (`\p{L}`) need the `u` flag, which JSON Schema validators do not all
 * set: such a pattern becomes a sentence in the description instead.
 */
function portable(schema: Json): Json {
  if (typeof schema.pattern === "string" && schema.pattern.includes("\\p{")) {
    const { pattern: _p, ...rest } = schema;
    schema = {
      ...rest,
      description: [rest.description, "Letters, digits and . _ : @ ~ + - only"]
        .filter(Boolean).join(". "),
    };
  }
  for (const [k, v] of Object.entries(schema)) {
    if (Array.isArray(v)) {
      schema[k] = v.map((x) => typeof x === "object" && x !== null ? portable(x as Json) : x);
    } else if (typeof v === "object" && v !== null) schema[k] = portable(v as Json);
  }
  return schema;
}

const ERROR_TEXT: Record<number, string> = {
  400: "Bad input: the message names the field and what to send instead",
  401: "Missing or malformed token",
  403: "The token may not do this (a view token writing, an agent acting as another)",
  404: "No such room for this token, or no such item in it",
  405: "The path exists but not with this method",
  409: "A conflict: a lost compare-and-set, a claim held by another, a full room",
  410: "The cursor was passed by retention",
  413: "The body or a value is too large",
  415: "The body is not JSON",
  422: "The Idempotency-Key was used with a different body",
  429: "Too many requests or held waits: retry after `Retry-After` seconds",
};

/** The path in OpenAPI's syntax: `/rooms/{id}` for Hono's `/rooms/:id`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)/g, "{$1}");
}

/**
 * A path or query parameter's schema as its value means it: an integer, a number or a boolean
 * rather than the string pattern the server parses it from. The MCP tools take it so, and the
 * typed client sends numbers (`after: 5`), which the query string carries as text.
 */
export function parameterSchema(schema: z.ZodType): Json {
  const s = jsonSchema(schema, "input");
  const { pattern, enum: values, type: _t, ...rest } = s;
  if (pattern === "^\\d{1,15}$") return { ...rest, type: "integer", minimum: 0 };
  if (pattern === "^\\d+(\\.\\d+)?$") return { ...rest, type: "number", minimum: 0 };
  if (Array.isArray(values) && values.includes("true")) return { ...rest, type: "boolean" };
  return s;
}

function parameters(op: Operation): Json[] {
  const out: Json[] = [];
  const add = (where: "path" | "query", shape: Record<string, z.ZodType>) => {
    for (const [name, schema] of Object.entries(shape)) {
      const { description, ...rest } = parameterSchema(schema);
      out.push({
        name,
        in: where,
        required: where === "path" || !schema.safeParse(undefined).success,
        ...(description ? { description } : {}),
        schema: rest,
      });
    }
  };
  if (op.params) add("path", op.params.shape);
  if (op.query) add("query", op.query.shape);
  if (op.bodyFromQuery) {
    const have = new Set(out.map((p) => p.name));
    for (const [name, schema] of Object.entries(op.bodyFromQuery.shape)) {
      if (have.has(name)) continue;
      out.push({
        name,
        in: "query",
        required: false,
        description: "When the request has no body, the body's fields may be given in the query",
        schema: parameterSchema(schema as z.ZodType),
      });
    }
  }
  return out;
}

/** The OpenAPI 3.1 document for `operations` as this server is configured. */
export function openApiDocument(operations: Operation[], config: Config): Json {
  const open = config.auth === "open";
  const paths: Record<string, Json> = {};
  const used = new Set<number>();
  const tags = new Map<string, string>();
  for (const op of operations) {
    const tag = op.path.startsWith("/rooms/:id/")
      ? op.path.split("/")[3]
      : op.path.startsWith("/rooms")
      ? "rooms"
      : "service";
    tags.set(tag, TAGS[tag] ?? tag);
    const responses: Record<string, Json> = {};
    for (const [status, a] of Object.entries(op.answers)) {
      responses[status] = {
        description: a.description,
        content: a.schema
          ? {
            "application/json": { schema: jsonSchema(a.schema, "output") },
            ...(a.stream ? { "text/event-stream": { schema: { type: "string" } } } : {}),
          }
          : { [a.contentType ?? "text/plain"]: { schema: { type: "string" } } },
      };
    }
    const hasInput = op.params || op.query || op.body || op.bodyFromQuery;
    const errors = new Set([...(hasInput ? [400] : []), ...op.errors, 429]);
    if (op.body) errors.add(413).add(415);
    if (op.method !== "GET") errors.add(422);
    for (const status of [...errors].sort()) {
      used.add(status);
      responses[String(status)] = { $ref: `#/components/responses/E${status}` };
    }
    const entry: Json = {
      operationId: op.name,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [tag],
      security: op.who === "public" || open
        ? []
        : op.who === "custom"
        ? [{}, { bearer: [] }]
        : [{ bearer: [] }],
      parameters: parameters(op),
      responses,
    };
    if ((entry.parameters as Json[]).length === 0) delete entry.parameters;
    if (op.body) {
      entry.requestBody = {
        required: !op.bodyOptional && !op.bodyFromQuery,
        content: {
          "application/json": {
            schema: jsonSchema(op.body, "input"),
            ...(op.example !== undefined ? { example: op.example } : {}),
          },
        },
      };
    }
    const p = openApiPath(op.path);
    paths[p] = { ...paths[p], [op.method.toLowerCase()]: entry };
  }
  const schemas = (z.toJSONSchema(z.globalRegistry, {
    io: "output",
    unrepresentable: "any",
    uri,
  }) as { schemas: Record<string, Json> }).schemas;
  const responses: Record<string, Json> = {};
  for (const [status, text] of Object.entries(ERROR_TEXT)) {
    if (!used.has(Number(status))) continue;
    responses[`E${status}`] = {
      description: text,
      content: { "application/json": { schema: { $ref: uri("Error") } } },
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "agent-sync",
      version: "1.0.0",
      summary: "A coordination layer for AI agents: rooms, messages, claims and versioned state",
      description:
        "Every write takes the room's next revision. Errors share one shape: `{ error, message, status }` plus details. Writes accept an `Idempotency-Key` header; a retry replays the first answer with `Idempotent-Replayed: true`. The skill document at `/SKILL.md` teaches the workflow.",
    },
    servers: [{ url: "/", description: "This server" }],
    tags: [...tags].map(([name, description]) => ({ name, description })),
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(schemas).map(([k, v]) => [k, clean(v)])),
      responses,
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description:
            "A room token (`as_room_…`), view token (`as_view_…`), agent token (`as_agent_…`) or the admin token",
        },
      },
    },
  };
}

const TAGS: Record<string, string> = {
  service: "The service itself: health, documents, dashboard",
  rooms: "Rooms: isolated spaces for one group of agents",
  agents: "Who is in a room",
  messages: "The room's append-only log, tasks and claims",
  state: "Versioned key-value state with compare-and-set",
  changes: "One change feed per room",
};
