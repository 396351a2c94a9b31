// The edge of the API: one JSON error shape, bounded body reading and zod validation with hints.
import type { Context } from "npm:hono@^4.13.19";
import type { ContentfulStatusCode } from "npm:hono@^4.13.19/utils/http-status";
import { z } from "npm:zod@^4.6.7";
import { storageFault } from "./db.ts";

/** An error a client can act on; rendered as `{ error, message, status, ...details }`. */
export class HttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorBody(err: HttpError) {
  return { error: err.code, message: err.message, status: err.status, ...err.details };
}

/** Any JSON value, required to be present. */
export const json = z.custom<unknown>((v) => v !== undefined, { message: "Required" });

/**
 * Characters that change how text around them is shown without being seen: direction overrides
 * and isolates, zero-width spaces and marks, invisible fillers and tag characters. Joiners
 * (U+200C, U+200D) and variation selectors stay allowed: scripts and emoji need them.
 */
const INVISIBLE =
  /[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u200e\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/u;

function invisibleMessage(s: string): string {
  const c = INVISIBLE.exec(s)?.[0] ?? "";
  const code = c.codePointAt(0)?.toString(16).toUpperCase().padStart(4, "0");
  return `must not contain invisible or text-direction characters (found U+${code})`;
}

/**
 * Ids in paths and bodies: normalised to NFC (so the composed and decomposed spellings of one id
 * are one id), with no control, invisible or direction characters, spaces or URL delimiters.
 */
export function idSchema(max: number) {
  return z.string()
    .overwrite((s) => s.normalize("NFC"))
    .refine((s) => !INVISIBLE.test(s), {
      error: (iss) => invisibleMessage(String(iss.input)),
      abort: true,
    })
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters`)
    .regex(
      /^[\p{L}\p{N}._:@~+-]+$/u,
      "may contain only letters, digits and . _ : @ ~ + -",
    );
}

/** Names, keys and other short labels: no control, invisible or direction characters. */
export function textSchema(max: number) {
  return z.string().max(max, `must be at most ${max} characters`).refine(
    // deno-lint-ignore no-control-regex
    (s) => !/[\x00-\x08\x0b-\x1f\x7f]/.test(s) && s.isWellFormed(),
    "must not contain control characters or unpaired surrogates",
  ).refine((s) => !INVISIBLE.test(s), { error: (iss) => invisibleMessage(String(iss.input)) });
}

// Field names that users of similar APIs reach for, mapped to ours.
const ALIASES: Record<string, string> = {
  content: "body",
  text: "body",
  message: "body",
  data: "value",
  val: "value",
  from_agent: "from",
  sender: "from",
  to_agent: "to",
  recipient: "to",
  type: "kind",
  agent_id: "id",
  room_id: "id",
  expected_version: "if_version",
  version: "if_version",
  ttl_seconds: "ttl",
  parent: "reply_to",
};

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

function suggest(unknownKey: string, known: string[]): string | undefined {
  const alias = ALIASES[unknownKey.toLowerCase()];
  if (alias && known.includes(alias)) return alias;
  const close = known
    .map((k) => [k, distance(unknownKey.toLowerCase(), k)] as const)
    .filter(([, d]) => d <= 2)
    .sort((a, b) => a[1] - b[1]);
  return close[0]?.[0];
}

function pathName(path: PropertyKey[]): string {
  return path.map((p) => typeof p === "number" ? `[${p}]` : String(p)).join(".")
    .replace(/\.\[/g, "[");
}

/** Turns zod issues into one readable sentence plus per-field details. */
function invalid(
  where: "body" | "query",
  issues: z.core.$ZodIssue[],
  known: string[],
  prefix = "",
): HttpError {
  const fieldName = (path: PropertyKey[]) => pathName(prefix ? [prefix, ...path] : path);
  const fields = issues.flatMap((issue) => {
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((k) => {
        const hint = suggest(k, known);
        const field = fieldName([...issue.path, k]);
        return {
          field,
          message: `unknown field "${field}"` + (hint ? `: did you mean "${hint}"?` : "") +
            ` (allowed: ${known.join(", ")})`,
        };
      });
    }
    const field = fieldName(issue.path);
    const missing = issue.code === "custom" && issue.message === "Required" ||
      issue.code === "invalid_type" && issue.message.endsWith("received undefined");
    const message = missing
      ? `missing field "${field}"`
      : `field "${field}" ${issue.message.replace(/^Invalid input: /, "")}`;
    return [{ field, message }];
  });
  const what = where === "body" ? "body" : "query";
  return new HttpError(
    400,
    `invalid_${what}`,
    `Invalid ${what}: ${fields.map((f) => f.message).join("; ")}`,
    { fields },
  );
}

function knownKeys(schema: z.ZodType): string[] {
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

/** Parses `value` with `schema` or throws the shared 400 error. */
export function check<T extends z.ZodType>(
  where: "body" | "query",
  schema: T,
  value: unknown,
  prefix = "",
): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalid(where, result.error.issues, knownKeys(schema), prefix);
  return result.data;
}

const bodies = new WeakMap<Request, string>();
/** Requests whose body was given up on: their read failing later is no news. */
const abandoned = new WeakSet<Request>();

/**
 * Reads the request body as UTF-8 text, at most `maxBytes`, chunked or not; read once, kept.
 * With `timeoutMs`, a body still arriving after that long is refused with 408.
 */
export async function readText(req: Request, maxBytes: number, timeoutMs = 0): Promise<string> {
  const kept = bodies.get(req);
  if (kept !== undefined) return kept;
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  let text = "";
  if (req.body) {
    const all = await withDeadline(readBytes(req, maxBytes, declared), timeoutMs, req);
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(all);
    } catch {
      throw new HttpError(400, "invalid_body", "Cannot parse body: expected UTF-8 text");
    }
  }
  bodies.set(req, text);
  return text;
}

async function readBytes(req: Request, maxBytes: number, declared: number): Promise<Uint8Array> {
  try {
    if (declared >= 0) {
      // A declared length, checked above: one read, no stream loop (much cheaper in Deno).
      const all = new Uint8Array(await req.arrayBuffer());
      if (all.byteLength > maxBytes) throw tooLarge(maxBytes);
      return all;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of req.body!) {
      size += chunk.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(chunk);
    }
    const all = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) all.set(chunk, offset), offset += chunk.byteLength;
    return all;
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The client went away mid-upload: nobody is left to read an answer, so one line will do.
    if (!abandoned.has(req)) {
      console.warn(`request body aborted: ${req.method} ${new URL(req.url).pathname}: ${err}`);
    }
    throw new HttpError(
      400,
      "invalid_body",
      "Cannot read body: the connection closed before the whole body arrived",
    );
  }
}

interface BodyRead {
  req: Request;
  due: number;
  ms: number;
  fail: (err: HttpError) => void;
}
/** Body reads under way with a deadline; one timer looks over all of them. */
const reading = new Set<BodyRead>();
let sweeper: ReturnType<typeof setInterval> | undefined;
/** How often the timer looks: a body is refused at most this much after its deadline. */
const SWEEP_MS = 100;

function sweepOverdue() {
  const t = Date.now();
  for (const r of reading) {
    if (r.due > t) continue;
    reading.delete(r);
    abandoned.add(r.req);
    r.req.body?.cancel().catch(() => {}); // a locked stream refuses; the closed connection ends it
    r.fail(
      new HttpError(
        408,
        "request_timeout",
        `Request body did not arrive within ${r.ms} ms (SYNC_BODY_TIMEOUT_MS): send it at once`,
        { timeout_ms: r.ms },
      ),
    );
  }
  if (reading.size === 0) clearInterval(sweeper), sweeper = undefined;
}

/**
 * `work`, or 408 once `ms` pass. One shared timer rather than one per request: arming and
 * clearing a timer for each body cost every write a few microseconds.
 */
async function withDeadline<T>(work: Promise<T>, ms: number, req: Request): Promise<T> {
  if (!(ms > 0)) return await work;
  const entry = { req, due: Date.now() + ms, ms, fail: (_: HttpError) => {} };
  const overdue = new Promise<never>((_, reject) => entry.fail = reject);
  reading.add(entry);
  if (sweeper === undefined) {
    sweeper = setInterval(sweepOverdue, Math.min(SWEEP_MS, ms));
    // It stops by itself once no body is being read; it never keeps the process alive.
    if (typeof Deno.unrefTimer === "function") Deno.unrefTimer(sweeper);
  }
  try {
    return await Promise.race([work, overdue]);
  } finally {
    reading.delete(entry);
  }
}

/** Whether a Content-Type names JSON (`application/json` or `application/*+json`). */
export function isJsonType(type: string): boolean {
  return /^application\/([\w.+-]*\+)?json\s*(;|$)/i.test(type);
}

/**
 * Refuses a write whose body is not declared JSON: a Content-Type other than JSON, or a body
 * without one. A cross-site form or beacon can send neither without the browser asking first.
 * A write without a body and without a Content-Type passes (`curl -X POST` sends none).
 * Reads the body (once, kept) within `timeoutMs`.
 */
export async function checkWriteBody(
  req: Request,
  maxBytes: number,
  timeoutMs: number,
): Promise<void> {
  const type = req.headers.get("content-type");
  if (type !== null && !isJsonType(type)) throw unsupportedType(type);
  const text = await readText(req, maxBytes, timeoutMs);
  if (type === null && text !== "") throw unsupportedType(null);
}

function unsupportedType(type: string | null) {
  return new HttpError(
    415,
    "unsupported_media_type",
    type === null
      ? "Cannot read a body without a Content-Type: send JSON with Content-Type: application/json"
      : `Cannot read body of type "${type}": send JSON with Content-Type: application/json`,
  );
}

/** Reads the request body as a JSON object. */
export async function readJson(c: Context, maxBytes: number, maxDepth: number): Promise<unknown> {
  const type = c.req.header("content-type");
  if (type && !isJsonType(type)) throw unsupportedType(type);
  const text = await readText(c.req.raw, maxBytes);
  if (text.trim() === "") {
    throw new HttpError(
      400,
      "invalid_body",
      "Cannot parse body: expected a JSON object, got nothing",
    );
  }
  let value: unknown;
  try {
    // Only a body with a long digit run or an exponent can hold a number JSON cannot carry.
    value = /\d{16}|\d[eE]/.test(text) ? JSON.parse(text, exactNumbers) : JSON.parse(text);
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(
      400,
      "invalid_json",
      `Cannot parse body as JSON: ${(err as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "invalid_body", "Cannot parse body: expected a JSON object");
  }
  // Deeper JSON could overflow the stack when the stored value is serialized again.
  if (nestedDeeper(value, maxDepth)) {
    throw new HttpError(
      400,
      "invalid_body",
      `Cannot parse body: JSON is nested more than ${maxDepth} levels deep`,
      { max_depth: maxDepth },
    );
  }
  return value;
}

function nestedDeeper(value: unknown, levels: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (levels === 0) return true;
  for (const v of Object.values(value)) if (nestedDeeper(v, levels - 1)) return true;
  return false;
}

/**
 * Refuses a number that would not come back as sent: beyond a double (stored as null), so small
 * it becomes 0, or an integer past 2^53 (its last digits would change).
 */
function exactNumbers(key: string, v: unknown, context?: { source?: string }) {
  if (typeof v !== "number") return v;
  const source = context?.source ?? String(v);
  const shown = source.length > 24 ? `${source.slice(0, 12)}…${source.slice(-8)}` : source;
  const where = /^\d+$/.test(key) ? "" : ` in field "${key}"`;
  const refuse = (why: string) =>
    new HttpError(400, "invalid_body", `Invalid body: the number ${shown}${where} ${why}`, {
      number: shown,
    });
  if (!Number.isFinite(v)) throw refuse("is too large to represent (beyond ±1.8e308)");
  if (v === 0 && /[1-9]/.test(source.split(/[eE]/)[0])) {
    throw refuse("is too small to represent (it would become 0)");
  }
  if (/^-?\d+$/.test(source) && !Number.isSafeInteger(v)) {
    throw refuse(
      "is an integer beyond 2^53 (9007199254740991), which JSON numbers cannot carry exactly: send it as a string",
    );
  }
  return v;
}

function tooLarge(max: number) {
  return new HttpError(
    413,
    "payload_too_large",
    `Request body is larger than ${max} bytes`,
    { max_bytes: max },
  );
}

/** A non-negative integer query parameter, or `fallback` when absent. */
export const queryInt = z.string().regex(/^\d{1,15}$/, "must be a non-negative integer")
  .transform(Number);

/** Refuses a JSON value larger than `max` bytes. */
export function checkSize(field: string, value: unknown, max: number) {
  const text = JSON.stringify(value);
  if (text.length * 3 <= max) return; // a UTF-16 unit never takes more than 3 bytes in UTF-8
  const size = new TextEncoder().encode(text).byteLength;
  if (size > max) {
    throw new HttpError(
      413,
      "value_too_large",
      `Field "${field}" is ${size} bytes of JSON; the limit is ${max}`,
      { field, max_bytes: max },
    );
  }
}

/** The answer to a storage failure the client can wait out or an operator can fix, or null. */
export function storageError(err: unknown): HttpError | null {
  const fault = storageFault(err);
  if (fault === "full") {
    return new HttpError(
      507,
      "insufficient_storage",
      "The server's database disk is full, so nothing was written: retry later, or (if you run this server) free disk space or raise the database's quota",
    );
  }
  if (fault === "busy") {
    return new HttpError(
      503,
      "database_busy",
      "The database stayed locked by another writer past the busy timeout, so nothing was written: retry after a second",
      { retry_after: 1 },
      { "Retry-After": "1" },
    );
  }
  return null;
}

/** The answer to a request that arrives while the server stops. */
export function stoppingError(): HttpError {
  return new HttpError(
    503,
    "server_stopping",
    "The server is stopping: retry in a moment",
    { retry_after: 1 },
    { "Retry-After": "1" },
  );
}
