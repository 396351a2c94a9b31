// Secrets and budgets: token minting and hashing, constant-time checks, per-client rate limits.
import { createHash, timingSafeEqual } from "node:crypto";

export type TokenKind = "room" | "view" | "agent";
export const TOKEN_PREFIX: Record<TokenKind, string> = {
  room: "as_room_",
  view: "as_view_",
  agent: "as_agent_",
};
const TOKEN_SHAPE = /^as_(room|view|agent)_[A-Za-z0-9_-]{43}$/;

/** A new secret: a recognizable prefix and 256 random bits in base64url. */
export function mintToken(kind: TokenKind): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const b64 = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
  return TOKEN_PREFIX[kind] + b64;
}

export function tokenKind(token: string): TokenKind | null {
  const m = TOKEN_SHAPE.exec(token);
  return m ? m[1] as TokenKind : null;
}

/** Hex SHA-256: what is stored in place of a token. */
export function sha256(text: string): string {
  // node:crypto hashes in the calling thread; crypto.subtle.digest hops to a worker thread and
  // back, which cost more than the hash on every authenticated request (see bench/).
  return createHash("sha256").update(text).digest("hex");
}

const tokenHashes = new Map<string, string>();

/**
 * `sha256` of a token, remembered for the tokens seen lately (at most 10,000), so that a
 * client's every request does not hash its token again.
 */
export function tokenHash(token: string): string {
  let hash = tokenHashes.get(token);
  if (hash === undefined) {
    if (tokenHashes.size >= 10_000) tokenHashes.clear();
    tokenHashes.set(token, hash = sha256(token));
  }
  return hash;
}

/** Compares two strings in time that depends only on their lengths. */
export function safeEqual(a: string | null, b: string): boolean {
  if (a === null) return false;
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Token buckets per client key; `take` says how long to wait when the bucket is empty. */
export class RateLimiter {
  #buckets = new Map<string, { tokens: number; at: number }>();
  constructor(readonly capacity: number, readonly perSecond: number) {}

  take(key: string, nowMs = Date.now()): { ok: boolean; remaining: number; retryAfter: number } {
    const b = this.#refill(key, nowMs);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true, remaining: Math.floor(b.tokens), retryAfter: 0 };
    }
    return { ok: false, remaining: 0, retryAfter: Math.ceil((1 - b.tokens) / this.perSecond) };
  }

  /** Gives back what one `take` spent, for a request that turned out not to owe it. */
  refund(key: string) {
    const b = this.#buckets.get(key);
    if (b) b.tokens = Math.min(this.capacity, b.tokens + 1);
  }

  /** Whether `take` would succeed now, without spending anything. */
  has(key: string, nowMs = Date.now()): boolean {
    return this.#refill(key, nowMs).tokens >= 1;
  }

  #refill(key: string, nowMs: number) {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size > 100_000) this.#prune(nowMs);
      b = { tokens: this.capacity, at: nowMs };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(this.capacity, b.tokens + (nowMs - b.at) / 1000 * this.perSecond);
    b.at = nowMs;
    return b;
  }

  #prune(nowMs: number) {
    const full = this.capacity / this.perSecond * 1000;
    for (const [k, b] of this.#buckets) if (nowMs - b.at > full) this.#buckets.delete(k);
  }
}

/**
 * The (token hash, room) pairs that authenticated, newest kept: a token counts as its own client
 * only on a room it opened. Bounded; the oldest pairs are forgotten first.
 */
export class AuthenticatedPairs {
  #pairs = new Set<string>();
  constructor(readonly max = 100_000) {}

  has(token: string, roomId: string): boolean {
    return this.#pairs.has(`${tokenHash(token)}\n${roomId}`);
  }

  add(token: string, roomId: string) {
    const pair = `${tokenHash(token)}\n${roomId}`;
    if (this.#pairs.has(pair)) return;
    if (this.#pairs.size >= this.max) this.#pairs.delete(this.#pairs.values().next().value!);
    this.#pairs.add(pair);
  }
}

const PLAIN_ID = /^[\w.~-]+$/;

/** The room id a path names (`/rooms/:id…`), decoded and normalised as ids are, or null. */
export function roomOfPath(path: string): string | null {
  if (!path.startsWith("/rooms/")) return null;
  const end = path.indexOf("/", 7);
  const raw = end === -1 ? path.slice(7) : path.slice(7, end);
  if (raw === "") return null;
  // Plain ASCII with no escape is the id as it is (decoding and NFC leave it alone).
  if (PLAIN_ID.test(raw)) return raw;
  try {
    return decodeURIComponent(raw).normalize("NFC");
  } catch {
    return null;
  }
}
