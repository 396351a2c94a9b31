// Every setting of the service, read from the environment with its documented default.
import { type DbOptions, isRemote } from "./db.ts";

export interface Config {
  db: DbOptions;
  /** `token` (default): rooms need tokens. `open`: the original README's trusted local mode. */
  auth: "token" | "open";
  adminToken: string | null;
  maxBodyBytes: number;
  maxJsonDepth: number;
  maxValueBytes: number;
  maxIdLength: number;
  maxKeyLength: number;
  defaultLimit: number;
  maxLimit: number;
  maxWaitSeconds: number;
  maxWaits: number;
  maxWaitsPerClient: number;
  /** Requests per minute per client, or null when `SYNC_RATE_LIMIT=off`. */
  rateLimit: number | null;
  rateBurst: number;
  roomsPerHour: number;
  maxAgents: number;
  maxKeys: number;
  maxMessages: number;
  messageTtlDays: number;
  roomTtlDays: number;
  onlineSeconds: number;
  idempotencyHours: number;
  wakePollMs: number;
  /**
   * How many proxies in front of the service append to `X-Forwarded-For`: the client is that
   * many entries from the end. 0 (the default off Val Town): the connection's address.
   */
  trustProxy: number;
  /** Where the limits that protect the service count: this process, or the shared database. */
  limits: "memory" | "db";
}

function num(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
  min = 0,
): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) {
    throw new Error(`${name}=${JSON.stringify(raw)} must be a number of at least ${min}`);
  }
  return n;
}

/** The configuration the environment describes; see the README's Configuration section. */
export function loadConfig(env: Record<string, string | undefined> = Deno.env.toObject()): Config {
  const rate = env.SYNC_RATE_LIMIT;
  const sync = (env.SYNC_SYNCHRONOUS ?? "NORMAL").toUpperCase();
  if (sync !== "NORMAL" && sync !== "FULL") {
    throw new Error(`SYNC_SYNCHRONOUS must be NORMAL or FULL, not ${JSON.stringify(sync)}`);
  }
  const auth = env.SYNC_AUTH ?? "token";
  if (auth !== "token" && auth !== "open") {
    throw new Error(`SYNC_AUTH must be "token" or "open", not ${JSON.stringify(auth)}`);
  }
  return {
    db: {
      url: env.SYNC_DB || undefined,
      authToken: env.SYNC_DB_TOKEN,
      driver: env.SYNC_DB_DRIVER === "libsql" ? "libsql" : "embedded",
      synchronous: sync,
    },
    auth,
    adminToken: env.SYNC_ADMIN_TOKEN || null,
    maxBodyBytes: num(env, "SYNC_MAX_BODY_BYTES", 256 * 1024),
    // Deeper JSON could overflow the stack when a stored value is serialized again.
    maxJsonDepth: Math.min(num(env, "SYNC_MAX_JSON_DEPTH", 100, 1), 1000),
    maxValueBytes: num(env, "SYNC_MAX_VALUE_BYTES", 64 * 1024),
    maxIdLength: num(env, "SYNC_MAX_ID_LENGTH", 128),
    maxKeyLength: num(env, "SYNC_MAX_KEY_LENGTH", 256),
    defaultLimit: num(env, "SYNC_DEFAULT_LIMIT", 100),
    maxLimit: num(env, "SYNC_MAX_LIMIT", 1000),
    maxWaitSeconds: num(env, "SYNC_MAX_WAIT", 30),
    maxWaits: num(env, "SYNC_MAX_WAITS", 10_000),
    maxWaitsPerClient: num(env, "SYNC_MAX_WAITS_PER_CLIENT", 100),
    rateLimit: rate === "off" ? null : num(env, "SYNC_RATE_LIMIT", 1200, 1),
    rateBurst: num(env, "SYNC_RATE_BURST", 200, 1),
    roomsPerHour: num(env, "SYNC_ROOMS_PER_HOUR", 60, 1),
    maxAgents: num(env, "SYNC_MAX_AGENTS", 1000),
    maxKeys: num(env, "SYNC_MAX_KEYS", 10_000),
    maxMessages: num(env, "SYNC_MAX_MESSAGES", 100_000),
    messageTtlDays: num(env, "SYNC_MESSAGE_TTL_DAYS", 0),
    roomTtlDays: num(env, "SYNC_ROOM_TTL_DAYS", 0),
    onlineSeconds: num(env, "SYNC_ONLINE_SECONDS", 60),
    idempotencyHours: num(env, "SYNC_IDEMPOTENCY_HOURS", 24),
    wakePollMs: num(env, "SYNC_WAKE_POLL_MS", 250),
    trustProxy: trustProxy(env),
    limits: limitsMode(env),
  };
}

function trustProxy(env: Record<string, string | undefined>): number {
  const raw = env.SYNC_TRUST_PROXY;
  if (raw === undefined || raw === "") return env.valtown ? 1 : 0;
  if (!/^\d{1,2}$/.test(raw)) {
    throw new Error(
      `SYNC_TRUST_PROXY=${JSON.stringify(raw)} must be the number of proxies in front (0 to 99)`,
    );
  }
  return Number(raw);
}

/** `SYNC_LIMITS`, by default `db` when instances share the database (remote libSQL, Val Town). */
function limitsMode(env: Record<string, string | undefined>): "memory" | "db" {
  const raw = env.SYNC_LIMITS;
  if (raw === "memory" || raw === "db") return raw;
  if (raw !== undefined && raw !== "") {
    throw new Error(`SYNC_LIMITS must be "db" or "memory", not ${JSON.stringify(raw)}`);
  }
  const url = env.SYNC_DB ?? "";
  return isRemote(url) || (!url && env.valtown) ? "db" : "memory";
}
