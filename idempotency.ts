// Idempotency-Key on writes: the answer commits with the write it answers and is replayed to retries.
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { Context, MiddlewareHandler } from "npm:hono@^4.13.19";
import { answer, type AnswerRows, isAnswerOp, type Secret } from "./answers.ts";
import { sha256 } from "./auth.ts";
import type { Config } from "./config.ts";
import type { Db } from "./db.ts";
import { errorBody, HttpError, readText } from "./http.ts";
import * as q from "./schema.ts";

/** A keyed write in flight: what its schema write records, and the scope that encrypts secrets. */
export interface Idem extends q.KeyedWrite {
  scope: string;
}

type Env = { Variables: { db: Db; client: string; idem?: Idem } };
type Settings = Pick<Config, "maxBodyBytes" | "onlineSeconds">;

/**
 * Makes writes (POST, PUT, PATCH, DELETE) with an Idempotency-Key exactly-once for one caller
 * and path: a retry gets the first answer again, with `Idempotent-Replayed: true`.
 * The handler passes `keyed(c)` to its schema write, which commits the key's record and the
 * answer in the write's own batch; a crash leaves either both or neither.
 */
export function idempotency(config: Settings): MiddlewareHandler<Env> {
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
    const keyHash = hash128(`key\n${scope}`);
    const requestHash = hash128(await readText(c.req.raw, config.maxBodyBytes));
    const idem: Idem = {
      keyHash,
      requestHash,
      at: Date.now(),
      secret: null,
      scope,
    };
    c.set("idem", idem);
    await next();
    // The common case costs no read: a first request's record commits with its write.
    if (idem.outcome === "stored" || c.res.status >= 500) return;
    // Otherwise a request with this key may have committed before: this one's write was rolled
    // back by the record's primary key, or it was refused (4xx) or wrote nothing (2xx: a room
    // joined, not created) because of that first write. Answer as the first one did.
    const winner = await q.getIdempotencyRecord(c.get("db"), keyHash);
    if (winner) {
      let res: Response;
      try {
        res = replay(winner, requestHash, scope, config.onlineSeconds);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        res = Response.json(errorBody(err), { status: err.status });
      }
      c.res = undefined; // not merged with the headers of the answer it replaces
      c.res = res;
    } else if (idem.outcome === "taken") {
      // The first request's record is gone again (its room deleted): this one wrote nothing.
      throw new HttpError(
        409,
        "idempotency_in_progress",
        "A request with this Idempotency-Key was answered and then forgotten: retry it",
        {},
        { "Retry-After": "1" },
      );
    }
  };
}

/** The first 128 bits of SHA-256 in hex: how a key and its request are stored (migration 7). */
function hash128(text: string): string {
  return sha256(text).slice(0, 32);
}

/** The Idempotency-Key context for a handler's schema write, carrying `secret` encrypted. */
export function keyed(c: Context, secret: Secret = null): q.KeyedWrite | undefined {
  const idem = c.get("idem") as Idem | undefined;
  if (idem) idem.secret = secret ? encrypt(idem.scope, JSON.stringify(secret)) : null;
  return idem;
}

/** A write's answer, shaped as a replay of it will be. */
export function reply<K extends q.AnswerOp>(
  c: Context,
  onlineSeconds: number,
  op: K,
  rows: AnswerRows[K][],
  secret: Secret = null,
): Response {
  const idem = c.get("idem") as Idem | undefined;
  const a = answer(op, rows, { secret, at: idem?.at ?? Date.now(), onlineSeconds });
  return c.json(a.body, a.status);
}

function replay(
  record: q.IdempotencyRecord,
  requestHash: string,
  scope: string,
  onlineSeconds: number,
): Response {
  if (record.requestHash !== requestHash) {
    throw new HttpError(
      422,
      "idempotency_key_reused",
      "This Idempotency-Key was used with a different body: use a new key for a new request",
    );
  }
  let status: number;
  let text: string;
  if (record.op === null) {
    // Stored by an earlier version: the whole response, encrypted.
    status = record.status;
    text = decrypt(scope, record.response ?? "");
  } else {
    if (!isAnswerOp(record.op) || record.response === null) {
      throw new Error(`idempotency record of unknown op "${record.op}"`);
    }
    const op = record.op;
    const secret = record.secret === null ? null : JSON.parse(decrypt(scope, record.secret));
    const a = answer(op, q.writtenRows(op, record.response, record.at) as AnswerRows[typeof op][], {
      secret,
      at: record.at,
      onlineSeconds,
    });
    status = a.status;
    text = JSON.stringify(a.body);
  }
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", "idempotent-replayed": "true" },
  });
}

// AES-256-GCM, synchronous, under a key derived from the scope (which holds the Idempotency-Key):
// iv (12 bytes), ciphertext, tag (16 bytes), in base64. WebCrypto's layout, so records written
// by earlier versions decrypt too.
function aesKey(scope: string): Buffer {
  return createHash("sha256").update(`enc\n${scope}`).digest();
}

function encrypt(scope: string, text: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", aesKey(scope), iv);
  const data = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
  return Buffer.concat([iv, data, cipher.getAuthTag()]).toString("base64");
}

function decrypt(scope: string, stored: string): string {
  const all = Buffer.from(stored, "base64");
  const decipher = createDecipheriv("aes-256-gcm", aesKey(scope), all.subarray(0, 12));
  decipher.setAuthTag(all.subarray(all.length - 16));
  return Buffer.concat([decipher.update(all.subarray(12, all.length - 16)), decipher.final()])
    .toString("utf8");
}
