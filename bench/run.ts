// `deno task bench`: the real server against this machine's ceilings, as ratios from one run.
import {
  BENCH,
  client,
  CONNECTIONS,
  fileSize,
  interleave,
  killAll,
  type Measure,
  output,
  quantile,
  rawTask,
  ROUNDS,
  SECONDS,
  type Server,
  startBare,
  startService,
  SYNCHRONOUS,
  wrkTask,
} from "./harness.ts";
import { createFixture } from "./seed.ts";

const BIG = Number(Deno.env.get("BENCH_BIG") ?? 1_000_000);
const SMALL = 10_000;
const WAITERS = Number(Deno.env.get("BENCH_WAITERS") ?? 5000);
const SAMPLES = Number(Deno.env.get("BENCH_SAMPLES") ?? 100);
const WAL_LIMIT = 64 * 1024 * 1024;

const tmp = await Deno.makeTempDir({ prefix: "agent-sync-bench-" });
const started = Date.now();
const log = (line: string) =>
  console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}`);
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

const load0 = Deno.loadavg();
const nproc = (await output(["nproc"])).trim();
const cpu = /model name\s*:\s*(.*)/.exec(await output(["cat", "/proc/cpuinfo"]))?.[1];
const wrkVersion = new TextDecoder().decode(
  (await new Deno.Command("wrk", { args: ["-v"], stderr: "piped" }).output()).stdout,
).split("\n")[0].replace(/ Copyright.*/, "").trim();
const ulimit = (await output(["sh", "-c", "ulimit -n"])).trim();

const m: Record<string, Measure> = {};
let serverWal = 0;

try {
  // ---------------------------------------------------------------- HTTP ceiling, middleware
  log("bare Deno.serve vs GET /health, rate limiter off and on");
  const write = await createFixture(`${tmp}/write.db`, 0, SYNCHRONOUS);
  const token = { BENCH_TOKEN: write.agentToken };
  const bare = await startBare();
  const off = await startService(write);
  const on = await startService(write, {
    SYNC_RATE_LIMIT: "1000000000",
    SYNC_RATE_BURST: "1000000000",
  });
  Object.assign(
    m,
    await interleave({
      bare: wrkTask(bare, "/"),
      health: wrkTask(off, "/health"),
      healthLimited: wrkTask(on, "/health"),
    }),
  );
  await bare.stop();

  // ---------------------------------------------------------------- writes
  log("POST messages and PUT state vs the raw INSERT and upsert");
  const rawDb = await createFixture(`${tmp}/raw.db`, 0, SYNCHRONOUS);
  const messages = `/rooms/${write.roomId}/messages`;
  Object.assign(
    m,
    await interleave({
      post: wrkTask(off, messages, "post.lua", token),
      rawInsert: rawTask("insert", rawDb),
      postLimited: wrkTask(on, messages, "post.lua", token),
      put: wrkTask(off, `/rooms/${write.roomId}/state`, "put.lua", token),
      rawUpsert: rawTask("upsert", rawDb),
    }, async () => {
      serverWal = Math.max(serverWal, await fileSize(`${write.path}-wal`));
    }),
  );
  await off.stop();
  await on.stop();

  // ---------------------------------------------------------------- polls
  const servers: Server[] = [];
  const reads: Record<string, ReturnType<typeof wrkTask>> = {};
  for (const [name, n] of [["small", SMALL], ["big", BIG]] as const) {
    log(`seeding ${fmt(n)} messages`);
    const t = performance.now();
    const f = await createFixture(`${tmp}/${name}.db`, n, SYNCHRONOUS);
    log(`seeded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const server = await startService(f);
    servers.push(server);
    const env = { BENCH_TOKEN: f.agentToken, BENCH_PATH: `/rooms/${f.roomId}/messages` };
    reads[name] = wrkTask(server, env.BENCH_PATH, "get.lua", {
      ...env,
      BENCH_MAX_AFTER: String(f.rev - 50),
    });
    reads[`raw_${name}`] = rawTask("select", f, f.rev - 50);
    reads[`${name}Tail`] = wrkTask(server, env.BENCH_PATH, "get.lua", {
      ...env,
      BENCH_AFTER: String(f.rev - 50),
    });
    reads[`raw_${name}Tail`] = rawTask("tail", f, f.rev - 50);
  }
  log(`GET messages with ${fmt(SMALL)} and ${fmt(BIG)} stored, and the raw SELECT`);
  Object.assign(
    m,
    await interleave({
      small: reads.small,
      big: reads.big,
      rawSmall: reads.raw_small,
      rawBig: reads.raw_big,
      smallTail: reads.smallTail,
      bigTail: reads.bigTail,
      rawSmallTail: reads.raw_smallTail,
      rawBigTail: reads.raw_bigTail,
    }),
  );
  for (const s of servers) await s.stop();
  await Deno.remove(`${tmp}/big.db`).catch(() => {});

  // ---------------------------------------------------------------- wake-ups
  log("wake-up latency, same process");
  const wake = await createFixture(`${tmp}/wake.db`, 0, SYNCHRONOUS);
  const a = await startService(wake);
  const same = await client("wake_latency.ts", [
    a.base,
    a.base,
    wake.roomId,
    wake.agentToken,
    String(SAMPLES),
    "20",
    "60",
  ]);
  log("wake-up latency, across two server processes on one database file");
  const b = await startService(wake);
  const cross = await client("wake_latency.ts", [
    a.base,
    b.base,
    wake.roomId,
    wake.agentToken,
    String(Math.max(10, Math.round(SAMPLES * 0.6))),
    "30",
    "280",
  ]);
  await a.stop();
  await b.stop();

  log(`${fmt(WAITERS)} concurrent long-polls`);
  const many = await createFixture(`${tmp}/waits.db`, 0, SYNCHRONOUS);
  const holder = await startService(many, {
    SYNC_MAX_WAITS: String(WAITERS * 2),
    SYNC_MAX_WAITS_PER_CLIENT: String(WAITERS * 2),
  });
  const held = await client("waiters.ts", [
    String(holder.port),
    many.roomId,
    many.agentToken,
    String(WAITERS),
    "3",
    String(holder.pid),
  ]);
  await holder.stop();

  // ---------------------------------------------------------------- report
  const x = (a: number, b: number) => (a / b).toFixed(2);
  const pass = (value: number, target: number) => value >= target ? "ok" : "MISSED";
  const lat = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `median ${quantile(s, 0.5).toFixed(1)} ms, p99 ${quantile(s, 0.99).toFixed(1)} ms ` +
      `(min ${s[0].toFixed(1)}, max ${s[s.length - 1].toFixed(1)}, n=${s.length})`;
  };
  const W = 46;
  const head = (name: string, unit: string) =>
    `${name.padEnd(W)}${unit.padStart(8)} ${"µs CPU".padStart(7)} ${"p50".padStart(8)} ${
      "p99".padStart(8)
    }  ratios`;
  const row = (name: string, l: Measure, vs = "") =>
    `${name.padEnd(W)}${fmt(l.rate).padStart(8)} ${l.cpuUs.toFixed(0).padStart(7)} ${
      (l.p50 ?? "").padStart(8)
    } ${(l.p99 ?? "").padStart(8)}  ${vs}`;
  const rawWal = Math.max(m.rawInsert.walBytes ?? 0, m.rawUpsert.walBytes ?? 0);
  const postRatio = m.post.rate / m.rawInsert.rate;
  const postCpu = m.rawInsert.cpuUs / m.post.cpuUs;
  const pollRatio = m.big.rate / m.small.rate;
  const tailRatio = m.bigTail.rate / m.smallTail.rate;
  const waitsOk = held.pendingAfterHold === WAITERS && held.ok === WAITERS;
  const lines = [
    `agent-sync bench, ${new Date().toISOString()}`,
    `machine: nproc ${nproc}, ${cpu}; deno ${Deno.version.deno} (v8 ${Deno.version.v8}); ` +
    `${wrkVersion}; ulimit -n ${ulimit}`,
    `load average at start ${load0.map((v) => v.toFixed(2)).join(" ")}, at end ` +
    `${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")} (other processes may share the cores)`,
    `setup: each server and raw loop pinned to core 0, each load generator to core 1;`,
    `  taskset -c 1 wrk -t1 -c${CONNECTIONS}, 1 s warm-up; every row is the best of ${ROUNDS} ` +
    `runs of ${SECONDS} s, the runs of a table interleaved round-robin so both sides of a ratio`,
    `  see the same background load. "µs CPU": CPU time (user + system, all threads) of the`,
    `  server or raw process per request, lowest run. Server: deno task start's command on a`,
    `  temp SQLite file (WAL, synchronous=${SYNCHRONOUS}), SYNC_AUTH=token with an agent token, ` +
    `SYNC_RATE_LIMIT=off, SYNC_MAX_MESSAGES=0.`,
    `  GET messages?after=N&limit=50: N random in [0, stored-50) ("random") or stored-50 ("tail").`,
    "",
    head("HTTP ceiling and middleware", "req/s"),
    row("bare Deno.serve, small JSON (ceiling a)", m.bare),
    row("GET /health", m.health, `${x(m.health.rate, m.bare.rate)} of bare`),
    row(
      "GET /health, rate limiter on",
      m.healthLimited,
      `${x(m.healthLimited.rate, m.health.rate)} of limiter off; +${
        (m.healthLimited.cpuUs - m.health.cpuUs).toFixed(0)
      } µs CPU`,
    ),
    "",
    head("writes (ceiling b: raw node:sqlite)", "req/s"),
    row(
      "POST /rooms/:id/messages",
      m.post,
      `${postRatio.toFixed(2)} of raw INSERT (by CPU ${postCpu.toFixed(2)}); ` +
        `${x(m.post.rate, m.bare.rate)} of bare`,
    ),
    row(
      "POST /rooms/:id/messages, rate limiter on",
      m.postLimited,
      `${x(m.postLimited.rate, m.post.rate)} of limiter off`,
    ),
    row("raw INSERT message (same SQL, autocommit)", m.rawInsert),
    row(
      "PUT /rooms/:id/state (100 keys)",
      m.put,
      `${x(m.put.rate, m.rawUpsert.rate)} of raw upsert (by CPU ${
        x(m.rawUpsert.cpuUs, m.put.cpuUs)
      }); ${x(m.put.rate, m.bare.rate)} of bare`,
    ),
    row("raw state upsert (same SQL)", m.rawUpsert),
    "",
    head("polls: GET messages?after=N&limit=50", "req/s"),
    row(
      `${fmt(SMALL)} stored, random N`,
      m.small,
      `${x(m.small.rate, m.rawSmall.rate)} of raw SELECT`,
    ),
    row(
      `${fmt(BIG)} stored, random N`,
      m.big,
      `${x(m.big.rate, m.rawBig.rate)} of raw SELECT; ${pollRatio.toFixed(2)} of ${fmt(SMALL)}`,
    ),
    row(
      `${fmt(SMALL)} stored, tail`,
      m.smallTail,
      `${x(m.smallTail.rate, m.rawSmallTail.rate)} of raw SELECT`,
    ),
    row(
      `${fmt(BIG)} stored, tail`,
      m.bigTail,
      `${x(m.bigTail.rate, m.rawBigTail.rate)} of raw SELECT; ${tailRatio.toFixed(2)} of ${
        fmt(SMALL)
      }`,
    ),
    row(`raw SELECT, ${fmt(SMALL)} stored, random N`, m.rawSmall),
    row(`raw SELECT, ${fmt(BIG)} stored, random N`, m.rawBig),
    row(`raw SELECT, ${fmt(SMALL)} stored, tail`, m.rawSmallTail),
    row(`raw SELECT, ${fmt(BIG)} stored, tail`, m.rawBigTail),
    "",
    `WAL file: server ${mb(serverWal)} at most after the write runs, raw loops ${mb(rawWal)}` +
    (Math.max(serverWal, rawWal) > WAL_LIMIT ? "  OVER 64 MB: NOT BOUNDED" : ""),
    "",
    "wake-up of a blocking wait (GET /changes?wait=10), from just before the write is sent",
    `  same process:      ${lat(same.latencies)}`,
    `                     (the write's own response: median ${
      quantile([...same.writes].sort((a, b) => a - b), 0.5).toFixed(1)
    } ms; woke early ${same.early}, wrong change ${same.wrong})`,
    `  across processes:  ${lat(cross.latencies)}`,
    `                     (waiter on server A, write on server B, same file; A polls every ` +
    `250 ms; woke early ${cross.early}, wrong change ${cross.wrong})`,
    "",
    `concurrent long-polls: GET /changes?wait=25 on raw HTTP/1.1 connections, one server`,
    `  opened ${fmt(held.opened)} of ${fmt(held.count)} in ${(held.openMs / 1000).toFixed(1)} s ` +
    `(connect errors ${held.connectErrors}); pending after 3 s: ${fmt(held.pendingAfterHold)}, ` +
    `after the RSS samples: ${fmt(held.stillPending)}`,
    `  server RSS ${(held.rssBefore / 1024).toFixed(1)} MB before, ${
      (held.rssHolding / 1024).toFixed(1)
    } MB holding them (${((held.rssHolding - held.rssBefore) / held.count).toFixed(1)} KB each)`,
    `  one POST (${held.writeStatus}, ${held.writeMs.toFixed(0)} ms) woke them: ${fmt(held.ok)} ` +
    `answered 200 with the new message (${JSON.stringify(held.statuses)}); median ${
      held.wakeMedianMs?.toFixed(0)
    } ms, all within ${held.wakeAllMs?.toFixed(0)} ms${held.timedOut ? " (TIMED OUT, 30 s)" : ""}`,
    "",
    "targets",
    `  POST >= 0.35 of raw INSERT (synchronous=${SYNCHRONOUS}):  ${postRatio.toFixed(2)} ${
      pass(postRatio, 0.35)
    }  (by CPU time per op: ${postCpu.toFixed(2)})`,
    `  poll at ${fmt(BIG)} >= 0.80 of ${fmt(SMALL)}:  random N ${pollRatio.toFixed(2)} ${
      pass(pollRatio, 0.8)
    }, tail ${tailRatio.toFixed(2)} ${pass(tailRatio, 0.8)}`,
    `  WAL bounded (< 64 MB):  ${mb(Math.max(serverWal, rawWal))} ${
      Math.max(serverWal, rawWal) <= WAL_LIMIT ? "ok" : "MISSED"
    }`,
    `  ${fmt(WAITERS)} waits held and all woken:  ${waitsOk ? "ok" : "MISSED"}`,
    `bench took ${((Date.now() - started) / 1000).toFixed(0)} s`,
  ];
  const report = lines.join("\n") + "\n";
  console.log("\n" + report);
  await Deno.mkdir(`${BENCH}out`, { recursive: true });
  await Deno.writeTextFile(`${BENCH}out/latest.txt`, report);
  log("saved to bench/out/latest.txt");
} finally {
  await killAll();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
