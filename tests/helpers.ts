// Test harness: a fresh service per test on each storage driver, and small request helpers.
import assert from "node:assert/strict";
import { type Config, loadConfig } from "../config.ts";
import { createService, type Service } from "../main.ts";

/** The resource modules, for tests that read the source. */
export const ROUTE_FILES = [...Deno.readDirSync(new URL("../routes/", import.meta.url))]
  .map((e) => `routes/${e.name}`).sort();

export const DRIVERS = ["embedded", "libsql"] as const;
export type Driver = typeof DRIVERS[number];

export interface Res {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  headers: Headers;
  text: string;
}

export interface ReqOptions {
  body?: unknown;
  /** A raw body string sent as is (for malformed JSON). */
  raw?: string;
  token?: string;
  headers?: Record<string, string>;
}

/** One service on a fresh database, with helpers that speak its API in-process. */
export class TestApp {
  constructor(readonly service: Service, readonly driver: Driver) {}

  async request(method: string, path: string, opts: ReqOptions = {}): Promise<Res> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (
      body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === "content-type")
    ) {
      headers["content-type"] = "application/json";
    }
    const res = await this.service.fetch(
      new Request(`http://test${path}`, { method, headers, body }),
    );
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch { /* not JSON */ }
    return { status: res.status, body: parsed, headers: res.headers, text };
  }

  /** Creates a room and returns its body (with `token` and `view_token` in token mode). */
  async room(body: Record<string, unknown> = {}) {
    const res = await this.request("POST", "/rooms", { body });
    if (res.status !== 201) throw new Error(`room: ${res.status} ${res.text}`);
    return res.body as { id: string; token: string; view_token: string; rev: number };
  }

  /** Registers an agent with the room token and returns its body (with its `token`). */
  async agent(
    room: { id: string; token?: string },
    id: string,
    extra: Record<string, unknown> = {},
  ) {
    const res = await this.request("POST", `/rooms/${room.id}/agents`, {
      token: room.token,
      body: { id, name: id, ...extra },
    });
    if (res.status !== 201) throw new Error(`agent: ${res.status} ${res.text}`);
    return res.body as { id: string; token: string };
  }
}

/** Test settings: rate limits off unless a test turns them on. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ SYNC_RATE_LIMIT: "off", SYNC_CHECK_RESPONSES: "1", ...env });
}

/** Starts a service on a fresh database of the given driver. */
export async function makeApp(driver: Driver, env: Record<string, string> = {}) {
  const config = testConfig(env);
  let dir: string | undefined;
  if (driver === "libsql") {
    dir = await Deno.makeTempDir();
    config.db = { ...config.db, url: `${dir}/test.db`, driver: "libsql" };
  } else {
    config.db = { ...config.db, url: ":memory:", driver: "embedded" };
  }
  const app = new TestApp(createService(config), driver);
  return {
    app,
    async [Symbol.asyncDispose]() {
      await app.service.close();
      if (dir) await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Registers `name` once per driver, each run on its own fresh database. */
export function appTest(
  name: string,
  fn: (app: TestApp) => Promise<void>,
  env: Record<string, string> = {},
) {
  for (const driver of DRIVERS) {
    Deno.test({
      name: `${name} [${driver}]`,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async () => {
        await using t = await makeApp(driver, env);
        await fn(t.app);
      },
    });
  }
}

// ---------------------------------------------------------------- room helpers
// Shared by the coordination, expiry and digest tests: each asserts the status it expects.

export type Room = { id: string; token: string };

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Posts a message (201) and returns it. */
export async function post(app: TestApp, room: Room, body: unknown, token = room.token) {
  const res = await app.request("POST", `/rooms/${room.id}/messages`, { token, body });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

/** Claims message `id` for `agent` with the room token (200), with a lease of `ttl` seconds. */
export async function claim(app: TestApp, room: Room, id: number, agent: string, ttl?: number) {
  const res = await app.request("POST", `/rooms/${room.id}/messages/${id}/claim`, {
    token: room.token,
    body: ttl === undefined ? { agent } : { agent, ttl },
  });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** Writes a key with the room token (200). */
export async function put(app: TestApp, room: Room, body: unknown) {
  const res = await app.request("PUT", `/rooms/${room.id}/state`, { token: room.token, body });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** Waits until the service holds `n` blocked requests, so a write is sure to come after them. */
export async function held(app: TestApp, n: number) {
  for (let i = 0; i < 400 && app.service.waiters.size !== n; i++) await sleep(5);
  assert.equal(app.service.waiters.size, n, "requests held");
}

/** Fails with `what` if `promise` has not settled after `ms` (a generous bound, not a speed test). */
export function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}
