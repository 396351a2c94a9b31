// The agent-sync HTTP API: one Hono app composed of the resource modules in routes/; `deno task start` serves it, Val Town imports it.
import { type Context, Hono } from "npm:hono@^4.13.19";
import { z } from "npm:zod@^4.6.7";
import { roomOfPath, tokenHash, tokenKind } from "./auth.ts";
import { type Config, loadConfig } from "./config.ts";
import { type Access, Api, BEARER, type Env } from "./context.ts";
import { dashboardPage, landingPage } from "./dashboard.ts";
import { type Db, openDb } from "./db.ts";
import type { Waiters } from "./feed.ts";
import { checkWriteBody, errorBody, HttpError, readText, storageError } from "./http.ts";
import { idempotency } from "./idempotency.ts";
import { clientAddress, describeClientAddress } from "./limits.ts";
import { HealthSchema } from "./models.ts";
import { openApiDocument } from "./openapi.ts";
import { corsHeaders, preflight, publicOrigin } from "./origins.ts";
import { checkError, mount, type Operation, operation } from "./operation.ts";
import { agentOperations } from "./routes/agents.ts";
import { changeOperations } from "./routes/changes.ts";
import { messageOperations } from "./routes/messages.ts";
import { roomOperations } from "./routes/rooms.ts";
import { stateOperations } from "./routes/state.ts";
import * as q from "./schema.ts";
import { serve } from "./serve.ts";
import { skillFor } from "./skill.ts";

const WRITES = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export interface Service {
  app: Hono<Env>;
  fetch: (req: Request, info?: unknown) => Response | Promise<Response>;
  db: () => Promise<Db>;
  waiters: Waiters;
  /** Every operation the app serves, in the order of the reference. */
  operations: Operation[];
  /** Applies retention and expiry now (it also runs by itself at most once a minute). */
  sweep: () => Promise<void>;
  close: () => Promise<void>;
}

