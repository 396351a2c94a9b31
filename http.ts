// The edge of the API: one JSON error shape, bounded body reading and zod validation with hints.
import type { Context } from "npm:hono@^4.13.19";
import type { ContentfulStatusCode } from "npm:hono@^4.13.19/utils/http-status";
import { z } from "npm:zod@^4.6.7";

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

/** Ids in paths and bodies: no control characters, spaces or URL delimiters. */
export function idSchema(max: number) {
  return z.string()
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters`)
    .regex(
      /^[\p{L}\p{N}._:@~+-]+$/u,
      "may contain only letters, digits and . _ : @ ~ + -",
    );
}

export function textSchema(max: number) {
  return z.string().max(max, `must be at most ${max} characters`).refine(
    // deno-lint-ignore no-control-regex
    (s) => !/[\x00-\x08\x0b-\x1f\x7f]/.test(s) && s.isWellFormed(),
    "must not contain control characters or unpaired surrogates",
  );
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

/** Reads the request body as UTF-8 text, at most `maxBytes`, chunked or not; read once, kept. */
export async function readText(req: Request, maxBytes: number): Promise<string> {
  const kept = bodies.get(req);
  if (kept !== undefined) return kept;
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  let text = "";
  if (req.body) {
    let all: Uint8Array;
    if (declared >= 0) {
      // A declared length, checked above: one read, no stream loop (much cheaper in Deno).
      all = new Uint8Array(await req.arrayBuffer());
      if (all.byteLength > maxBytes) throw tooLarge(maxBytes);
    } else {
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of req.body) {
        size += chunk.byteLength;
        if (size > maxBytes) throw tooLarge(maxBytes);
        chunks.push(chunk);
      }
      all = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) all.set(chunk, offset), offset += chunk.byteLength;
    }
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(all);
    } catch {
      throw new HttpError(400, "invalid_body", "Cannot parse body: expected UTF-8 text");
    }
  }
  bodies.set(req, text);
  return text;
}

/** Reads the request body as a JSON object. */
export async function readJson(c: Context, maxBytes: number, maxDepth: number): Promise<unknown> {
  const type = c.req.header("content-type");
  if (type && !/^application\/([\w.+-]*\+)?json\b/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `Cannot read body of type "${type}": send JSON with Content-Type: application/json`,
    );
  }
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
    // Numbers beyond a double would silently become null when stored: refuse them instead.
    value = /\d[eE][+]?\d{3}|\d{309}/.test(text) ? JSON.parse(text, finiteOnly) : JSON.parse(text);
  } catch (err) {
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

function finiteOnly(_key: string, v: unknown) {
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new Error("a number is too large to represent (beyond ±1.8e308)");
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
