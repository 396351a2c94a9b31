// What every route shares: the configuration, the database, and who a request acts as in a room.
import type { Context } from "npm:hono@^4.13.19";
import { z } from "npm:zod@^4.6.7";
import { AuthenticatedPairs, safeEqual, tokenHash, type TokenKind, tokenKind } from "./auth.ts";
import type { Config } from "./config.ts";
import type { Db } from "./db.ts";
import { ROOM_GONE, Waiters } from "./feed.ts";
import { check, HttpError, idSchema, queryInt, readJson, readText, textSchema } from "./http.ts";
import { createLimits, type Limits } from "./limits.ts";
import type { Agent, AgentView } from "./models.ts";
import * as q from "./schema.ts";
import { agentView, type AnswerRows, type Secret } from "./answers.ts";
import { type Idem, reply } from "./idempotency.ts";

/** Who a request acts as, once its token is checked against the room. */
export type Actor =
  | { kind: "open" }
  | { kind: "admin" }
  | { kind: "room" }
  | { kind: "view" }
  | { kind: "agent"; agentId: string };

export interface Access {
  room: q.RoomAuth;
  actor: Actor;
}

export type Env = {
  Bindings: { remoteAddr?: { hostname?: string } } | undefined;
  Variables: { db: Db; client: string; ip: string; idem?: Idem };
};

export const SHARED = "_shared";
/** For answers whose JSON text is spliced together from stored JSON (schema.ts `...Json`). */
export const JSON_TYPE = { "Content-Type": "application/json" };
export const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The input schemas whose limits come from the configuration. */
export function inputs(config: Config) {
  const id = idSchema(config.maxIdLength);
  return {
    id,
    key: textSchema(config.maxKeyLength).min(1, "must not be empty"),
    limit: queryInt.optional(),
    ttl: z.number().positive("must be positive").max(365 * 86400, "must be at most a year"),
    wait: z.string().regex(/^\d+(\.\d+)?$/, "must be a number of seconds").transform(Number),
    bool: z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1"),
    kind: idSchema(64),
    msgId: z.string().regex(/^\d{1,15}$/, "expected a positive integer").transform(Number),
  };
}

/** The service's shared state and the checks every route makes; one per service. */
export class Api {
  readonly open: boolean;
  readonly waiters: Waiters;
  readonly in: ReturnType<typeof inputs>;
  /** Rate, failure and room-creation budgets: in this process or the shared database. */
  readonly limits: Limits | null;
  /** The (token, room) pairs that authenticated: only these count as their own client. */
  readonly authenticated = new AuthenticatedPairs();
  #seen = new Map<string, number>();
  /** Messages posted per room since this process last trimmed it. */
  #sinceTrim = new Map<string, number>();
  #trimEvery: number;

  constructor(readonly config: Config, readonly db: () => Promise<Db>) {
    this.open = config.auth === "open";
    this.waiters = new Waiters(
      db,
      config.wakePollMs,
      config.maxWaits,
      config.maxWaitsPerClient,
      config.maxWaitsPerRoom,
      config.maxWaitsPerAddress,
    );
    this.in = inputs(config);
    this.limits = createLimits(config, db);
    this.#trimEvery = Math.max(1, Math.min(256, Math.floor(config.maxMessages / 16)));
  }

  clamp(limit: number | undefined): number {
    return Math.max(1, Math.min(this.config.maxLimit, limit ?? this.config.defaultLimit));
  }

  expiry(seconds: number | undefined): string | null {
    return seconds === undefined ? null : new Date(Date.now() + seconds * 1000).toISOString();
  }

