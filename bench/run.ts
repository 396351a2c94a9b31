// `deno task bench`: the real server against this machine's ceilings, as ratios from one run.
// Needs `wrk` on PATH (Debian/Ubuntu: `sudo apt-get install wrk`) and `taskset` (util-linux).
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
  rss,
  SECONDS,
  type Server,
  startBare,
  startFloor,
  startService,
  SYNCHRONOUS,
  type Task,
  wrkTask,
} from "./harness.ts";
import { createFixture, seedState } from "./seed.ts";

// Seeding a million messages alone takes a minute on a busy 2-core machine: BENCH_BIG=1000000.
const BIG = Number(Deno.env.get("BENCH_BIG") ?? 200_000);
const SMALL = 10_000;
const CAP = Number(Deno.env.get("BENCH_CAP") ?? 50_000);
const WAITERS = Number(Deno.env.get("BENCH_WAITERS") ?? 10_000);
const SAMPLES = Number(Deno.env.get("BENCH_SAMPLES") ?? 60);
const STATE_KEYS = Number(Deno.env.get("BENCH_STATE_KEYS") ?? 9000);
const STATE_VALUE = Number(Deno.env.get("BENCH_STATE_VALUE_BYTES") ?? 60_000);
const ROUTE_SECONDS = Number(Deno.env.get("BENCH_ROUTE_SECONDS") ?? 1);
const WAL_LIMIT = 64 * 1024 * 1024;

if (!(await new Deno.Command("sh", { args: ["-c", "command -v wrk"] }).output()).success) {
  console.error("deno task bench needs wrk: sudo apt-get install wrk (see README, Benchmarks)");
  Deno.exit(1);
}

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
const ADMIN = `bench-admin-${crypto.randomUUID()}`;

