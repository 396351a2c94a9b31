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
  /** The most bytes of stored values one listing page carries (it ends early past that). */
  maxPageBytes: number;
  maxWaitSeconds: number;
  maxWaits: number;
  maxWaitsPerClient: number;
  maxWaitsPerRoom: number;
  maxWaitsPerAddress: number;
  /** How long reading one request body may take, in ms (0: no bound). */
  bodyTimeoutMs: number;
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
  /** How long the server keeps one event stream open (Val Town ends requests at 60 s). */
  streamSeconds: number;
  streamHeartbeatSeconds: number;
  /** Tests: check every JSON answer against the schema its operation declares. */
  checkResponses: boolean;
  /** The address `deno task start` binds: `SYNC_HOST`, else 127.0.0.1 in open mode, 0.0.0.0 in token mode. */
  host: string;
  /** Origins a browser page may call the API from: a list, or `*` for any. */
  corsOrigins: "*" | string[];
  /** `SYNC_PUBLIC_URL`: the base URL SKILL.md and the landing page show, instead of the Host header's. */
  publicUrl: string | null;
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
    maxPageBytes: num(env, "SYNC_MAX_PAGE_BYTES", 4 * 1024 * 1024, 1),
    maxWaitSeconds: num(env, "SYNC_MAX_WAIT", 30),
    maxWaits: num(env, "SYNC_MAX_WAITS", 10_000),
    maxWaitsPerClient: num(env, "SYNC_MAX_WAITS_PER_CLIENT", 100),
    maxWaitsPerRoom: num(env, "SYNC_MAX_WAITS_PER_ROOM", 1000),
    maxWaitsPerAddress: num(env, "SYNC_MAX_WAITS_PER_ADDRESS", 1000),
    bodyTimeoutMs: num(env, "SYNC_BODY_TIMEOUT_MS", 10_000),
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
    streamSeconds: num(env, "SYNC_STREAM_SECONDS", 50, 1),
    streamHeartbeatSeconds: num(env, "SYNC_STREAM_HEARTBEAT_SECONDS", 15, 1),
    trustProxy: trustProxy(env),
    limits: limitsMode(env),
    checkResponses: env.SYNC_CHECK_RESPONSES === "1",
    host: env.SYNC_HOST || (auth === "open" ? "127.0.0.1" : "0.0.0.0"),
    corsOrigins: origins(env.SYNC_CORS_ORIGINS, auth),
    publicUrl: publicUrl(env.SYNC_PUBLIC_URL),
  };
}

/**
 * `SYNC_CORS_ORIGINS`: a comma-separated list of origins, or `*`. Unset, token mode allows any
 * origin (a page can do nothing without a token it was given) and open mode none (there, being
 * able to reach the server is the only credential).
 */
function origins(raw: string | undefined, auth: "token" | "open"): "*" | string[] {
  if (raw === undefined) return auth === "open" ? [] : "*";
  if (raw.trim() === "*") return "*";
  return raw.split(",").map((o) => o.trim()).filter((o) => o !== "").map((o) => {
    let url: URL | undefined;
    try {
      url = new URL(o);
    } catch { /* reported below */ }
    if (!url || url.origin !== o.replace(/\/$/, "")) {
      throw new Error(
        `SYNC_CORS_ORIGINS: ${JSON.stringify(o)} is not an origin like https://app.example.com`,
      );
    }
    return url.origin;
  });
}

function publicUrl(raw: string | undefined): string | null {
  if (!raw) return null;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch { /* reported below */ }
  if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash) {
    throw new Error(
      `SYNC_PUBLIC_URL=${JSON.stringify(raw)} must be an http(s) URL like https://sync.example.com`,
    );
  }
  return url.href.replace(/\/+$/, "");
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
