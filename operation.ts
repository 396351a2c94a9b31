// An operation defined once, as data: method, path, who may call it, zod schemas in and out.
// The REST routes are registered from these; the OpenAPI document, MCP tools and SKILL.md's
// route table are generated from them.
import type { Context, Hono } from "npm:hono@^4.13.19";
import { z } from "npm:zod@^4.6.7";
import type { Access, Api, Env } from "./context.ts";
import { check, HttpError } from "./http.ts";
import { ErrorSchema } from "./models.ts";

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * Who may call: anyone (`public`), any token of the room (`read`), any but a view token
 * (`write`), the room token or admin (`owner`); `custom` checks in `authorize`/the handler.
 */
export type Who = "public" | "read" | "write" | "owner" | "custom";

export interface Answer {
  description: string;
  /** The JSON body's schema; absent for non-JSON answers. */
  schema?: z.ZodType;
  /** For non-JSON answers, e.g. `text/markdown`. */
  contentType?: string;
  /** With `Accept: text/event-stream`, the same answer streams as server-sent events. */
  stream?: boolean;
}

// deno-lint-ignore no-explicit-any
type AnyObject = z.ZodObject<any>;
type Infer<T> = T extends z.ZodType ? z.infer<T> : undefined;

export interface Input<P, Q, B> {
  params: Infer<P>;
  query: Infer<Q>;
  body: Infer<B>;
  /** The room and who acts in it, for `read`, `write` and `owner` operations. */
  access: Access;
}

export interface OperationDef<
  P extends AnyObject | undefined,
  Q extends AnyObject | undefined,
  B extends z.ZodType | undefined,
> {
  /** The operationId and MCP tool base name, e.g. `postMessage`. */
  name: string;
  method: Method;
  /** Hono's path syntax, e.g. `/rooms/:id/messages`. */
  path: string;
  summary: string;
  description?: string;
  who: Who;
  params?: P;
  query?: Q;
  body?: B;
  /** The body may be left out entirely; it then counts as `{}`. */
  bodyOptional?: boolean;
  /** When the body is left out, these query parameters stand in for it (DELETE bodies). */
  bodyFromQuery?: AnyObject;
  example?: unknown;
  /** Checked before the body is read, e.g. that the caller holds the admin token. */
  authorize?: (
    c: Context<Env>,
    input: { params: Infer<P>; access: Access },
  ) => void | Promise<void>;
  answers: Record<number, Answer>;
  /** The error statuses it can give, beyond 400 (bad input) and 429 (too many requests). */
  errors: number[];
  handler: (c: Context<Env>, input: Input<P, Q, B>) => Response | Promise<Response>;
}

// deno-lint-ignore no-explicit-any
export type Operation = OperationDef<any, any, any>;

/** Declares an operation; the identity function that gives the handler its input types. */
export function operation<
  P extends AnyObject | undefined = undefined,
  Q extends AnyObject | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(def: OperationDef<P, Q, B>): Operation {
  return def;
}

const PARAM_LABELS: Record<string, string> = { msg_id: "message id" };

function parseParams(c: Context<Env>, schema: AnyObject, names: string[]) {
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const value = c.req.param(name) ?? "";
    const r = (schema.shape[name] as z.ZodType).safeParse(value);
    if (!r.success) {
      throw new HttpError(
        400,
        "invalid_path",
        `Invalid ${PARAM_LABELS[name] ?? name} "${value}": ${r.error.issues[0].message}`,
      );
    }
    out[name] = r.data;
  }
  return out;
}

/** Registers each operation as a route of `app`: params, access, query and body checked first. */
export function mount(app: Hono<Env>, api: Api, ops: Operation[]) {
  for (const op of ops) {
    const names = op.params ? Object.keys(op.params.shape) : [];
    const roomFirst = names.filter((n) => n === "id");
    const rest = names.filter((n) => n !== "id");
    app.on(op.method, op.path, async (c) => {
      let params: Record<string, unknown> = {};
      let access = undefined as unknown as Access;
      if (op.params) params = parseParams(c, op.params, roomFirst);
      if (op.who === "read") access = await api.access(c, params.id as string);
      else if (op.who === "write") access = await api.writer(c, params.id as string);
      else if (op.who === "owner") {
        access = await api.owner(c, params.id as string, `${op.method} ${op.path}`);
      }
      if (op.params) Object.assign(params, parseParams(c, op.params, rest));
      if (op.authorize) await op.authorize(c, { params, access });
      let body: unknown = undefined;
      let query: unknown = undefined;
      if (op.bodyFromQuery && !(await api.hasBody(c))) {
        body = check("query", op.bodyFromQuery, c.req.query());
      } else {
        if (op.query) query = check("query", op.query, c.req.query());
        if (op.body) {
          body = op.bodyOptional && !(await api.hasBody(c)) ? {} : await api.body(c, op.body);
        }
      }
      const res = await op.handler(c, { params, query, body, access });
      if (api.config.checkResponses) await checkAnswer(op, res);
      return res;
    });
  }
}

/** In tests: every JSON answer must match the schema its operation declares for its status. */
async function checkAnswer(op: Operation, res: Response) {
  // Errors are thrown as HttpError and checked by the app's error handler; a handler that
  // returns an error itself (MCP's JSON-RPC errors) answers in its own protocol's shape.
  if (res.status >= 400) return;
  if (!(res.headers.get("content-type") ?? "").includes("application/json")) return;
  const declared = op.answers[res.status];
  if (!declared) throw new Error(`${op.name} answered ${res.status}, which it does not declare`);
  if (!declared.schema) return;
  const r = declared.schema.safeParse(await res.clone().json());
  if (!r.success) {
    throw new Error(
      `${op.name} answered ${res.status} with a body its schema refuses: ${
        JSON.stringify(r.error.issues.slice(0, 3))
      }`,
    );
  }
}

/** Error answers are checked too, by the app's error handler. */
export function checkError(body: unknown) {
  const r = ErrorSchema.safeParse(body);
  if (!r.success) throw new Error(`An error body does not match the Error schema`);
}
