// The budgets that protect the service: per request, per bad token, per room created; counted in
// this process or, when instances share the database, in it.
import { RateLimiter, sha256 } from "./auth.ts";
import type { Config } from "./config.ts";
import type { Db } from "./db.ts";
import { countHit, expireLimitWindows } from "./schema.ts";

export interface Verdict {
  ok: boolean;
  /** Seconds until the budget allows another request, when refused. */
  retryAfter: number;
}

/** Where the service counts what clients spend. */
export interface Limits {
  readonly where: "memory" | "db";
  /**
   * Spends one request of `client`'s budget. A token not yet seen to work (`unproven`) from an
   * address whose failure budget is spent is refused instead.
   */
  request(client: string, ip: string, unproven: boolean): Promise<Verdict>;
  /** An unproven token's request succeeded: it authenticated, so its address is not charged. */
  proved(ip: string): void;
  /** A token opened nothing: spends one of its address's failures. */
  failed(ip: string): Promise<void>;
  /** Spends one room creation of the address. */
  room(ip: string): Promise<Verdict>;
}

/** The limits the configuration asks for, or null when `SYNC_RATE_LIMIT=off`. */
export function createLimits(config: Config, db: () => Promise<Db>): Limits | null {
  if (config.rateLimit === null) return null;
  return config.limits === "db" ? new DbLimits(config, db) : new MemoryLimits(config);
}

/** Token buckets in this process: exact and free, but each instance counts alone. */
class MemoryLimits implements Limits {
  readonly where = "memory";
  #rate: RateLimiter;
  #failures: RateLimiter;
  #rooms: RateLimiter;

  constructor(config: Config) {
    const perSecond = config.rateLimit! / 60;
    this.#rate = new RateLimiter(config.rateBurst, perSecond);
    this.#failures = new RateLimiter(config.rateBurst, perSecond);
    this.#rooms = new RateLimiter(config.roomsPerHour, config.roomsPerHour / 3600);
  }

  request(client: string, ip: string, unproven: boolean): Promise<Verdict> {
    // An unproven token pays one of its address's failures up front (given back by `proved`),
    // so that a burst of concurrent probes is counted before any of them is answered.
    let r = unproven ? this.#failures.take(ip) : this.#rate.take(client);
    if (r.ok && unproven) r = this.#rate.take(client);
    return Promise.resolve(r);
  }

  proved(ip: string) {
    this.#failures.refund(ip);
  }

  failed(_ip: string): Promise<void> {
    return Promise.resolve(); // paid up front by `request`
  }

  room(ip: string): Promise<Verdict> {
    return Promise.resolve(this.#rooms.take(ip));
  }
}

interface Window {
  /** Budget name and client, hashed so that no token or address is stored. */
  bucket: string;
  windowEnd: string;
  retryAfter: number;
}

/** What this process knows of one client's rate window. */
interface Tally {
  windowEnd: string;
  /** The window's hits in the database when this process last counted there. */
  known: number;
  /** Requests this process let through since, not yet counted there. */
  pending: number;
  syncedAt: number;
  flushing: boolean;
}

/**
 * Fixed-window counters in the shared database, whichever instance serves a request. A window
 * lasts as long as the burst takes to refill (`RateLimit-Policy`'s `w`), so the long-run rate is
 * the same as in memory; across a window's edge a client may spend up to two bursts.
 *
 * Requests are counted in batches: a client's first request in a window, and any from a token
 * not yet proven, wait for one UPSERT; later ones are let through on what this process knows and
 * counted in the background every `burst / 10` requests or every second, so with N instances a
 * client may exceed its burst by at most N × burst / 10. Failures and rooms are counted one by one.
 */
class DbLimits implements Limits {
  readonly where = "db";
  #windowMs: number;
  #flushEvery: number;
  #prunedAt = 0;
  #tallies = new Map<string, Tally>();

  constructor(readonly config: Config, readonly db: () => Promise<Db>) {
    this.#windowMs = Math.ceil(config.rateBurst / (config.rateLimit! / 60)) * 1000;
    this.#flushEvery = Math.max(1, Math.floor(config.rateBurst / 10));
  }

