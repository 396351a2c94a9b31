// The agent-sync HTTP API: one Hono app with every route; `deno task start` serves it, Val Town imports it.
import { type Context, Hono } from "npm:hono@^4.13.19";
import { z } from "npm:zod@^4.6.7";
import { mintToken, RateLimiter, safeEqual, sha256, tokenHash, tokenKind } from "./auth.ts";
import { type Config, loadConfig } from "./config.ts";
import { dashboardPage, landingPage } from "./dashboard.ts";
import { type Db, openDb } from "./db.ts";
import { ROOM_GONE, Waiters } from "./feed.ts";
import { idempotency } from "./idempotency.ts";
import {
  check,
  checkSize,
  errorBody,
  HttpError,
  idSchema,
  json,
  queryInt,
  readJson,
  readText,
  textSchema,
} from "./http.ts";
import * as q from "./schema.ts";
import { skillDoc } from "./skill.ts";

/** Who a request acts as, once its token is checked against the room. */
type Actor =
  | { kind: "open" }
  | { kind: "admin" }
  | { kind: "room" }
  | { kind: "view" }
  | { kind: "agent"; agentId: string };

interface Access {
  room: q.RoomAuth;
  actor: Actor;
}

type Env = {
  Bindings: { remoteAddr?: { hostname?: string } } | undefined;
  Variables: { db: Db; client: string; ip: string };
};

export interface Service {
  app: Hono<Env>;
  fetch: (req: Request, info?: unknown) => Response | Promise<Response>;
  db: () => Promise<Db>;
  waiters: Waiters;
  /** Applies retention and expiry now (it also runs by itself at most once a minute). */
  sweep: () => Promise<void>;
  close: () => Promise<void>;
}