/** Builds the service for a configuration; the module's default export serves the environment's. */
export function createService(config: Config = loadConfig()): Service {
  let dbPromise: Promise<Db> | undefined;
  const db = () =>
    dbPromise ??= openDb(config.db).then(async (d) => {
      await q.migrate(d);
      return d;
    }).catch((err) => {
      dbPromise = undefined; // the next request tries again
      throw err;
    });
  const api = new Api(config, db);
  let lastSweep = Date.now();

  async function sweep() {
    lastSweep = Date.now();
    const d = await db();
    const day = 86400_000;
    if (config.roomTtlDays > 0) {
      await q.expireIdleRooms(d, new Date(Date.now() - config.roomTtlDays * day).toISOString());
    }
    if (config.messageTtlDays > 0) {
      const before = new Date(Date.now() - config.messageTtlDays * day).toISOString();
      for (const roomId of await q.roomsWithMessagesBefore(d, before)) {
        await q.trimMessages(d, roomId, config.maxMessages, before);
      }
    }
    await q.expireIdempotencyKeys(
      d,
      new Date(Date.now() - config.idempotencyHours * 3600_000).toISOString(),
    );
  }

  const app = new Hono<Env>();

  app.use("*", async (c, next) => {
    const forwarded = c.req.header("x-forwarded-for");
    const ip = clientAddress(forwarded, config.trustProxy, c.env?.remoteAddr?.hostname);
    // A well-formed token is its own client; anything else counts against the address.
    const token = BEARER.exec(c.req.header("authorization") ?? "")?.[1];
    const client = token && (tokenKind(token) || api.isAdmin(token)) ? `t:${token}` : `ip:${ip}`;
    c.set("client", client);
    c.set("ip", ip);
    const origin = c.req.header("origin");
    const cors = corsHeaders(origin, config.corsOrigins);
    // A token spends its own budget only on a room it authenticated on. Until then each request
    // spends one of its address's failures, given back when the token authenticates, so
    // inventing tokens (or reusing one that only ever opened /health) gains nothing.
    const roomId = roomOfPath(c.req.path);
    const proven = !client.startsWith("t:") || api.isAdmin(token!) ||
      roomId !== null && api.authenticated.has(token!, roomId);
    const unproven = api.limits !== null && !proven && roomId !== null;
    if (api.limits) {
      const r = await api.limits.request(proven || unproven ? client : `ip:${ip}`, ip, unproven);
      if (!r.ok) {
        throw new HttpError(
          429,
          "rate_limited",
          `Too many requests: retry after ${r.retryAfter} s`,
          { retry_after: r.retryAfter },
          {
            "Retry-After": String(r.retryAfter),
            "RateLimit-Policy": `${config.rateBurst};w=${
              Math.ceil(config.rateBurst / (config.rateLimit! / 60))
            }`,
            "RateLimit": `limit=${config.rateBurst}, remaining=0, reset=${r.retryAfter}`,
            ...cors,
          },
        );
      }
    }
    if (origin && c.req.method === "OPTIONS") return preflight(origin, cors);
    if (WRITES.has(c.req.method)) {
      await checkWriteBody(c.req.raw, config.maxBodyBytes, config.bodyTimeoutMs).catch((err) => {
        if (err instanceof HttpError) Object.assign(err.headers, cors);
        throw err;
      });
    }
    c.set("db", await db());
    await next();
    // Every route under /rooms/:id authenticates before it can answer below 400.
    if (!proven && roomId !== null && c.res.status < 400) {
      api.authenticated.add(token!, roomId);
      if (unproven) api.limits!.proved(ip);
    }
    for (const [name, value] of Object.entries(cors)) {
      if (name === "Vary") c.res.headers.append(name, value);
      else c.res.headers.set(name, value);
    }
    if (Date.now() - lastSweep > 60_000) sweep().catch((err) => console.error("sweep:", err));
  });

  app.use("*", idempotency(config));

  app.onError((err, c) => {
    const known = err instanceof HttpError ? err : storageError(err);
    if (known) {
      const body = errorBody(known);
      if (config.checkResponses) checkError(body);
      return c.json(body, known.status, known.headers);
    }
    console.error(err);
    return c.json({
      error: "internal_error",
      message: "Internal error: this is a bug in agent-sync, please report it",
      status: 500,
    }, 500);
  });

  app.notFound((c) => {
    const allowed = allowedMethods(c.req.path);
    if (allowed.length > 0) {
      return c.json(
        {
          error: "method_not_allowed",
          message: `Cannot ${c.req.method} ${c.req.path}: use ${allowed.join(" or ")}`,
          status: 405,
        },
        405,
        { Allow: allowed.join(", ") },
      );
    }
    return c.json({
      error: "not_found",
      message: `Cannot ${c.req.method} ${c.req.path}: no such route (see GET /SKILL.md)`,
      status: 404,
    }, 404);
  });

  /** The methods the app answers on a path, for a 405 that says what to use instead. */
  function allowedMethods(path: string): string[] {
    return [
      ...new Set(
        app.routes.filter((r) =>
          r.method !== "ALL" &&
          new RegExp(`^${r.path.replace(/:[^/]+/g, "[^/]+")}$`).test(path)
        ).map((r) => r.method),
      ),
    ];
  }

  const skill = (c: Context<Env>) => {
    const { base, headers } = publicOrigin(c, config);
    const doc = skillFor(new URL(c.req.url), config, { routes: operations, base });
    return c.body(doc, 200, { "Content-Type": "text/markdown; charset=utf-8", ...headers });
  };
  const markdown = { description: "SKILL.md", contentType: "text/markdown" };
  const pages = [
    operation({
      name: "home",
      method: "GET",
      path: "/",
      summary: "The skill document; in a browser the landing page, or with `?room=` the dashboard",
      who: "public",
      query: z.object({ room: z.string().optional() }),
      answers: { 200: { description: "SKILL.md, or an HTML page", contentType: "text/html" } },
      errors: [],
      handler: (c, { query: { room } }) => {
        if (room !== undefined) return dashboardPage(c, room, config);
        if ((c.req.header("accept") ?? "").includes("text/html")) return landingPage(c, config);
        return skill(c);
      },
    }),
    operation({
      name: "skill",
      method: "GET",
      path: "/SKILL.md",
      summary: "The skill document agents read to learn this service",
      who: "public",
      answers: { 200: markdown },
      errors: [],
      handler: skill,
    }),
    operation({
      name: "health",
      method: "GET",
      path: "/health",
      summary: "Whether the server is up, and its auth mode",
      who: "public",
      answers: { 200: { description: "Up", schema: HealthSchema } },
      errors: [],
      handler: (c) => c.json({ ok: true as const, auth: config.auth }),
    }),
  ];

  let document: unknown;
  pages.push(operation({
    name: "openapi",
    method: "GET",
    path: "/openapi.json",
    summary: "This API's OpenAPI 3.1 document, generated from the operation definitions",
    who: "public",
    answers: { 200: { description: "The OpenAPI document", contentType: "application/json" } },
    errors: [],
    handler: (c) => c.json(document ??= openApiDocument(operations, config)),
  }));

  const mcpAnswers = {
    200: { description: "A JSON-RPC answer", contentType: "application/json" },
    202: { description: "A notification, accepted" },
  };
  const mcpDescription =
    "Streamable HTTP, stateless: point an MCP client (Claude Code, Cursor, …) here with `Authorization: Bearer <agent token>`. The tools mirror the REST operations.";
  pages.push(
    operation({
      name: "mcp",
      method: "POST",
      path: "/mcp",
      summary: "MCP endpoint: the token decides the room and the agent",
      description: mcpDescription,
      who: "custom",
      answers: mcpAnswers,
      errors: [401, 404],
      handler: async (c) => {
        if (api.open) {
          throw new HttpError(
            400,
            "invalid_path",
            "Open mode has no tokens to name the room: connect to /rooms/<room id>/mcp?agent=<your agent id>",
          );
        }
        const { token, admin } = api.presented(c);
        if (admin) {
          throw new HttpError(
            401,
            "unauthorized",
            "The admin token names no room: connect to /rooms/<room id>/mcp with it",
            {},
            { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
          );
        }
        const found = await q.findTokenRoom(c.get("db"), tokenHash(token));
        if (!found) throw await api.refused(c, "(the token's room)");
        return await mcp(c, found.roomId, await api.access(c, found.roomId));
      },
    }),
    operation({
      name: "roomMcp",
      method: "POST",
      path: "/rooms/:id/mcp",
      summary: "MCP endpoint for one room; in open mode `?agent=` names who you are",
      description: mcpDescription,
      who: "read",
      params: z.object({ id: api.in.id }),
      query: z.strictObject({ agent: api.in.id.optional() }),
      answers: mcpAnswers,
      errors: [401, 404],
      handler: (c, { params, query, access }) => mcp(c, params.id, access, query.agent),
    }),
  );

  async function mcp(c: Context<Env>, roomId: string, access: Access, agent?: string) {
    const { serveMcp } = await import("./mcp.ts");
    const actor = access.actor;
    // The body was read (and checked) by the middleware: hand the SDK a fresh request with it.
    const raw = c.req.raw;
    const req = new Request(raw.url, {
      method: raw.method,
      headers: raw.headers,
      body: await readText(raw, config.maxBodyBytes),
      signal: raw.signal,
    });
    return serveMcp(req, {
      roomId,
      agentId: actor.kind === "agent" ? actor.agentId : api.open ? agent ?? null : null,
      readOnly: actor.kind === "view",
      authorization: c.req.header("authorization") ?? null,
      fetch: async (r) => await app.fetch(r, c.env),
    }, operations);
  }

  const operations: Operation[] = [
    ...pages,
    ...roomOperations(api),
    ...agentOperations(api),
    ...messageOperations(api),
    ...stateOperations(api),
    ...changeOperations(api),
  ];
  mount(app, api, operations);

  return {
    app,
    fetch: (req, info) => app.fetch(req, info as Env["Bindings"]),
    db,
    waiters: api.waiters,
    operations,
    sweep,
    close: async () => {
      api.waiters.close();
      if (dbPromise) (await dbPromise).close();
    },
  };
}

const config = loadConfig();
const service = createService(config);
export default service.fetch;
if (import.meta.main || Deno.env.get("valtown")) describeClientAddress(config);

if (import.meta.main) {
  await serve(service, config, Number(Deno.env.get("PORT") ?? 8000));
}
