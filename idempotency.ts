// Idempotency-Key on writes: the first response is kept and replayed to retries, encrypted.
import { Buffer } from "node:buffer";
import type { MiddlewareHandler } from "npm:hono@^4.13.19";
import { sha256 } from "./auth.ts";
import type { Db } from "./db.ts";
import { HttpError, readText } from "./http.ts";
import * as q from "./schema.ts";

type Env = { Variables: { db: Db; client: string } };

/**
 * Replays the first response to a retried write (POST, PUT, PATCH, DELETE) with the same
 * Idempotency-Key, caller and path.
 * The stored copy is encrypted with a key derived from the Idempotency-Key itself, so the tokens
 * in it are unreadable without that key.
 */
export function idempotency(maxBodyBytes: number): MiddlewareHandler<Env> {
  return async (c, next) => {
    const idemKey = c.req.header("idempotency-key");
    const write = c.req.method !== "GET" && c.req.method !== "HEAD" && c.req.method !== "OPTIONS";
    if (!write || idemKey === undefined) return await next();
    if (!/^[\x21-\x7e]{1,255}$/.test(idemKey)) {
      throw new HttpError(
        400,
        "invalid_header",
        "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
      );
    }
    // Scoped to the caller: its token, or its address when it sends none. An address may be
    // shared (NAT, proxies), so there the key itself must be unguessable.
    if (c.get("client").startsWith("ip:") && idemKey.length < 32) {
      throw new HttpError(
        400,
        "invalid_header",
        "Without a token, an Idempotency-Key must be at least 32 characters: use a random UUID",
      );
    }
    const scope = `${c.get("client")}\n${c.req.method} ${c.req.path}\n${idemKey}`;
    const keyHash = sha256(`key\n${scope}`);
    const requestHash = sha256(await readText(c.req.raw, maxBodyBytes));
    const roomId = /^\/rooms\/([^/]+)/.exec(c.req.path)?.[1] ?? null;
    const d = c.get("db");
    const prior = await q.reserveIdempotencyKey(d, keyHash, roomId, requestHash);
    if (prior) {
      if (prior.requestHash !== requestHash) {
        throw new HttpError(
          422,
          "idempotency_key_reused",
          "This Idempotency-Key was used with a different body: use a new key for a new request",
        );
      }
      if (prior.status === 0 || prior.response === null) {
        throw new HttpError(
          409,
          "idempotency_in_progress",
          "A request with this Idempotency-Key is still running: retry in a moment",
          {},
          { "Retry-After": "1" },
        );
      }
      return c.body(await decrypt(scope, prior.response), prior.status as 200, {
        "Content-Type": "application/json",
        "Idempotent-Replayed": "true",
      });
    }
    try {
      await next();
    } catch (err) {
      await q.releaseIdempotencyKey(d, keyHash);
      throw err;
    }
    // A handler's error reaches here as the onError response (Hono sets c.error), not a throw.
    if (c.error || c.res.status >= 500 || c.res.status === 429) {
      await q.releaseIdempotencyKey(d, keyHash);
      return;
    }
    const text = await c.res.clone().text();
    await q.completeIdempotencyKey(d, keyHash, c.res.status, await encrypt(scope, text));
  };
}

async function cryptoKey(scope: string): Promise<CryptoKey> {
  const raw = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`enc\n${scope}`));
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function encrypt(scope: string, text: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv },
    await cryptoKey(scope),
    new TextEncoder().encode(text),
  );
  return Buffer.concat([iv, new Uint8Array(data)]).toString("base64");
}

async function decrypt(scope: string, stored: string): Promise<string> {
  const all = Buffer.from(stored, "base64");
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: all.subarray(0, 12) },
    await cryptoKey(scope),
    all.subarray(12),
  );
  return new TextDecoder().decode(plain);
}