  async request(client: string, ip: string, unproven: boolean): Promise<Verdict> {
    const rate = this.#window("rate", client, this.#windowMs);
    let tally = this.#tallies.get(rate.bucket);
    if (tally?.windowEnd !== rate.windowEnd) tally = undefined;
    if (tally && !unproven) {
      if (tally.known + tally.pending >= this.config.rateBurst) {
        return { ok: false, retryAfter: rate.retryAfter };
      }
      tally.pending++;
      if (tally.pending >= this.#flushEvery || Date.now() - tally.syncedAt > 1000) {
        this.#flush(rate, tally);
      }
      return { ok: true, retryAfter: 0 };
    }
    // An unproven token counts only while its address has failures left, so that made-up
    // tokens from a spent address add no rows.
    const failures = unproven ? this.#window("fail", ip, this.#windowMs) : null;
    const hits = await countHit(
      await this.#db(),
      rate.bucket,
      rate.windowEnd,
      1,
      failures && { ...failures, max: this.config.rateBurst },
    );
    if (hits === null) return { ok: false, retryAfter: failures!.retryAfter };
    if (this.#tallies.size > 100_000) this.#tallies.clear();
    this.#tallies.set(rate.bucket, {
      windowEnd: rate.windowEnd,
      known: hits,
      pending: tally?.pending ?? 0,
      syncedAt: Date.now(),
      flushing: false,
    });
    return hits <= this.config.rateBurst
      ? { ok: true, retryAfter: 0 }
      : { ok: false, retryAfter: rate.retryAfter };
  }

  /** Counts what this process let through in the database, and learns what the others did. */
  #flush(rate: Window, tally: Tally) {
    if (tally.flushing) return;
    tally.flushing = true;
    const count = tally.pending;
    tally.pending = 0;
    this.#db()
      .then((d) => countHit(d, rate.bucket, rate.windowEnd, count))
      .then((hits) => {
        tally.known = Math.max(tally.known, hits ?? 0);
        tally.syncedAt = Date.now();
      }, (err) => {
        tally.pending += count;
        console.error("limits:", err);
      })
      .finally(() => tally.flushing = false);
  }

  proved(_ip: string) {} // failures are counted when they happen, in `failed`

  async failed(ip: string): Promise<void> {
    const w = this.#window("fail", ip, this.#windowMs);
    await countHit(await this.#db(), w.bucket, w.windowEnd);
  }

  async room(ip: string): Promise<Verdict> {
    const w = this.#window("room", ip, 3600_000);
    const hits = await countHit(await this.#db(), w.bucket, w.windowEnd);
    return hits! <= this.config.roomsPerHour
      ? { ok: true, retryAfter: 0 }
      : { ok: false, retryAfter: w.retryAfter };
  }

  #window(budget: string, client: string, ms: number): Window {
    const now = Date.now();
    const end = (Math.floor(now / ms) + 1) * ms;
    return {
      bucket: `${budget}:${sha256(client).slice(0, 32)}`,
      windowEnd: new Date(end).toISOString(),
      retryAfter: Math.max(1, Math.ceil((end - now) / 1000)),
    };
  }

  /** The database, removing windows that are over at most once a minute per process. */
  async #db(): Promise<Db> {
    const d = await this.db();
    const now = Date.now();
    if (now - this.#prunedAt > 60_000) {
      this.#prunedAt = now;
      expireLimitWindows(d, new Date(now).toISOString()).catch((err) =>
        console.error("limits expiry:", err)
      );
    }
    return d;
  }
}

/**
 * The client's address: with `hops` proxies in front, the entry the outermost one appended to
 * `X-Forwarded-For` (the ones before it are the client's to write); else the connection's.
 */
export function clientAddress(
  forwardedFor: string | undefined,
  hops: number,
  connection: string | undefined,
): string {
  const entries = hops > 0 && forwardedFor ? forwardedFor.split(",") : [];
  const entry = entries.length >= hops ? entries.at(-hops)?.trim() : undefined;
  return entry || connection || "local";
}

let described = false;

/** Logs once per process which address the limits count requests by. */
export function describeClientAddress(config: Config) {
  if (described) return;
  described = true;
  const source = config.trustProxy === 0
    ? "the connection's address (SYNC_TRUST_PROXY=0)"
    : `X-Forwarded-For entry ${config.trustProxy} from the end (SYNC_TRUST_PROXY=${config.trustProxy}: that many proxies in front append to it)`;
  const kept = config.rateLimit === null
    ? "rate limits off"
    : `limits kept in ${config.limits === "db" ? "the database" : "this process"} (SYNC_LIMITS)`;
  console.log(`agent-sync counts clients by ${source}; ${kept}`);
}
