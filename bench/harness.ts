// Bench plumbing: pinned processes, servers started as `deno task start` does, wrk and raw runs.
import { freePort, startArgs } from "../tests/servers.ts";
import type { Fixture } from "./seed.ts";

export const ROOT = new URL("../", import.meta.url).pathname;
export const BENCH = new URL("./", import.meta.url).pathname;
export const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
export const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 2);
export const CONNECTIONS = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 16);
export const SYNCHRONOUS = (Deno.env.get("BENCH_SYNCHRONOUS") ?? "NORMAL").toUpperCase() as
  | "NORMAL"
  | "FULL";
/** The server and the raw loops run here; the load generators on LOAD_CORE. */
export const SERVER_CORE = "0";
export const LOAD_CORE = "1";
const DENO_FLAGS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-ffi"];

/** One measured run: a rate, and the CPU time the measured process spent per operation. */
export interface Measure {
  rate: number;
  /** µs of CPU (user + system, all threads) per operation. */
  cpuUs: number;
  p50?: string;
  p99?: string;
  rowsPerOp?: number;
  walBytes?: number;
}

export async function output(cmd: string[], env: Record<string, string> = {}): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    cwd: ROOT,
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd.join(" ")} failed: ${text}${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

const running = new Set<Deno.ChildProcess>();

/** Kills whatever server is still running (after a failure). */
export async function killAll() {
  for (const child of running) {
    child.kill("SIGKILL");
    await child.status;
  }
  running.clear();
}

export interface Server {
  pid: number;
  base: string;
  port: number;
  stop: () => Promise<void>;
}

async function waitReady(base: string, path: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(base + path);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${base} did not come up`);
}

/** Starts `cmd` pinned to the server core with PORT set, once `path` answers 200. */
export async function spawnServer(
  cmd: string[],
  env: Record<string, string>,
  path: string,
): Promise<Server> {
  const port = freePort();
  const child = new Deno.Command("taskset", {
    args: ["-c", SERVER_CORE, ...cmd],
    cwd: ROOT,
    env: { ...env, PORT: String(port), SYNC_HOST: "127.0.0.1" },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  running.add(child);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base, path);
  return {
    pid: child.pid,
    base,
    port,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      running.delete(child);
    },
  };
}

/** The agent-sync server, started with `deno task start`'s command line on a fixture. */
export async function startService(
  f: Fixture,
  extra: Record<string, string> = {},
): Promise<Server> {
  return await spawnServer([Deno.execPath(), ...await startArgs()], {
    SYNC_DB: f.path,
    SYNC_AUTH: "token",
    SYNC_RATE_LIMIT: "off",
    SYNC_MAX_MESSAGES: "0",
    SYNC_SYNCHRONOUS: SYNCHRONOUS,
    ...extra,
  }, "/health");
}

/** bare Deno.serve doing only the service's own storage call (floor_server.ts), on a fixture. */
export async function startFloor(f: Fixture, synchronous = SYNCHRONOUS): Promise<Server> {
  return await spawnServer(
    [
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-ffi",
      "--allow-sys",
      `${BENCH}floor_server.ts`,
    ],
    { SYNC_DB: f.path, SYNC_SYNCHRONOUS: synchronous },
    "/health",
  );
}

/** The bare Deno.serve ceiling. */
export async function startBare(): Promise<Server> {
  return await spawnServer(
    [Deno.execPath(), "run", "--allow-net", "--allow-env", `${BENCH}bare_server.ts`],
    {},
    "/",
  );
}

/** A process's resident memory now and at its peak, in KB (from /proc/<pid>/status). */
export async function rss(pid: number): Promise<{ now: number; peak: number }> {
  const status = await output(["cat", `/proc/${pid}/status`]);
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { now: kb("VmRSS"), peak: kb("VmHWM") };
}

/** Clock ticks (1/100 s) of CPU the process has used, user + system. */
async function cpuTicks(pid: number): Promise<number> {
  const fields = (await output(["cat", `/proc/${pid}/stat`])).replace(/^.*\) /, "").split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

export type Task = () => Promise<Measure>;

/**
 * A wrk run on the load core (the first one after a 1 s warm-up unless the server is warm
 * already); fails on any non-2xx.
 */
export function wrkTask(
  server: Server,
  path: string,
  script?: string,
  env: Record<string, string> = {},
  { connections = CONNECTIONS, warmup = true, seconds = SECONDS } = {},
): Task {
  const args = (seconds: number) => [
    "taskset",
    "-c",
    LOAD_CORE,
    "wrk",
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    ...(script ? ["-s", `${BENCH}${script}`] : []),
    server.base + path,
  ];
  let warm = !warmup;
  return async () => {
    if (!warm) await output(args(1), { ...env, BENCH_RUN: crypto.randomUUID() }), warm = true;
    const ticks = await cpuTicks(server.pid);
    const text = await output(args(seconds), { ...env, BENCH_RUN: crypto.randomUUID() });
    const used = await cpuTicks(server.pid) - ticks;
    const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(text);
    const bad = num(/Non-2xx or 3xx responses: (\d+)/) +
      (errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
    if (bad > 0) throw new Error(`${server.base + path}: ${bad} failed requests\n${text}`);
    return {
      rate: num(/Requests\/sec:\s+([\d.]+)/),
      cpuUs: used * 10_000 / Math.max(1, num(/(\d+) requests in/)),
      p50: /\s50%\s+(\S+)/.exec(text)?.[1] ?? "?",
      p99: /\s99%\s+(\S+)/.exec(text)?.[1] ?? "?",
    };
  };
}

/** The service's own statement in a loop on raw node:sqlite, on the server core. */
export function rawTask(
  mode: string,
  f: Fixture,
  after = 0,
  synchronous: string = SYNCHRONOUS,
): Task {
  return async () => {
    const r = JSON.parse(
      await output([
        "taskset",
        "-c",
        SERVER_CORE,
        Deno.execPath(),
        "run",
        ...DENO_FLAGS,
        `${BENCH}raw_sqlite.ts`,
        mode,
        f.path,
        String(SECONDS),
        "1",
        f.roomId,
        synchronous,
        String(after),
      ]),
    );
    return { rate: r.rate, cpuUs: r.cpuUsPerOp, rowsPerOp: r.rowsPerOp, walBytes: r.walBytes };
  };
}

/**
 * Runs the tasks round-robin ROUNDS times, so a burst of other load on the machine hits every
 * side of a ratio alike; keeps each task's best rate and lowest CPU time per operation.
 */
export async function interleave(
  tasks: Record<string, Task>,
  after?: () => Promise<void>,
): Promise<Record<string, Measure>> {
  const best: Record<string, Measure> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const [key, task] of Object.entries(tasks)) {
      const m = await task();
      const b = best[key];
      best[key] = !b || m.rate > b.rate
        ? { ...m, cpuUs: Math.min(m.cpuUs, b?.cpuUs ?? Infinity) }
        : {
          ...b,
          cpuUs: Math.min(m.cpuUs, b.cpuUs),
        };
      best[key].walBytes = Math.max(m.walBytes ?? 0, b?.walBytes ?? 0);
      await after?.();
    }
  }
  return best;
}

/** A process in the load core running one of the bench's client scripts; its JSON output. */
export async function client(script: string, args: string[]) {
  return JSON.parse(
    await output([
      "taskset",
      "-c",
      LOAD_CORE,
      Deno.execPath(),
      "run",
      "--allow-all", // reading /proc/<pid>/status needs it
      `${BENCH}${script}`,
      ...args,
    ]),
  );
}

export async function fileSize(path: string): Promise<number> {
  return await Deno.stat(path).then((s) => s.size).catch(() => 0);
}

export function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