  bearer(c: Context<Env>): string | null {
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

  isAdmin(token: string | null | undefined): boolean {
    const admin = this.config.adminToken;
    return token != null && admin !== null && safeEqual(token, admin);
  }

  noRoom(roomId: string): HttpError {
    return new HttpError(
      404,
      "not_found",
      this.open
        ? `Cannot find room "${roomId}"`
        : `Cannot find room "${roomId}" (or your token does not grant access to it)`,
    );
  }

  /** A 404 for something other than a room: `what` names it, e.g. `agent "x" in room "r"`. */
  missing(what: string): HttpError {
    return new HttpError(404, "not_found", `Cannot find ${what}`);
  }

  keysFull(roomId: string, suffix = ""): HttpError {
    return new HttpError(
      409,
      "room_full",
      `Room "${roomId}" holds ${this.config.maxKeys} keys already (SYNC_MAX_KEYS)${suffix}`,
    );
  }

  /** Whether the request has a body at all, for routes where every field is optional. */
  async hasBody(c: Context<Env>): Promise<boolean> {
    return (await readText(c.req.raw, this.config.maxBodyBytes)).trim() !== "";
  }

  async body<T extends z.ZodType>(c: Context<Env>, schema: T): Promise<z.infer<T>> {
    const value = await readJson(c, this.config.maxBodyBytes, this.config.maxJsonDepth);
    return check("body", schema, value);
  }

  /**
   * Resolves the room and who the request acts as; 401 without a token, 404 for a wrong one.
   * Leases and ttls that ran out are recorded first, so the room's revision includes them.
   */
  async access(c: Context<Env>, roomId: string): Promise<Access> {
    const a = await this.authorize(c, roomId);
    a.room.rev = await this.waiters.settle(c.get("db"), roomId, a.room.rev);
    return a;
  }

  /** The token a request presents, or 401 when it sends none or one of no known shape. */
  presented(c: Context<Env>): { token: string; admin: boolean; kind: TokenKind | null } {
    const token = this.bearer(c);
    if (token === null) {
      throw new HttpError(
        401,
        "unauthorized",
        "Missing token: send Authorization: Bearer <token> (the room, view or agent token)",
        {},
        { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
      );
    }
    const admin = this.isAdmin(token);
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
    return { token, admin, kind };
  }

  async authorize(c: Context<Env>, roomId: string): Promise<Access> {
    const d = c.get("db");
    if (this.open) {
      const room = await q.getRoomAuth(d, roomId);
      if (!room) throw this.noRoom(roomId);
      return { room, actor: { kind: "open" } };
    }
    const { token, admin, kind } = this.presented(c);
    const hash = admin ? null : tokenHash(token);
    const room = await q.getRoomAuth(d, roomId, kind === "agent" ? hash : null);
    if (admin && room) return { room, actor: { kind: "admin" } };
    if (!room) throw await this.refused(c, roomId);
    if (kind === "room" && safeEqual(room.token_hash, hash!)) {
      return { room, actor: { kind: "room" } };
    }
    if (kind === "view" && safeEqual(room.view_token_hash, hash!)) {
      return { room, actor: { kind: "view" } };
    }
    if (kind === "agent" && room.agent_id !== null) {
      this.markSeen(d, roomId, room.agent_id);
      return { room, actor: { kind: "agent", agentId: room.agent_id } };
    }
    throw await this.refused(c, roomId);
  }

  /**
   * The answer to a token that opens nothing here; its address's failure budget pays for it (in
   * the middleware already, where the limits are this process's own).
   */
  async refused(c: Context<Env>, roomId: string): Promise<HttpError> {
    await this.limits?.failed(c.get("ip"));
    return this.noRoom(roomId);
  }

  /** Like `access`, refusing read-only tokens. */
  async writer(c: Context<Env>, roomId: string): Promise<Access> {
    const a = await this.access(c, roomId);
    if (a.actor.kind === "view") {
      throw new HttpError(
        403,
        "forbidden",
        "View tokens are read-only: use the room or an agent token",
      );
    }
    return a;
  }

  /** Like `writer`, refusing agent tokens too. */
  async owner(c: Context<Env>, roomId: string, what: string): Promise<Access> {
    const a = await this.writer(c, roomId);
    this.requireRoomToken(a.actor, what);
    return a;
  }

  requireRoomToken(actor: Actor, what: string) {
    if (actor.kind === "agent" || actor.kind === "view") {
      throw new HttpError(403, "forbidden", `${what} needs the room token`);
    }
  }

  /** The agent a write is made as: the token's agent, or the one the body names. */
  actingAs(actor: Actor, named: string | null | undefined, field: string): string | null {
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

  /** Presence: an agent is seen at most once every few seconds, so reads stay reads. */
  markSeen(d: Db, roomId: string, agentId: string | null) {
    if (!agentId) return;
    const k = `${roomId}\n${agentId}`;
    const t = Date.now();
    if (t - (this.#seen.get(k) ?? 0) < 5000) return;
    if (this.#seen.size > 50_000) this.#seen.clear();
    this.#seen.set(k, t);
    q.touchAgent(d, roomId, agentId).catch((err) => console.error("presence:", err));
  }

  agentView(a: Agent): AgentView {
    return agentView(a, this.config.onlineSeconds);
  }

  /** A write's answer from the rows it wrote, shaped as a replay of its Idempotency-Key is. */
  answer<K extends q.AnswerOp>(c: Context, op: K, rows: AnswerRows[K][], secret: Secret = null) {
    return reply(c, this.config.onlineSeconds, op, rows, secret);
  }

  /** Refuses a cursor that retention passed (410) or that is ahead of the room (400). */
  checkCursor(room: q.RoomAuth, after: number, feed: "messages" | "changes") {
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
   * the room's revision moves past the one seen before the read. `after` is the caller's
   * cursor, a revision or a message id: while the room's revision is not past it nothing can be
   * found, so `read` is not run (an empty poll costs no query beyond the room's own).
   */
  async held<T>(
    c: Context<Env>,
    room: q.RoomAuth,
    after: number,
    waitSeconds: number,
    read: () => Promise<T[]>,
  ): Promise<T[]> {
    const deadline = Date.now() + Math.min(waitSeconds, this.config.maxWaitSeconds) * 1000;
    let rev = room.rev;
    while (true) {
      const found = rev > after ? await read() : [];
      const left = deadline - Date.now();
      if (found.length > 0 || left <= 0 || c.req.raw.signal.aborted || this.waiters.closed) {
        return found;
      }
      const { signal } = c.req.raw;
      const woke = await this.waiters.wait(
        room.id,
        rev,
        left,
        c.get("client"),
        signal,
        false,
        c.get("ip"),
      );
      if (woke === ROOM_GONE) throw this.noRoom(room.id);
      if (woke !== null) rev = woke;
    }
  }

  /** A write reached revision `rev` of the room: wake its held requests. */
  written(roomId: string, rev: number, setsExpiry = false) {
    // A write that set no lease or ttl leaves the room's next expiry as it was known.
    if (!setsExpiry) this.waiters.carryExpiry(roomId, rev);
    this.waiters.notify(roomId, rev);
  }

  /** Trims a room's oldest messages now and then, as posts arrive. */
  async posted(d: Db, roomId: string) {
    const n = (this.#sinceTrim.get(roomId) ?? 0) + 1;
    if (this.#sinceTrim.size > 10_000) this.#sinceTrim.clear();
    this.#sinceTrim.set(roomId, n % this.#trimEvery);
    if (this.config.maxMessages > 0 && n >= this.#trimEvery) {
      await q.trimMessages(d, roomId, this.config.maxMessages, null);
    }
  }
}