const SHARED = "_shared";
/** For answers whose JSON text is spliced together from stored JSON (schema.ts `...Json`). */
const JSON_TYPE = { "Content-Type": "application/json" };
const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Builds the service for a configuration; the module's default export serves the environment's. */
export function createService(config: Config = loadConfig()): Service {
  const open = config.auth === "open";
  let dbPromise: Promise<Db> | undefined;
  const db = () =>
    dbPromise ??= openDb(config.db).then(async (d) => {
      await q.migrate(d);
      return d;
    }).catch((err) => {
      dbPromise = undefined; // the next request tries again
      throw err;
    });
  const waiters = new Waiters(db, config.wakePollMs, config.maxWaits, config.maxWaitsPerClient);
  const limiter = config.rateLimit === null
    ? null
    : new RateLimiter(config.rateBurst, config.rateLimit / 60);
  const failures = config.rateLimit === null
    ? null
    : new RateLimiter(config.rateBurst, config.rateLimit / 60);
  const roomLimiter = new RateLimiter(config.roomsPerHour, config.roomsPerHour / 3600);
  const seen = new Map<string, number>();
  const goodTokens = new Set<string>();
  /** Messages posted per room since this process last trimmed it. */
  const sinceTrim = new Map<string, number>();
  const trimEvery = Math.max(1, Math.min(256, Math.floor(config.maxMessages / 16)));
  let lastSweep = Date.now();

  const id = idSchema(config.maxIdLength);
  const key = textSchema(config.maxKeyLength).min(1, "must not be empty");
  const limitParam = queryInt.optional();
  const ttl = z.number().positive("must be positive").max(365 * 86400, "must be at most a year");

  // ------------------------------------------------------------ helpers

  const clamp = (limit: number | undefined) =>
    Math.max(1, Math.min(config.maxLimit, limit ?? config.defaultLimit));

  const expiry = (seconds: number | undefined) =>
    seconds === undefined ? null : new Date(Date.now() + seconds * 1000).toISOString();

  function bearer(c: Context<Env>): string | null {
    const header = c.req.header("authorization");
    if (!header) return null;
    const m = BEARER.exec(header);
    if (!m) {
      throw new HttpError(
        401,
        "unauthorized",
        'Cannot read Authorization header: expected "Bearer <token>"',
        {},
        { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
      );
    }
    return m[1];
  }

  function isAdmin(token: string | null): boolean {
    return token !== null && config.adminToken !== null && safeEqual(token, config.adminToken);
  }

  function noRoom(roomId: string) {
    return new HttpError(
      404,
      "not_found",
      open
        ? `Cannot find room "${roomId}"`
        : `Cannot find room "${roomId}" (or your token does not grant access to it)`,
    );
  }

  /** A 404 for something other than a room: `what` names it, e.g. `agent "x" in room "r"`. */
  function missing(what: string) {
    return new HttpError(404, "not_found", `Cannot find ${what}`);
  }

  function roomExists(roomId: string) {
    return new HttpError(
      409,
      "room_exists",
      `Room "${roomId}" already exists: join it with its token, or choose another id`,
    );
  }

  function keysFull(roomId: string, suffix = "") {
    return new HttpError(
      409,
      "room_full",
      `Room "${roomId}" holds ${config.maxKeys} keys already (SYNC_MAX_KEYS)${suffix}`,
    );
  }

  /** Whether the request has a body at all, for routes where every field is optional. */
  async function hasBody(c: Context<Env>): Promise<boolean> {
    return (await readText(c.req.raw, config.maxBodyBytes)).trim() !== "";
  }

  /** Resolves the room and who the request acts as; 401 without a token, 404 for a wrong one. */
  async function access(c: Context<Env>, roomId: string): Promise<Access> {
    const d = c.get("db");
    if (open) {
      const room = await q.getRoomAuth(d, roomId);
      if (!room) throw noRoom(roomId);
      return { room, actor: { kind: "open" } };
    }
    const token = bearer(c);
    if (token === null) {
      throw new HttpError(
        401,
        "unauthorized",
        "Missing token: send Authorization: Bearer <token> (the room, view or agent token)",
        {},
        { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
      );
    }
    const admin = isAdmin(token);
    const kind = tokenKind(token);
    if (!admin && kind === null) {
      throw new HttpError(
        401,
        "unauthorized",
        "Malformed token: expected as_room_, as_view_ or as_agent_ followed by 43 characters, exactly as issued",
        {},
        { "WWW-Authenticate": 'Bearer realm="agent-sync", error="invalid_token"' },
      );
    }
    const hash = admin ? null : tokenHash(token);
    const room = await q.getRoomAuth(d, roomId, kind === "agent" ? hash : null);
    if (admin && room) return { room, actor: { kind: "admin" } };
    if (!room) throw refused(c, roomId);
    if (kind === "room" && safeEqual(room.token_hash, hash!)) {
      return { room, actor: { kind: "room" } };
    }
    if (kind === "view" && safeEqual(room.view_token_hash, hash!)) {
      return { room, actor: { kind: "view" } };
    }
    if (kind === "agent" && room.agent_id !== null) {
      markSeen(d, roomId, room.agent_id);
      return { room, actor: { kind: "agent", agentId: room.agent_id } };
    }
    throw refused(c, roomId);
  }

  /**
   * The answer to a token that opens nothing here; it spends its address's failure budget, so
   * inventing a new token for each request does not escape the rate limit.
   */
  function refused(c: Context<Env>, roomId: string): HttpError {
    failures?.take(c.get("ip"));
    return noRoom(roomId);
  }

  /** Like `access`, refusing read-only tokens. */
  async function writer(c: Context<Env>, roomId: string): Promise<Access> {
    const a = await access(c, roomId);
    if (a.actor.kind === "view") {
      throw new HttpError(
        403,
        "forbidden",
        "View tokens are read-only: use the room or an agent token",
      );
    }
    return a;
  }

  /** The agent a write is made as: the token's agent, or the one the body names. */
  function actingAs(actor: Actor, named: string | null | undefined, field: string): string | null {
    if (actor.kind !== "agent") return named ?? null;
    if (named != null && named !== actor.agentId) {
      throw new HttpError(
        403,
        "forbidden",
        `This token belongs to agent "${actor.agentId}": it cannot act as "${named}" (${
          field === "agent_id" ? "use the room token" : `omit "${field}"`
        })`,
      );
    }
    return actor.agentId;
  }

  function requireRoomToken(actor: Actor, what: string) {
    if (actor.kind === "agent" || actor.kind === "view") {
      throw new HttpError(403, "forbidden", `${what} needs the room token`);
    }
  }

  /** Presence: an agent is seen at most once every few seconds, so reads stay reads. */
  function markSeen(d: Db, roomId: string, agentId: string | null) {
    if (!agentId) return;
    const k = `${roomId}\n${agentId}`;
    const t = Date.now();
    if (t - (seen.get(k) ?? 0) < 5000) return;
    if (seen.size > 50_000) seen.clear();
    seen.set(k, t);
    q.touchAgent(d, roomId, agentId).catch((err) => console.error("presence:", err));
  }

  function agentView(a: q.Agent) {
    const online = a.last_seen !== null &&
      Date.now() - Date.parse(a.last_seen) < config.onlineSeconds * 1000;
    return { ...a, online };
  }

  /** Refuses a cursor that retention passed (410) or that is ahead of the room (400). */
  function checkCursor(room: q.RoomAuth, after: number, feed: "messages" | "changes") {
    if (after > room.rev) {
      throw new HttpError(
        400,
        "invalid_query",
        `Invalid query: after=${after} is ahead of the room's revision ${room.rev} (a cursor from a deleted room of the same id?): start again from after=0`,
        { rev: room.rev },
      );
    }
    if (after > 0 && after < room.trimmed_rev) {
      const resume = feed === "messages"
        ? `resume with after=${room.trimmed_rev} (skipping them), or after=0 to start from the oldest kept`
        : "read the room again from after=0 (agents and state are kept in full)";
      throw new HttpError(
        410,
        "cursor_expired",
        `Messages up to id ${room.trimmed_rev} were removed by retention: ${resume}`,
        { trimmed_rev: room.trimmed_rev },
      );
    }
  }

  /**
   * Runs `read` until it finds something or `waitSeconds` pass, sleeping between tries until
   * the room's revision moves past the one seen before the read.
   */
  async function held<T>(
    c: Context<Env>,
    room: q.RoomAuth,
    waitSeconds: number,
    read: () => Promise<T[]>,
  ): Promise<T[]> {
    const deadline = Date.now() + Math.min(waitSeconds, config.maxWaitSeconds) * 1000;
    let rev = room.rev;
    while (true) {
      const found = await read();
      const left = deadline - Date.now();
      if (found.length > 0 || left <= 0 || c.req.raw.signal.aborted) return found;
      const woke = await waiters.wait(room.id, rev, left, c.get("client"), c.req.raw.signal);
      if (woke === ROOM_GONE) throw noRoom(room.id);
      if (woke !== null) rev = woke;
    }
  }

  async function body<T extends z.ZodType>(c: Context<Env>, schema: T): Promise<z.infer<T>> {
    return check("body", schema, await readJson(c, config.maxBodyBytes, config.maxJsonDepth));
  }

  function query<T extends z.ZodType>(c: Context<Env>, schema: T): z.infer<T> {
    return check("query", schema, c.req.query());
  }

  function param(c: Context<Env>, name: string, schema: z.ZodType = id): string {
    const value = c.req.param(name) ?? "";
    const r = schema.safeParse(value);
    if (!r.success) {
      throw new HttpError(
        400,
        "invalid_path",
        `Invalid ${name} "${value}": ${r.error.issues[0].message}`,
      );
    }
    return value;
  }

  function messageId(c: Context<Env>): number {
    const raw = c.req.param("msg_id") ?? "";
    if (!/^\d{1,15}$/.test(raw)) {
      throw new HttpError(
        400,
        "invalid_path",
        `Invalid message id "${raw}": expected a positive integer`,
      );
    }
    return Number(raw);
  }

  function written(roomId: string, rev: number) {
    waiters.notify(roomId, rev);
  }

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

  // ------------------------------------------------------------ middleware

  const app = new Hono<Env>();

  app.use("*", async (c, next) => {
    const forwarded = config.trustProxy
      // The entry the proxy itself appended: the ones before it are the client's to write.
      ? c.req.header("x-forwarded-for")?.split(",").at(-1)?.trim()
      : undefined;
    const ip = forwarded ?? c.env?.remoteAddr?.hostname ?? "local";
    // A well-formed token is its own client; anything else counts against the address.
    const token = BEARER.exec(c.req.header("authorization") ?? "")?.[1];
    const client = token && (tokenKind(token) || isAdmin(token)) ? `t:${token}` : `ip:${ip}`;
    c.set("client", client);
    c.set("ip", ip);
    const origin = c.req.header("origin");
    const cors: Record<string, string> = origin
      ? {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers":
          "Retry-After, RateLimit, RateLimit-Policy, Idempotent-Replayed",
      }
      : {};
    if (limiter) {
      // Tokens that opened nothing spend their address's budget of failures, so inventing a
      // new token for each request does not escape the limit; tokens that worked never do.
      const r = token && !goodTokens.has(token) && !failures!.has(ip)
        ? failures!.take(ip)
        : limiter.take(client);
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
    if (origin && c.req.method === "OPTIONS") {
      return c.body(null, 204, {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
        "Access-Control-Max-Age": "86400",
      });
    }
    c.set("db", await db());
    await next();
    if (limiter && token) {
      if (c.res.status < 400 && !goodTokens.has(token)) {
        if (goodTokens.size > 100_000) goodTokens.clear();
        goodTokens.add(token);
      }
    }
    for (const [name, value] of Object.entries(cors)) c.res.headers.set(name, value);
    if (Date.now() - lastSweep > 60_000) sweep().catch((err) => console.error("sweep:", err));
  });

  app.use("*", idempotency(config.maxBodyBytes));

  app.onError((err, c) => {
    if (err instanceof HttpError) {
      return c.json(errorBody(err), err.status, err.headers);
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

  // ------------------------------------------------------------ pages

  app.get("/", (c) => {
    const room = c.req.query("room");
    if (room !== undefined) return dashboardPage(c, room, config);
    if ((c.req.header("accept") ?? "").includes("text/html")) return landingPage(c, config);
    return skill(c);
  });
  const skill = (c: Context<Env>) =>
    c.body(skillDoc(new URL(c.req.url).origin, config), 200, {
      "Content-Type": "text/markdown; charset=utf-8",
    });
  app.get("/SKILL.md", skill);
  app.get("/health", (c) => c.json({ ok: true, auth: config.auth }));

  // ------------------------------------------------------------ rooms

  const createRoomBody = z.strictObject({ id: id.optional(), meta: json.optional() });
  const listRoomsQuery = z.strictObject({ limit: limitParam });
  const noQuery = z.strictObject({});

  app.post("/rooms", async (c) => {
    const token = open ? null : bearer(c);
    const admin = isAdmin(token);
    if (!open && config.adminToken !== null && !admin) {
      throw new HttpError(
        401,
        "unauthorized",
        "Creating rooms on this server needs the admin token (SYNC_ADMIN_TOKEN)",
        {},
        { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
      );
    }
    // Every field is optional, so an empty body is an empty object.
    const b = await hasBody(c) ? await body(c, createRoomBody) : {};
    checkSize("meta", b.meta ?? null, config.maxValueBytes);
    const roomId = b.id ?? crypto.randomUUID();
    const d = c.get("db");
    const existing = await q.getRoomAuth(d, roomId);
    if (existing) {
      if (!open) {
        await access(c, roomId).catch(() => {
          throw roomExists(roomId);
        });
      }
      const { id: rid, created_at, meta, rev } = existing;
      return c.json({ id: rid, created_at, meta, rev }, 200);
    }
    if (!admin) {
      const r = roomLimiter.take(c.get("ip"));
      if (!r.ok && config.rateLimit !== null) {
        throw new HttpError(
          429,
          "rate_limited",
          `Too many rooms created from this address: at most ${config.roomsPerHour} an hour, retry after ${r.retryAfter} s`,
          { retry_after: r.retryAfter },
          {
            "Retry-After": String(r.retryAfter),
            "RateLimit": `limit=${config.roomsPerHour}, remaining=0, reset=${r.retryAfter}`,
          },
        );
      }
    }
    const tokens = open ? null : { token: mintToken("room"), view_token: mintToken("view") };
    const room = await q.createRoom(d, {
      id: roomId,
      meta: b.meta ?? null,
      tokenHash: tokens ? sha256(tokens.token) : null,
      viewTokenHash: tokens ? sha256(tokens.view_token) : null,
    });
    if (!room) throw roomExists(roomId);
    return c.json({ ...room, ...tokens }, 201);
  });

  app.get("/rooms", async (c) => {
    const { limit } = query(c, listRoomsQuery);
    if (!open && !isAdmin(bearer(c))) {
      if (config.adminToken === null) return c.json([]);
      throw new HttpError(
        401,
        "unauthorized",
        "Listing rooms on this server needs the admin token (SYNC_ADMIN_TOKEN)",
        {},
        {
          "WWW-Authenticate": 'Bearer realm="agent-sync"',
        },
      );
    }
    return c.json(await q.listRooms(c.get("db"), clamp(limit)));
  });

  app.get("/rooms/:id", async (c) => {
    const { room } = await access(c, param(c, "id"));
    return c.json({ id: room.id, created_at: room.created_at, meta: room.meta, rev: room.rev });
  });

  app.delete("/rooms/:id", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    requireRoomToken(actor, "Deleting a room");
    await q.deleteRoom(c.get("db"), roomId);
    written(roomId, ROOM_GONE);
    return c.json({ deleted: true, id: roomId });
  });

  // ------------------------------------------------------------ agents

  const agentBody = z.strictObject({
    id: id.optional(),
    name: textSchema(200).min(1, "must not be empty"),
    role: textSchema(100).optional(),
    meta: json.optional(),
    rotate_token: z.boolean().optional(),
  });

  app.post("/rooms/:id/agents", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const b = await body(c, agentBody);
    checkSize("meta", b.meta ?? null, config.maxValueBytes);
    const d = c.get("db");
    const agentId = b.id ?? (actor.kind === "agent" ? actor.agentId : crypto.randomUUID());
    const existing = await q.getAgent(d, roomId, agentId);
    if (!existing) {
      if (actor.kind === "agent") {
        throw new HttpError(
          403,
          "forbidden",
          "Agent tokens cannot register other agents: use the room token",
        );
      }
      const token = open ? null : mintToken("agent");
      const r = await q.insertAgent(d, {
        roomId,
        id: agentId,
        name: b.name,
        role: b.role ?? "agent",
        meta: b.meta ?? null,
        tokenHash: token ? sha256(token) : null,
      }, config.maxAgents);
      if (r.result === "no_room") throw noRoom(roomId);
      if (r.result === "full") {
        throw new HttpError(
          409,
          "room_full",
          `Room "${roomId}" has ${config.maxAgents} agents already (SYNC_MAX_AGENTS)`,
        );
      }
      if (r.result === "exists") {
        throw new HttpError(
          409,
          "agent_exists",
          `Agent "${agentId}" was just registered by another request: re-register with its token`,
        );
      }
      written(roomId, r.agent!.rev);
      return c.json({ ...agentView(r.agent!), ...(token ? { token } : {}) }, 201);
    }
    if (
      actor.kind === "agent"
        ? actor.agentId !== agentId
        : actor.kind !== "room" && actor.kind !== "admin" && !open
    ) {
      throw new HttpError(
        409,
        "agent_exists",
        `Agent "${agentId}" is registered already: re-register with its own token or the room token`,
      );
    }
    const token = !open && b.rotate_token ? mintToken("agent") : null;
    const agent = await q.updateAgent(d, roomId, agentId, {
      name: b.name,
      role: b.role,
      meta: b.meta,
      tokenHash: token ? sha256(token) : undefined,
    });
    if (!agent) throw noRoom(roomId);
    written(roomId, agent.rev);
    return c.json({ ...agentView(agent), ...(token ? { token } : {}) }, 200);
  });

  app.get("/rooms/:id/agents", async (c) => {
    const roomId = param(c, "id");
    await access(c, roomId);
    query(c, noQuery);
    return c.json((await q.listAgents(c.get("db"), roomId)).map(agentView));
  });

  app.get("/rooms/:id/agents/:agent_id", async (c) => {
    const roomId = param(c, "id");
    await access(c, roomId);
    const agentId = param(c, "agent_id");
    const agent = await q.getAgent(c.get("db"), roomId, agentId);
    if (!agent) throw missing(`agent "${agentId}" in room "${roomId}"`);
    return c.json(agentView(agent));
  });

  const agentPatch = z.strictObject({
    name: textSchema(200).min(1, "must not be empty").optional(),
    role: textSchema(100).optional(),
    meta: json.optional(),
    status: textSchema(32).min(1, "must not be empty").optional(),
    note: textSchema(280).nullable().optional(),
  });

  app.patch("/rooms/:id/agents/:agent_id", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const agentId = param(c, "agent_id");
    actingAs(actor, agentId, "agent_id");
    const b = await body(c, agentPatch);
    checkSize("meta", b.meta ?? null, config.maxValueBytes);
    const agent = await q.updateAgent(c.get("db"), roomId, agentId, b);
    if (!agent) throw missing(`agent "${agentId}" in room "${roomId}"`);
    written(roomId, agent.rev);
    return c.json(agentView(agent));
  });

  // ------------------------------------------------------------ messages

  const messageBody = z.strictObject({
    from: id.nullable().optional(),
    to: id.nullable().optional(),
    kind: idSchema(64).optional(),
    body: json,
    reply_to: z.number().int().positive().nullable().optional(),
  });

  app.post("/rooms/:id/messages", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const b = await body(c, messageBody);
    checkSize("body", b.body, config.maxValueBytes);
    const from = actingAs(actor, b.from, "from");
    const d = c.get("db");
    const message = await q.insertMessage(d, {
      roomId,
      from,
      to: b.to ?? null,
      kind: b.kind ?? "message",
      body: b.body,
      replyTo: b.reply_to ?? null,
    });
    if (!message) {
      if (b.reply_to != null && await q.getRoomAuth(d, roomId)) {
        throw new HttpError(
          400,
          "invalid_body",
          `Invalid body: field "reply_to" names message ${b.reply_to}, which is not in this room`,
          {
            fields: [{
              field: "reply_to",
              message: `message ${b.reply_to} is not in this room`,
            }],
          },
        );
      }
      throw noRoom(roomId);
    }
    written(roomId, message.rev);
    if (open) markSeen(d, roomId, from);
    const posted = (sinceTrim.get(roomId) ?? 0) + 1;
    if (sinceTrim.size > 10_000) sinceTrim.clear();
    sinceTrim.set(roomId, posted % trimEvery);
    if (config.maxMessages > 0 && posted >= trimEvery) {
      await q.trimMessages(d, roomId, config.maxMessages, null);
    }
    return c.json(message, 201);
  });

  const wait = z.string().regex(/^\d+(\.\d+)?$/, "must be a number of seconds").transform(Number);
  const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");
  const messageQuery = z.strictObject({
    after: queryInt.optional(),
    before: queryInt.optional(),
    limit: limitParam,
    kind: idSchema(64).optional(),
    to: id.optional(),
    from: id.optional(),
    thread: queryInt.optional(),
    unclaimed: bool.optional(),
    wait: wait.optional(),
  });

  app.get("/rooms/:id/messages", async (c) => {
    const roomId = param(c, "id");
    const { room } = await access(c, roomId);
    const p = query(c, messageQuery);
    const after = p.after ?? 0;
    checkCursor(room, after, "messages");
    if (open) markSeen(c.get("db"), roomId, p.to ?? null);
    const d = c.get("db");
    const list = await held(c, room, p.wait ?? 0, async () => {
      const page = await q.listMessagesJson(d, roomId, {
        after,
        before: p.before,
        limit: clamp(p.limit),
        kind: p.kind,
        to: p.to,
        from: p.from,
        thread: p.thread,
        unclaimed: p.unclaimed,
      });
      if (page.trimmedRev === null) throw noRoom(roomId);
      // Nothing found may mean that retention passed the cursor since the room was read.
      checkCursor({ ...room, trimmed_rev: page.trimmedRev }, after, "messages");
      return page.items;
    });
    return c.body(`[${list.join(",")}]`, 200, JSON_TYPE);
  });

  app.get("/rooms/:id/messages/:msg_id", async (c) => {
    const roomId = param(c, "id");
    await access(c, roomId);
    const msgId = messageId(c);
    const message = await q.getMessage(c.get("db"), roomId, msgId);
    if (!message) throw missing(`message ${msgId} in room "${roomId}"`);
    return c.json(message);
  });

  const claimBody = z.strictObject({ agent: id.optional(), ttl: ttl.optional() });

  /** The agent a claim is made or released for, from the token or an optional JSON body. */
  async function claimant(c: Context<Env>, actor: Actor): Promise<{ agent: string; ttl?: number }> {
    const b = await hasBody(c) ? await body(c, claimBody) : {};
    const agent = actingAs(actor, b.agent, "agent");
    if (!agent) {
      throw new HttpError(
        400,
        "invalid_body",
        'Invalid body: missing field "agent" (the claiming agent\'s id)',
      );
    }
    return { agent, ttl: b.ttl };
  }

  app.post("/rooms/:id/messages/:msg_id/claim", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const msgId = messageId(c);
    const { agent, ttl } = await claimant(c, actor);
    const d = c.get("db");
    const r = await q.claimMessage(d, roomId, msgId, agent, expiry(ttl));
    if (!r.message) throw missing(`message ${msgId} in room "${roomId}"`);
    if (!r.ok) {
      throw new HttpError(
        409,
        "already_claimed",
        `Message ${msgId} is claimed by "${r.message.claim?.agent}"`,
        {
          claim: r.message.claim,
        },
      );
    }
    written(roomId, r.message.rev);
    if (open) markSeen(d, roomId, agent);
    return c.json(r.message);
  });

  app.delete("/rooms/:id/messages/:msg_id/claim", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const msgId = messageId(c);
    const asOwner = actor.kind === "room" || actor.kind === "admin";
    const agent = asOwner ? null : (await claimant(c, actor)).agent;
    const r = await q.releaseMessage(c.get("db"), roomId, msgId, agent);
    if (!r.message) throw missing(`message ${msgId} in room "${roomId}"`);
    if (!r.ok) {
      const holder = r.message.claim?.agent;
      throw new HttpError(
        409,
        holder ? "claimed_by_other" : "not_claimed",
        holder
          ? `Message ${msgId} is claimed by "${holder}", not "${agent}"`
          : `Message ${msgId} is not claimed`,
        { claim: r.message.claim },
      );
    }
    written(roomId, r.message.rev);
    return c.json(r.message);
  });

  // ------------------------------------------------------------ state

  const stateQuery = z.strictObject({
    scope: id.optional(),
    key: key.optional(),
    limit: limitParam,
  });
  app.get("/rooms/:id/state", async (c) => {
    const roomId = param(c, "id");
    await access(c, roomId);
    const p = query(c, stateQuery);
    const d = c.get("db");
    if (p.key !== undefined) {
      const scope = p.scope ?? SHARED;
      const entry = await q.getState(d, roomId, scope, p.key);
      if (!entry) throw missing(`key "${p.key}" in scope "${scope}"`);
      return c.json(entry);
    }
    return c.json(
      await q.listState(
        d,
        roomId,
        p.scope,
        p.limit === undefined ? config.maxKeys : clamp(p.limit),
      ),
    );
  });

  const putFields = {
    scope: id.optional(),
    key,
    value: json,
    if_version: z.number().int().min(0).optional(),
    ttl: ttl.optional(),
  };
  const deleteFields = {
    scope: id.optional(),
    key,
    if_version: z.number().int().min(1).optional(),
  };

  /** Refuses writes to another registered agent's own scope. */
  async function checkScope(c: Context<Env>, roomId: string, actor: Actor, scope: string) {
    if (actor.kind !== "agent" || scope === SHARED || scope === actor.agentId) return;
    if (await q.getAgent(c.get("db"), roomId, scope)) {
      throw new HttpError(
        403,
        "forbidden",
        `Scope "${scope}" belongs to agent "${scope}": only it (or the room token) may write it`,
      );
    }
  }

  async function conflict(
    c: Context<Env>,
    roomId: string,
    scope: string,
    k: string,
    ifVersion: number | undefined,
  ) {
    const d = c.get("db");
    const current = await q.getState(d, roomId, scope, k);
    if (ifVersion === undefined && !current) {
      if (!(await q.getRoomAuth(d, roomId))) return noRoom(roomId);
      return keysFull(roomId);
    }
    if (ifVersion === 0 && !current && (await q.countState(d, roomId)) >= config.maxKeys) {
      return keysFull(roomId);
    }
    const is = current ? `is at version ${current.version}` : "does not exist";
    const wanted = ifVersion === 0 ? "expected it not to exist" : `expected version ${ifVersion}`;
    return new HttpError(
      409,
      "version_conflict",
      `Key "${k}" in scope "${scope}" ${is}; ${wanted}`,
      {
        current: current
          ? { version: current.version, value: current.value, rev: current.rev }
          : null,
      },
    );
  }

  // Built once: constructing a zod schema costs ~50 µs, more than the rest of the validation.
  const putBody = z.strictObject(putFields);
  const deleteBody = z.strictObject(deleteFields);
  const deleteQuery = z.strictObject({
    scope: id.optional(),
    key,
    if_version: queryInt.pipe(z.number().min(1, "must be at least 1")).optional(),
  });

  app.put("/rooms/:id/state", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const b = await body(c, putBody);
    checkSize("value", b.value, config.maxValueBytes);
    const scope = b.scope ?? SHARED;
    await checkScope(c, roomId, actor, scope);
    const entry = await q.putState(c.get("db"), roomId, {
      scope,
      key: b.key,
      value: b.value,
      ifVersion: b.if_version,
      expiresAt: expiry(b.ttl),
    }, config.maxKeys);
    if (!entry) throw await conflict(c, roomId, scope, b.key, b.if_version);
    written(roomId, entry.rev);
    return c.json(entry);
  });

  app.delete("/rooms/:id/state", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    // Clients that cannot send a DELETE body may pass the same fields in the query.
    const b = await hasBody(c) ? await body(c, deleteBody) : query(c, deleteQuery);
    const scope = b.scope ?? SHARED;
    await checkScope(c, roomId, actor, scope);
    const d = c.get("db");
    const entry = await q.deleteState(d, roomId, { scope, key: b.key, ifVersion: b.if_version });
    if (!entry) {
      if (!(await q.getState(d, roomId, scope, b.key))) {
        throw missing(`key "${b.key}" in scope "${scope}"`);
      }
      throw await conflict(c, roomId, scope, b.key, b.if_version);
    }
    written(roomId, entry.rev);
    return c.json({ deleted: true, scope, key: b.key, version: entry.version, rev: entry.rev });
  });

  const batchBody = z.strictObject({
    ops: z.array(z.record(z.string(), z.unknown()))
      .min(1, "must hold at least one operation").max(100, "must hold at most 100 operations"),
  });
  const batchDelete = z.strictObject({ ...deleteFields, delete: z.literal(true) });

  app.put("/rooms/:id/state/batch", async (c) => {
    const roomId = param(c, "id");
    const { actor } = await writer(c, roomId);
    const b = await body(c, batchBody);
    const ops: q.StateOp[] = [];
    const seenKeys = new Set<string>();
    for (const [i, raw] of b.ops.entries()) {
      // Each op is a put or, with "delete": true, a delete; checked alone so errors name it.
      const op = "delete" in raw
        ? check("body", batchDelete, raw, `ops[${i}]`)
        : check("body", putBody, raw, `ops[${i}]`);
      const scope = op.scope ?? SHARED;
      const k = `${scope}\n${op.key}`;
      if (seenKeys.has(k)) {
        throw new HttpError(
          400,
          "invalid_body",
          `Invalid body: ops[${i}] writes key "${op.key}" in scope "${scope}" a second time`,
        );
      }
      seenKeys.add(k);
      await checkScope(c, roomId, actor, scope);
      if ("delete" in op) {
        ops.push({ op: "delete", scope, key: op.key, ifVersion: op.if_version });
      } else {
        checkSize(`ops[${i}].value`, op.value, config.maxValueBytes);
        ops.push({
          op: "put",
          scope,
          key: op.key,
          value: op.value,
          ifVersion: op.if_version,
          expiresAt: expiry(op.ttl),
        });
      }
    }
    const d = c.get("db");
    const results = await q.applyStateBatch(d, roomId, ops, config.maxKeys);
    if (results) {
      written(roomId, results[results.length - 1].rev);
      return c.json({
        results: results.map((r, i) => ops[i].op === "delete" ? { ...r, deleted: true } : r),
        rev: results[results.length - 1].rev,
      });
    }
    if (!(await q.getRoomAuth(d, roomId))) throw noRoom(roomId);
    for (const [i, op] of ops.entries()) {
      const current = await q.getState(d, roomId, op.scope, op.key);
      const ok = op.op === "delete"
        ? current !== null && (op.ifVersion === undefined || op.ifVersion === current.version)
        : op.ifVersion === undefined ||
          (op.ifVersion === 0 ? current === null : current?.version === op.ifVersion);
      if (!ok) {
        const err = op.op === "delete" && !current
          ? new HttpError(
            409,
            "version_conflict",
            `Key "${op.key}" in scope "${op.scope}" does not exist`,
            { current: null },
          )
          : await conflict(c, roomId, op.scope, op.key, op.ifVersion);
        throw new HttpError(409, err.code, `ops[${i}]: ${err.message}; nothing was written`, {
          ...err.details,
          failed: i,
        });
      }
    }
    throw keysFull(roomId, "; nothing was written");
  });

  // ------------------------------------------------------------ changes

  const changesQuery = z.strictObject({
    after: queryInt.optional(),
    limit: limitParam,
    wait: wait.optional(),
  });

  app.get("/rooms/:id/changes", async (c) => {
    const roomId = param(c, "id");
    const { room } = await access(c, roomId);
    const p = query(c, changesQuery);
    const after = p.after ?? 0;
    checkCursor(room, after, "changes");
    const changes = await held(
      c,
      room,
      p.wait ?? 0,
      async () => {
        const d = c.get("db");
        const r = await q.listChangesJson(d, roomId, after, clamp(p.limit), config.onlineSeconds);
        checkCursor({ ...room, trimmed_rev: r.trimmedRev }, after, "changes");
        return r.changes;
      },
    );
    const next = changes.length > 0 ? changes[changes.length - 1].rev : Math.max(after, room.rev);
    const items = changes.map((ch) => ch.json).join(",");
    return c.body(`{"changes":[${items}],"next":${next}}`, 200, JSON_TYPE);
  });

  return {
    app,
    fetch: (req, info) => app.fetch(req, info as Env["Bindings"]),
    db,
    waiters,
    sweep,
    close: async () => {
      waiters.close();
      if (dbPromise) (await dbPromise).close();
    },
  };
}

const service = createService();
export default service.fetch;

if (import.meta.main) {
  const port = Number(Deno.env.get("PORT") ?? 8000);
  const hostname = Deno.env.get("SYNC_HOST") ?? "0.0.0.0";
  const d = await service.db();
  const config = loadConfig();
  const mode = config.auth === "open"
    ? "OPEN (no tokens: every room readable and writable by anyone who can reach this server)"
    : config.adminToken
    ? "token (room creation needs SYNC_ADMIN_TOKEN)"
    : "token";
  Deno.serve({
    port,
    hostname,
    onListen: ({ port }) =>
      console.log(
        `agent-sync listening on http://localhost:${port}  auth: ${mode}  db: ${d.driver}`,
      ),
  }, service.fetch);
}
