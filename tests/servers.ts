// Real server processes for tests, started as `deno task start` does, on a database file.
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

/** The `deno task start` command line, run with this Deno binary. */
export async function startArgs(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const [deno, ...args] = config.tasks.start.split(/\s+/);
  assert.equal(deno, "deno");
  return args;
}

/** A port nothing listens on now, on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Reads a server's stdout until its startup line (`marker`) and returns what it printed; then
 * keeps draining it, so the server never blocks on a full pipe.
 */
export async function untilListening(
  child: Deno.ChildProcess,
  marker = "listening",
  more = () => "",
): Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening: ${out}${more()}`);
    out += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  return out;
}

export interface Server {
  url: string;
  process: Deno.ChildProcess;
  /** What it printed up to its startup line. */
  output: string;
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Starts the server on `dbPath` and waits for its startup line. */
export async function startServer(
  dbPath: string,
  env: Record<string, string> = {},
): Promise<Server> {
  const port = freePort();
  const process = new Deno.Command(Deno.execPath(), {
    args: await startArgs(),
    cwd: ROOT,
    env: { PORT: String(port), SYNC_DB: dbPath, SYNC_HOST: "127.0.0.1", ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = await untilListening(process);
  assert.match(out, /auth: token/);
  return {
    url: `http://127.0.0.1:${port}`,
    process,
    output: out,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        process.kill(signal);
      } catch { /* already gone */ }
      await process.status;
    },
  };
}

export async function call(
  base: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

export function serverTest(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