/** A wrk task for one route (or two taking turns), driven by route.lua. */
function route(
  server: Server,
  token: string,
  a: [string, string, string?],
  b?: [string, string, string?],
): Task {
  const env: Record<string, string> = {
    BENCH_TOKEN: token,
    BENCH_METHOD: a[0],
    BENCH_PATH: a[1],
    BENCH_BODY: a[2] ?? "",
  };
  if (b) Object.assign(env, { BENCH_METHOD2: b[0], BENCH_PATH2: b[1], BENCH_BODY2: b[2] ?? "" });
  // A pair (create then delete, claim then release) runs on one connection, in order. The
  // server has served the polls already: no warm-up, one short run, for its CPU per request.
  return wrkTask(server, a[1].replace("{n}", "x"), "route.lua", env, {
    connections: b ? 1 : CONNECTIONS,
    warmup: false,
    seconds: ROUTE_SECONDS,
  });
}

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

  // ---------------------------------------------------------------- writes
  log("POST messages and PUT state vs raw INSERTs; keyed POST; POST in a room at its cap");
  const rawDb = await createFixture(`${tmp}/raw.db`, 0, SYNCHRONOUS);
  const capped = await createFixture(`${tmp}/capped.db`, CAP, SYNCHRONOUS);
  const atCap = await startService(capped, { SYNC_MAX_MESSAGES: String(CAP) });
  // The same room size without a cap: how much of the capped row is the room's size, not the trim.
  const sized = await createFixture(`${tmp}/sized.db`, CAP, SYNCHRONOUS);
  const noCap = await startService(sized);
  const floorWrite = await createFixture(`${tmp}/floor.db`, 0, SYNCHRONOUS);
  const floor = await startFloor(floorWrite);
  const messages = `/rooms/${write.roomId}/messages`;
  Object.assign(
    m,
    await interleave({
      post: wrkTask(off, messages, "post.lua", token),
      rawPlain: rawTask("plain", rawDb),
      rawInsert: rawTask("insert", rawDb),
      postLimited: wrkTask(on, messages, "post.lua", token),
      postKeyed: wrkTask(off, messages, "post_keyed.lua", token),
      floorPost: wrkTask(floor, messages, "post.lua", token),
      floorKeyed: wrkTask(floor, messages, "post_keyed.lua", token),
      postCapped: wrkTask(atCap, messages, "post.lua", { BENCH_TOKEN: capped.agentToken }),
      postSized: wrkTask(noCap, messages, "post.lua", { BENCH_TOKEN: sized.agentToken }),
      put: wrkTask(off, `/rooms/${write.roomId}/state`, "put.lua", token),
      rawUpsert: rawTask("upsert", rawDb),
    }, async () => {
      serverWal = Math.max(serverWal, await fileSize(`${write.path}-wal`));
    }),
  );
  await off.stop();
  await on.stop();
  await atCap.stop();
  await floor.stop();
  await noCap.stop();
  await Deno.remove(capped.path).catch(() => {});
  await Deno.remove(sized.path).catch(() => {});

  log("POST messages with SYNC_SYNCHRONOUS=FULL vs the raw INSERT with synchronous=FULL");
  const full = await createFixture(`${tmp}/full.db`, 0, "FULL");
  const rawFull = await createFixture(`${tmp}/rawfull.db`, 0, "FULL");
  const fullServer = await startService(full, { SYNC_SYNCHRONOUS: "FULL" });
  Object.assign(
    m,
    await interleave({
      postFull: wrkTask(fullServer, messages, "post.lua", { BENCH_TOKEN: full.agentToken }),
      rawPlainFull: rawTask("plain", rawFull, 0, "FULL"),
      rawInsertFull: rawTask("insert", rawFull, 0, "FULL"),
    }),
  );
  await fullServer.stop();

  // ---------------------------------------------------------------- polls
  const servers: Server[] = [];
  const reads: Record<string, Task> = {};
  let small: { server: Server; f: Awaited<ReturnType<typeof createFixture>> } | undefined;
  let floorSmall: Server | undefined;
  for (const [name, n] of [["small", SMALL], ["big", BIG]] as const) {
    log(`seeding ${fmt(n)} messages`);
    const t = performance.now();
    const f = await createFixture(`${tmp}/${name}.db`, n, SYNCHRONOUS);
    log(`seeded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const server = await startService(f, { SYNC_ADMIN_TOKEN: ADMIN });
    servers.push(server);
    if (name === "small") {
      small = { server, f };
      floorSmall = await startFloor(f);
    }
    const env = { BENCH_TOKEN: f.agentToken, BENCH_PATH: `/rooms/${f.roomId}/messages` };
    reads[name] = wrkTask(server, env.BENCH_PATH, "get.lua", {
      ...env,
      BENCH_MAX_AFTER: String(f.rev - 50),
    });
    reads[`raw_${name}`] = rawTask("select", f, f.rev - 50);
    if (floorSmall && name === "small") {
      reads.floorSmall = wrkTask(floorSmall, env.BENCH_PATH, "get.lua", {
        ...env,
        BENCH_MAX_AFTER: String(f.rev - 50),
      });
    }
    reads[`${name}Tail`] = wrkTask(server, env.BENCH_PATH, "get.lua", {
      ...env,
      BENCH_AFTER: String(f.rev - 50),
    });
    reads[`raw_${name}Tail`] = rawTask("tail", f, f.rev - 50);
    if (name === "small") {
      reads.empty = wrkTask(server, env.BENCH_PATH, "get.lua", {
        ...env,
        BENCH_AFTER: String(f.rev),
      });
    }
  }
  log(`GET messages with ${fmt(SMALL)} and ${fmt(BIG)} stored, the raw SELECT, an empty poll`);
  Object.assign(
    m,
    await interleave({
      small: reads.small,
      big: reads.big,
      rawSmall: reads.raw_small,
      floorSmall: reads.floorSmall,
      rawBig: reads.raw_big,
      smallTail: reads.smallTail,
      bigTail: reads.bigTail,
      rawSmallTail: reads.raw_smallTail,
      rawBigTail: reads.raw_bigTail,
      empty: reads.empty,
      bareAgain: wrkTask(bare, "/"),
    }),
  );
  await bare.stop();
  await servers.at(-1)!.stop(); // the big room's
  await floorSmall!.stop();
  await Deno.remove(`${tmp}/big.db`).catch(() => {});

  // ---------------------------------------------------------------- every route, CPU
  log("every route once: µs of server CPU per request");
  const { server: rs, f: rf } = small!;
  const r = `/rooms/${rf.roomId}`;
  const A = rf.agentToken;
  const seedKey = await fetch(`${rs.base}${r}/state`, {
    method: "PUT",
    headers: { authorization: `Bearer ${A}`, "content-type": "application/json" },
    body: JSON.stringify({ key: "k1", value: { status: "working", progress: 42 } }),
  });
  await seedKey.body?.cancel();
  // A room nothing is written to, for an empty change feed.
  const quiet = await (await fetch(`${rs.base}/rooms`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ id: "quiet" }),
  })).json();
  const routes: [string, Task][] = [
    ["GET /SKILL.md", route(rs, "", ["GET", "/SKILL.md"])],
    ["GET /?room=:id (dashboard page)", route(rs, "", ["GET", `/?room=${rf.roomId}`])],
    [
      "POST /rooms + DELETE /rooms/:id (pair, admin)",
      route(rs, ADMIN, ["POST", "/rooms", '{"id":"r-{n}"}'], ["DELETE", "/rooms/r-{n}"]),
    ],
    ["GET /rooms?limit=10 (admin)", route(rs, ADMIN, ["GET", "/rooms?limit=10"])],
    ["GET /rooms/:id", route(rs, A, ["GET", r])],
    [
      "POST /rooms/:id/agents (re-register)",
      route(rs, A, ["POST", `${r}/agents`, `{"id":"${rf.agentId}","name":"Bench agent"}`]),
    ],
    ["GET /rooms/:id/agents", route(rs, A, ["GET", `${r}/agents`])],
    ["GET /rooms/:id/agents/:agent_id", route(rs, A, ["GET", `${r}/agents/${rf.agentId}`])],
    [
      "PATCH /rooms/:id/agents/:agent_id",
      route(rs, A, ["PATCH", `${r}/agents/${rf.agentId}`, '{"status":"working"}']),
    ],
    ["GET /rooms/:id/messages/:msg_id", route(rs, A, ["GET", `${r}/messages/${rf.rev - 5}`])],
    [
      "POST + DELETE /rooms/:id/messages/:msg_id/claim (pair)",
      route(rs, A, ["POST", `${r}/messages/${rf.rev}/claim`], [
        "DELETE",
        `${r}/messages/${rf.rev}/claim`,
      ]),
    ],
    ["GET /rooms/:id/state?key=", route(rs, A, ["GET", `${r}/state?key=k1`])],
    ["GET /rooms/:id/state (a few keys)", route(rs, A, ["GET", `${r}/state`])],
    [
      "PUT + DELETE /rooms/:id/state (pair)",
      route(rs, A, ["PUT", `${r}/state`, '{"key":"tmp","value":1}'], [
        "DELETE",
        `${r}/state?key=tmp`,
      ]),
    ],
    [
      "PUT /rooms/:id/state/batch (2 ops)",
      route(rs, A, [
        "PUT",
        `${r}/state/batch`,
        '{"ops":[{"key":"b1","value":1},{"key":"b2","value":{"x":2}}]}',
      ]),
    ],
    [
      "GET /rooms/:id/changes?after=<rev> (empty)",
      route(rs, quiet.token, ["GET", `/rooms/quiet/changes?after=${quiet.rev}`]),
    ],
    [
      "GET /rooms/:id/changes?limit=50 (50 rows)",
      route(rs, A, ["GET", `${r}/changes?after=${rf.rev - 100}&limit=50`]),
    ],
  ];
  const routeRows: [string, Measure][] = [];
  for (const [name, task] of routes) routeRows.push([name, await task()]);
  await rs.stop();

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
    String(SAMPLES),
    "20",
    "120",
  ]);
  await a.stop();
  await b.stop();

  log(`${fmt(WAITERS)} concurrent long-polls`);
  const many = await createFixture(`${tmp}/waits.db`, 0, SYNCHRONOUS);
  const holder = await startService(many, {
    SYNC_MAX_WAITS: String(WAITERS * 2),
    SYNC_MAX_WAITS_PER_CLIENT: String(WAITERS * 2),
    // One load generator is one address holding every wait in one room.
    SYNC_MAX_WAITS_PER_ROOM: String(WAITERS * 2),
    SYNC_MAX_WAITS_PER_ADDRESS: String(WAITERS * 2),
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

  // ---------------------------------------------------------------- a full room's state
  log(`GET state of a room holding ${fmt(STATE_KEYS)} keys of ${fmt(STATE_VALUE)} bytes`);
  const big = await createFixture(`${tmp}/state.db`, 0, SYNCHRONOUS);
  seedState(big, STATE_KEYS, STATE_VALUE);
  const stateServer = await startService(big);
  const rss0 = await rss(stateServer.pid);
  const t0 = performance.now();
  const listing = await fetch(`${stateServer.base}/rooms/${big.roomId}/state`, {
    headers: { authorization: `Bearer ${big.roomToken}` },
    signal: AbortSignal.timeout(120_000),
  }).then(async (res) => ({ status: res.status, bytes: (await res.arrayBuffer()).byteLength }))
    .catch((err) => ({ status: 0, bytes: 0, error: String(err) }));
  const listMs = performance.now() - t0;
  const rss1 = await rss(stateServer.pid).catch(() => ({ now: NaN, peak: NaN }));
  await stateServer.stop();
  await Deno.remove(big.path).catch(() => {});

  // ---------------------------------------------------------------- report
  const lat = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `median ${quantile(s, 0.5).toFixed(1)} ms, p99 ${quantile(s, 0.99).toFixed(1)} ms ` +
      `(min ${s[0].toFixed(1)}, max ${s[s.length - 1].toFixed(1)}, n=${s.length})`;
  };
  const W = 52;
  const head = (name: string, unit: string) =>
    `${name.padEnd(W)}${unit.padStart(8)} ${"µs CPU".padStart(7)} ${"p50".padStart(8)} ${
      "p99".padStart(8)
    }  ratios`;
  const row = (name: string, l: Measure, vs = "") =>
    `${name.padEnd(W)}${fmt(l.rate).padStart(8)} ${l.cpuUs.toFixed(0).padStart(7)} ${
      (l.p50 ?? "").padStart(8)
    } ${(l.p99 ?? "").padStart(8)}  ${vs}`;
  const x = (a: number, b: number) => (a / b).toFixed(2);
  const bareRate = Math.max(m.bare.rate, m.bareAgain.rate);
  const rawWal = Math.max(m.rawInsert.walBytes ?? 0, m.rawUpsert.walBytes ?? 0);
  const pollRatio = m.big.rate / m.small.rate;
  const tailRatio = m.bigTail.rate / m.smallTail.rate;
  const waitsOk = held.pendingAfterHold === WAITERS && held.ok === WAITERS;
  const sameMs = quantile([...same.latencies].sort((a, b) => a - b), 0.5);
  const crossMs = quantile([...cross.latencies].sort((a, b) => a - b), 0.5);

  interface Target {
    name: string;
    value: number;
    text: string;
    ok: boolean;
    target: string;
    cpu: string;
  }
  const ratio = (
    name: string,
    a: Measure,
    b: Measure | number,
    min: number,
    cpu = "",
  ): Target => {
    const v = a.rate / (typeof b === "number" ? b : b.rate);
    return {
      name,
      value: v,
      text: v.toFixed(2),
      ok: v >= min,
      target: `>= ${min}`,
      cpu: cpu ||
        `${a.cpuUs.toFixed(0)} µs vs ${
          typeof b === "number" ? m.bare.cpuUs.toFixed(0) : b.cpuUs.toFixed(0)
        } µs`,
    };
  };
  const keyedCpu = m.postKeyed.cpuUs / m.post.cpuUs;
  const targets: Target[] = [
    ratio(`POST message vs raw plain INSERT (${CONNECTIONS} conns)`, m.post, m.rawPlain, 0.5),
    ratio("PUT state vs raw plain INSERT", m.put, m.rawPlain, 0.5),
    ratio("POST, SYNCHRONOUS=FULL vs raw plain INSERT, FULL", m.postFull, m.rawPlainFull, 3),
    ratio("empty poll vs bare Deno.serve", m.empty, bareRate, 0.25),
    ratio(`50-row poll (${fmt(SMALL)} stored) vs raw SELECT`, m.small, m.rawSmall, 0.5),
    {
      name: "keyed POST CPU vs unkeyed POST CPU",
      value: keyedCpu,
      text: keyedCpu.toFixed(2),
      ok: keyedCpu <= 1.3,
      target: "<= 1.3",
      cpu: `${m.postKeyed.cpuUs.toFixed(0)} µs vs ${m.post.cpuUs.toFixed(0)} µs`,
    },
    ratio(`POST in a room at its cap (${fmt(CAP)}) vs an empty room`, m.postCapped, m.post, 0.95),
    {
      name: `${fmt(WAITERS)} held waits: RSS, all answered after one write`,
      value: held.wakeAllMs ?? Infinity,
      text: `${(held.rssHolding / 1024).toFixed(0)} MB, ${held.wakeAllMs?.toFixed(0)} ms`,
      ok: waitsOk && held.rssHolding < 400 * 1024 && (held.wakeAllMs ?? Infinity) <= 1000,
      target: "< 400 MB, <= 1000 ms",
      cpu: "",
    },
    {
      name: "wake-up across two processes, median",
      value: crossMs,
      text: `${crossMs.toFixed(1)} ms`,
      ok: crossMs < 60,
      target: "< 60 ms",
      cpu: "",
    },
  ];

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
    `  server or raw process per request, lowest run: the stable figure on a shared machine.`,
    `  Server: deno task start's command on a temp SQLite file (WAL, synchronous=${SYNCHRONOUS}), ` +
    `SYNC_AUTH=token with an agent token,`,
    `  SYNC_RATE_LIMIT=off, SYNC_MAX_MESSAGES=0 unless a row says otherwise.`,
    `  GET messages?after=N&limit=50: N random in [0, stored-50) ("random") or stored-50 ("tail").`,
    "",
    "targets (issue 10)".padEnd(W + 8) + "   value  target                 µs CPU per request",
    ...targets.map((t) =>
      `  ${t.name.padEnd(W + 6)}${t.text.padStart(8)}  ${t.target.padEnd(21)}  ${
        t.cpu.padEnd(22)
      } ${t.ok ? "ok" : "MISSED"}`
    ),
    "",
    "what bounds the missed ratios: the floor, a bare Deno.serve doing only the service's own",
    "storage call (bench/floor_server.ts: no framework, no token check, no validation)",
    `  floor POST vs raw plain INSERT ${x(m.floorPost.rate, m.rawPlain.rate)}: the best any ` +
    `server could do with this schema's write (${m.floorPost.cpuUs.toFixed(0)} µs CPU); the ` +
    `service's POST is ${x(m.post.rate, m.floorPost.rate)} of the floor`,
    `  floor 50-row poll vs raw SELECT ${x(m.floorSmall.rate, m.rawSmall.rate)} ` +
    `(${m.floorSmall.cpuUs.toFixed(0)} µs CPU); the service's poll is ` +
    `${x(m.small.rate, m.floorSmall.rate)} of the floor`,
    `  the schema's own SQL run raw, no HTTP: message INSERT ${
      x(m.rawInsert.rate, m.rawPlain.rate)
    }, state upsert ${x(m.rawUpsert.rate, m.rawPlain.rate)} of the raw plain INSERT`,
    `  POST at FULL: its CPU (${m.postFull.cpuUs.toFixed(0)} µs) would allow ${
      fmt(1e6 / m.postFull.cpuUs)
    }/s, ${x(1e6 / m.postFull.cpuUs, m.rawPlainFull.rate)} of the raw FULL INSERT (3 needs <= ${
      (1e6 / (3 * m.rawPlainFull.rate)).toFixed(0)
    } µs); it reached ${x(m.postFull.rate, 1e6 / m.postFull.cpuUs)} of that: node:sqlite ` +
    `commits and fsyncs on the event loop's thread, so no request is read while the disk syncs`,
    `  POST at the cap: a room of ${fmt(CAP)} without a cap runs at ${
      x(m.postSized.rate, m.post.rate)
    } of an empty one (${m.postSized.cpuUs.toFixed(0)} µs); the trim adds ${
      (m.postCapped.cpuUs - m.postSized.cpuUs).toFixed(0)
    } µs a post (deleting one row through its indexes)`,
    `  floor keyed POST CPU vs floor POST CPU ${x(m.floorKeyed.cpuUs, m.floorPost.cpuUs)} ` +
    `(+${(m.floorKeyed.cpuUs - m.floorPost.cpuUs).toFixed(0)} µs: the key's record, one more ` +
    `b-tree insert at a random place); the service adds +${
      (m.postKeyed.cpuUs - m.post.cpuUs).toFixed(0)
    } µs`,
    "",
    head("HTTP ceiling and middleware", "req/s"),
    row("bare Deno.serve, small JSON (ceiling a)", m.bare),
    row("bare Deno.serve, again with the polls", m.bareAgain),
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
      `${x(m.post.rate, m.rawPlain.rate)} of raw plain INSERT, ${
        x(m.post.rate, m.rawInsert.rate)
      } of raw same-SQL INSERT (by CPU ${x(m.rawInsert.cpuUs, m.post.cpuUs)}); ${
        x(m.post.rate, m.bare.rate)
      } of bare`,
    ),
    row(
      "POST /rooms/:id/messages, rate limiter on",
      m.postLimited,
      `${x(m.postLimited.rate, m.post.rate)} of limiter off`,
    ),
    row(
      "POST /rooms/:id/messages with Idempotency-Key",
      m.postKeyed,
      `${x(m.postKeyed.cpuUs, m.post.cpuUs)} of unkeyed by CPU`,
    ),
    row(
      `POST /rooms/:id/messages, room at its cap ${fmt(CAP)}`,
      m.postCapped,
      `${x(m.postCapped.rate, m.post.rate)} of an empty room`,
    ),
    row(
      "floor: bare Deno.serve + schema.ts insertMessage",
      m.floorPost,
      `${x(m.floorPost.rate, m.rawPlain.rate)} of raw plain INSERT`,
    ),
    row(
      "floor, with Idempotency-Key",
      m.floorKeyed,
      `${x(m.floorKeyed.cpuUs, m.floorPost.cpuUs)} of floor unkeyed by CPU`,
    ),
    row(
      `POST /rooms/:id/messages, room of ${fmt(CAP)}, no cap`,
      m.postSized,
      `${x(m.postSized.rate, m.post.rate)} of an empty room`,
    ),
    row("raw plain INSERT (one table, no index, autocommit)", m.rawPlain),
    row("raw INSERT message (same SQL, autocommit)", m.rawInsert),
    row(
      "PUT /rooms/:id/state (100 keys)",
      m.put,
      `${x(m.put.rate, m.rawPlain.rate)} of raw plain INSERT, ${
        x(m.put.rate, m.rawUpsert.rate)
      } of raw upsert (by CPU ${x(m.rawUpsert.cpuUs, m.put.cpuUs)})`,
    ),
    row("raw state upsert (same SQL)", m.rawUpsert),
    row(
      "POST /rooms/:id/messages, SYNCHRONOUS=FULL",
      m.postFull,
      `${x(m.postFull.rate, m.rawPlainFull.rate)} of raw plain INSERT FULL, ${
        x(m.postFull.rate, m.rawInsertFull.rate)
      } of raw same-SQL FULL`,
    ),
    row("raw plain INSERT, synchronous=FULL", m.rawPlainFull),
    row("raw INSERT message (same SQL), synchronous=FULL", m.rawInsertFull),
    "",
    head("polls: GET messages?after=N&limit=50", "req/s"),
    row(
      `empty poll (after=newest, ${fmt(SMALL)} stored)`,
      m.empty,
      `${x(m.empty.rate, bareRate)} of bare`,
    ),
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
    row(
      `floor: bare Deno.serve + listMessagesJson, ${fmt(SMALL)}`,
      m.floorSmall,
      `${x(m.floorSmall.rate, m.rawSmall.rate)} of raw SELECT`,
    ),
    row(`raw SELECT, ${fmt(SMALL)} stored, random N`, m.rawSmall),
    row(`raw SELECT, ${fmt(BIG)} stored, random N`, m.rawBig),
    row(`raw SELECT, ${fmt(SMALL)} stored, tail`, m.rawSmallTail),
    row(`raw SELECT, ${fmt(BIG)} stored, tail`, m.rawBigTail),
    "",
    head(`every other route (one run of ${ROUTE_SECONDS} s; pairs on 1 connection)`, "req/s"),
    ...routeRows.map(([name, l]) => row(name, l)),
    "",
    `WAL file: server ${mb(serverWal)} at most after the write runs, raw loops ${mb(rawWal)}` +
    (Math.max(serverWal, rawWal) > WAL_LIMIT ? "  OVER 64 MB: NOT BOUNDED" : ""),
    "",
    "wake-up of a blocking wait (GET /changes?wait=10), from just before the write is sent",
    `  same process:      ${lat(same.latencies)}`,
    `                     (the write's own response: median ${
      quantile([...same.writes].sort((a, b) => a - b), 0.5).toFixed(1)
    } ms; woke early ${same.early}, wrong change ${same.wrong}); same-process median ${
      sameMs.toFixed(1)
    } ms`,
    `  across processes:  ${lat(cross.latencies)}`,
    `                     (waiter on server A, write on server B, same file; A checks ` +
    `PRAGMA data_version every 10 ms; woke early ${cross.early}, wrong change ${cross.wrong})`,
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
    `a full room's state: GET /rooms/:id/state (default limit) of ${fmt(STATE_KEYS)} keys of ` +
    `${fmt(STATE_VALUE)} bytes`,
    `  answered ${listing.status} with ${mb(listing.bytes)} in ${(listMs / 1000).toFixed(1)} s; ` +
    `server RSS ${(rss0.now / 1024).toFixed(0)} MB before, peak ${
      (rss1.peak / 1024).toFixed(0)
    } MB${"error" in listing ? ` (${listing.error})` : ""}`,
    "",
    "other checks",
    `  poll at ${fmt(BIG)} >= 0.80 of ${fmt(SMALL)}:  random N ${pollRatio.toFixed(2)} ${
      pollRatio >= 0.8 ? "ok" : "MISSED"
    }, tail ${tailRatio.toFixed(2)} ${tailRatio >= 0.8 ? "ok" : "MISSED"}`,
    `  WAL bounded (< 64 MB):  ${mb(Math.max(serverWal, rawWal))} ${
      Math.max(serverWal, rawWal) <= WAL_LIMIT ? "ok" : "MISSED"
    }`,
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
