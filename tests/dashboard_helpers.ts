// The browser-test harness: a real server on 127.0.0.1 and headless Chromium, one page per test.
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { createService, type Service } from "../main.ts";
import { testConfig } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
export const WAIT = { timeout: 5000 };

// deno-lint-ignore no-explicit-any
export type Json = any;

/** A real HTTP server on 127.0.0.1 serving a fresh service; `kill` drops it like a crash. */
export class Server {
  base: string;
  #server: Deno.HttpServer;
  #kill!: () => void;
  #pending = new Set<Promise<Response>>();

  constructor(readonly service: Service, port = 0) {
    const killed = new Promise<Response>((resolve) => {
      this.#kill = () => resolve(new Response("down", { status: 503 }));
    });
    this.#server = Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, (req, info) => {
      const answer = Promise.resolve(service.fetch(req, info))
        .catch(() => new Response(null, { status: 503 }))
        .finally(() => this.#pending.delete(answer));
      this.#pending.add(answer);
      return Promise.race([answer, killed]);
    });
    this.base = `http://127.0.0.1:${(this.#server.addr as Deno.NetAddr).port}`;
  }

  get port(): number {
    return (this.#server.addr as Deno.NetAddr).port;
  }

  async request(method: string, path: string, token?: string, body?: unknown) {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() as Json };
  }

  /** Sends a request that must succeed and returns its body. */
  async ok(method: string, path: string, token?: string, body?: unknown): Promise<Json> {
    const res = await this.request(method, path, token, body);
    if (res.status >= 300) {
      throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body;
  }

  room(
    body: Record<string, unknown> = {},
  ): Promise<{ id: string; token: string; view_token: string }> {
    return this.ok("POST", "/rooms", undefined, body);
  }

  agent(room: { id: string; token: string }, id: string, extra: Record<string, unknown> = {}) {
    return this.ok("POST", `/rooms/${room.id}/agents`, room.token, { id, name: id, ...extra });
  }

  /** Stops answering at once (held requests get a 503), stops listening, and lets handlers end. */
  async stop() {
    this.#kill();
    await this.#server.shutdown();
    const timeout = new Promise((r) => setTimeout(r, 3000));
    await Promise.race([Promise.allSettled([...this.#pending]), timeout]);
  }
}

export interface Ctx {
  server: Server;
  browser: Browser;
  page: Page;
  /** Page errors and CSP violations seen so far; every test ends with none. */
  problems: string[];
  dialogs: string[];
  /** Another page, watched for errors and dialogs like the first. */
  newPage: () => Promise<Page>;
  open: (room: { id: string }, token?: string) => Promise<void>;
}

/** Registers a browser test: a real server on a fresh in-memory database and one page. */
export function browserTest(
  name: string,
  fn: (t: Ctx) => Promise<void>,
  env: Record<string, string> = {},
  dbUrl = ":memory:",
) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      try {
        await Deno.stat(CHROMIUM);
      } catch {
        throw new Error(
          `Chromium is not at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium); CI's .ci/run installs it`,
        );
      }
      const config = testConfig(env);
      config.db = { ...config.db, url: dbUrl, driver: "embedded" };
      const service = createService(config);
      const server = new Server(service);
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
      try {
        const problems: string[] = [];
        const dialogs: string[] = [];
        const newPage = async () => {
          const page = await browser.newPage();
          page.setDefaultTimeout(5000);
          page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
          page.on("console", (msg) => {
            if (/Content Security Policy/i.test(msg.text())) problems.push(msg.text());
          });
          page.on("dialog", (d) => {
            dialogs.push(d.message());
            d.dismiss().catch(() => {});
          });
          return page;
        };
        const page = await newPage();
        const open = async (room: { id: string }, token?: string) => {
          await page.goto(
            `${server.base}/?room=${encodeURIComponent(room.id)}${token ? `#token=${token}` : ""}`,
          );
          await page.locator("#conn[data-state=live]").waitFor(WAIT);
        };
        await fn({ server, browser, page, problems, dialogs, newPage, open });
        assert.deepEqual(problems, [], "the page ran without errors or CSP violations");
        assert.deepEqual(dialogs, [], "the page opened no dialogs");
      } finally {
        await browser.close();
        await server.stop();
        await service.close();
      }
    },
  });
}

export const text = (page: Page, selector: string) => page.locator(selector).innerText(WAIT);
