// Test harness: a fresh service per test on each storage driver, and small request helpers.
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
