// A typed agent-sync client on openapi-fetch: typed calls, safe retries, and the two loops every agent writes.
// Runtime-neutral: it uses only web-standard APIs (fetch, Request, AbortSignal, crypto.randomUUID,
// setTimeout), so it runs in Deno, Node 20+ and browsers.
import createFetchClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./api.d.ts";

export type { components, paths };
export type Message = components["schemas"]["Message"];
export type Change = components["schemas"]["Change"];
export type Agent = components["schemas"]["Agent"];
export type ErrorBody = components["schemas"]["Error"];

/** An answer that is not a success, with the service's error body (`error`, `message`, `status`). */
export class ApiError extends Error {
  readonly code: string;
  constructor(readonly status: number, readonly body: unknown) {
    const err = typeof body === "object" && body !== null ? body as Partial<ErrorBody> : {};
    super(err.message ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.code = err.error ?? `http_${status}`;
  }
}

/** The data of a typed call's answer, or throws its error as an `ApiError`. */
export function ok<T>(answer: { data?: T; error?: unknown; response: Response }): T {
  if (!answer.response.ok || answer.data === undefined) {
    throw new ApiError(answer.response.status, answer.error);
  }
  return answer.data;
}

export interface RetryOptions {
  /** Retries after the first attempt (default 5). */
  retries?: number;
  /** The first backoff, doubled on each retry, with jitter (default 200 ms). */
  baseDelayMs?: number;
  /** The longest wait between two attempts, `Retry-After` included (default 30 s). */
  maxDelayMs?: number;
}

type Fetch = (request: Request) => Promise<Response>;

const WRITES = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `Retry-After` in milliseconds (seconds or an HTTP date), or null when absent. */
function retryAfterMs(res: Response): number | null {
  const raw = res.headers.get("retry-after");
  if (raw === null) return null;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

/** Whether an answer is worth sending again: 429, 5xx, or a 409 that says when to retry. */
function retryable(res: Response): boolean {
  return res.status === 429 || res.status >= 500 ||
    (res.status === 409 && res.headers.has("retry-after"));
}

/**
 * Wraps `fetch` so that network errors, 5xx and 429 (after its `Retry-After`) are retried.
 * Every write carries an `Idempotency-Key` (a random UUID unless the caller set one), the same
 * on every attempt, so the server applies it once and replays its first answer to a retry.
 */
export function retryingFetch(base: Fetch = (r) => fetch(r), options: RetryOptions = {}): Fetch {
  const { retries = 5, baseDelayMs = 200, maxDelayMs = 30_000 } = options;
  return async (request) => {
    const headers = new Headers(request.headers);
    if (WRITES.has(request.method) && !headers.has("idempotency-key")) {
      headers.set("idempotency-key", crypto.randomUUID());
    }
    // Read once, so that every attempt sends the same bytes with a Content-Length.
    const body = request.body ? await request.arrayBuffer() : undefined;
    const { url, method, signal } = request;
    for (let attempt = 0;; attempt++) {
      const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt) * (0.5 + Math.random() / 2);
      let res: Response;
      try {
        res = await base(new Request(url, { method, headers, body, signal }));
      } catch (err) {
        if (signal.aborted || attempt >= retries) throw err;
        await sleep(backoff, signal);
        continue;
      }
      if (!retryable(res) || attempt >= retries) return res;
      await res.body?.cancel();
      await sleep(Math.min(maxDelayMs, retryAfterMs(res) ?? backoff), signal);
    }
  };
}

export interface ClientOptions {
  /** The server, e.g. `https://sync.example.com`. */
  baseUrl: string;
  /** An agent, room or view token; none in open mode. */
  token?: string;
  /** The fetch to send requests with (default: the global one). */
  fetch?: Fetch;
  retry?: RetryOptions;
}

export interface ChangesOptions {
  /** The cursor to start after: a `rev` seen before, or 0 for everything (default). */
  after?: number;
  /** Seconds each request waits for a change (default 25; the server caps it). */
  wait?: number;
  /** Changes per page (the server's default when absent). */
  limit?: number;
  /** Ends the iteration, also in the middle of a wait. */
  signal?: AbortSignal;
}

export interface ClaimOptions {
  /** The kind of message to claim (default `task`). */
  kind?: string;
  /** Your agent id: skips tasks addressed to another agent (those for everyone stay). */
  to?: string;
  /** Seconds to wait for an open task when there is none (default 0: answer at once). */
  wait?: number;
  /** Makes the claim a lease of this many seconds. */
  ttl?: number;
  /** Who claims, when the token is the room token. */
  agent?: string;
  signal?: AbortSignal;
}

export interface AgentSyncClient {
  /** Typed calls: `api.GET("/rooms/{id}/messages", { params: { path: { id } } })`. */
  api: Client<paths>;
  /**
   * Every change of the room after a cursor, in revision order, waiting for new ones; forever,
   * until the signal aborts or the loop breaks. When retention passed the cursor (410
   * `cursor_expired`) it reads the room again from 0 and skips what it yielded already.
   */
  changes(room: string, options?: ChangesOptions): AsyncGenerator<Change>;
  /**
   * Claims the oldest open task no one holds, trying the next when another agent wins one
   * (409); null when there is none, after waiting up to `wait` seconds for one.
   */
  claimNext(room: string, options?: ClaimOptions): Promise<Message | null>;
}

/** A client for one server and token. */
export function createClient(options: ClientOptions): AgentSyncClient {
  const send = retryingFetch(options.fetch, options.retry);
  const api = createFetchClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
    fetch: send,
  });

  async function* changes(room: string, o: ChangesOptions = {}): AsyncGenerator<Change> {
    let seen = o.after ?? 0;
    let after = seen;
    while (!o.signal?.aborted) {
      let answer;
      try {
        answer = await api.GET("/rooms/{id}/changes", {
          params: {
            path: { id: room },
            query: {
              after,
              wait: o.wait ?? 25,
              ...(o.limit ? { limit: o.limit } : {}),
            },
          },
          signal: o.signal,
        });
      } catch (err) {
        if (o.signal?.aborted) return;
        throw err;
      }
      const { status } = answer.response;
      if (status === 410) {
        after = 0; // retention passed the cursor: agents and state are kept in full from 0
        continue;
      }
      if (status === 429) {
        try {
          await sleep(retryAfterMs(answer.response) ?? 1000, o.signal);
        } catch {
          return;
        }
        continue;
      }
      const page = ok(answer);
      // The same route streams server-sent events when asked to; this loop asks for JSON.
      if (typeof page === "string") throw new Error("Expected JSON from /changes");
      for (const change of page.changes) {
        if (change.rev <= seen) continue;
        seen = change.rev;
        yield change;
      }
      after = page.next;
    }
  }

  async function claimNext(room: string, o: ClaimOptions = {}): Promise<Message | null> {
    const deadline = Date.now() + (o.wait ?? 0) * 1000;
    let after = 0;
    while (true) {
      const left = Math.min(25, (deadline - Date.now()) / 1000);
      const open = ok(
        await api.GET("/rooms/{id}/messages", {
          params: {
            path: { id: room },
            query: {
              kind: o.kind ?? "task",
              ...(o.to ? { to: o.to } : {}),
              unclaimed: true,
              after,
              limit: 20,
              ...(left > 0.05 ? { wait: Number(left.toFixed(2)) } : {}),
            },
          },
          signal: o.signal,
        }),
      );
      for (const task of open) {
        const claimed = await api.POST("/rooms/{id}/messages/{msg_id}/claim", {
          params: { path: { id: room, msg_id: task.id } },
          body: { ...(o.agent ? { agent: o.agent } : {}), ...(o.ttl ? { ttl: o.ttl } : {}) },
          signal: o.signal,
        });
        // 409: another agent won it; 404: retention removed it since the listing.
        if (claimed.response.status === 409 || claimed.response.status === 404) continue;
        return ok(claimed);
      }
      if (open.length > 0) after = open[open.length - 1].id;
      else if (Date.now() >= deadline) return null;
    }
  }

  return { api, changes, claimNext };
}
