// `deno task torture`: two servers on one database file, mixed keyed load, kill -9, restart, checks.
import { parseArgs } from "node:util";
import { freePort, startArgs, untilListening } from "../tests/servers.ts";
import { type Figures, type Final, verify } from "./torture_checks.ts";
import {
  call,
  client,
  liveServer,
  readKey,
  retryUnanswered,
  type Run,
  type Server,
  sleep,
  type TortureOptions,
} from "./torture_load.ts";

export type { TortureOptions };

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Runs the torture once; the result holds the figures, every violation found, and the last
 * lines each server process wrote to stderr (where a 500 leaves its stack).
 */
export async function runTorture(
  opts: TortureOptions,
): Promise<{ figures: Figures; violations: string[]; stderr: string }> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "agent-sync-torture-" });
  const db = `${dir}/sync.db`;
  const servers: Server[] = [];
  const all: Server[] = [];
  const startServer = async (db: string) => {
    const s = await spawnServer(db);
    all.push(s);
    return s;
  };
  try {
    servers.push(await startServer(db));
    servers.push(await startServer(db));
    opts.log?.(`servers on ${servers.map((s) => s.url).join(" and ")}, database ${db}`);
    const run = await setUp(opts, servers);

    const loadStart = performance.now();
    const clients = run.agents.map((a) => client(run, a));
    const retries: Promise<void>[] = [];
    for (let k = 0; k < opts.kills; k++) {
      const at = loadStart + ((k + 1) * opts.seconds * 1000) / (opts.kills + 1);
      await sleep(Math.max(0, at - performance.now()));
      const i = k % 2;
      // Strike while writes are in flight on the victim (waiting at most a second for that).
      const strikeBy = performance.now() + 1000;
      while (servers[i].inFlight < Math.max(2, opts.clients / 2) && performance.now() < strikeBy) {
        await sleep(2);
      }
      servers[i].up = false;
      servers[i].process.kill("SIGKILL");
      await servers[i].process.status;
      run.counts.kills++;
      opts.log?.(`kill -9 server ${i} at ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
      servers[i] = await startServer(db);
      opts.log?.(`server ${i} restarted on ${servers[i].url}, retrying ${run.unanswered.size}`);
      retries.push(retryUnanswered(run));
    }
    // The load runs its planned time, and on past a slow restart so that every kill hits it.
    run.stopAt = Math.max(loadStart + opts.seconds * 1000, performance.now() + 500);
    await Promise.all(clients);
    await Promise.all(retries);
    await retryUnanswered(run);
    const final = await readFinal(run);
    const figures = verify(run, final);
    figures.duration = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    const stderr = all.map((s, i) => `process ${i}:\n${s.stderr.join("")}`)
      .filter((text) => !text.endsWith(":\n")).join("\n");
    return { figures, violations: run.violations, stderr };
  } finally {
    for (const s of servers) {
      try {
        s.process.kill("SIGKILL");
      } catch { /* already gone */ }
      await s.process.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

// ------------------------------------------------------------ servers

/** Starts `deno task start` (its command line from deno.json) and waits for its startup line. */
async function spawnServer(db: string): Promise<Server> {
  const port = freePort();
  const process = new Deno.Command(Deno.execPath(), {
    args: await startArgs(),
    cwd: ROOT,
    // The caller's SYNC_* settings (an admin token, open mode) would change what is tested.
    clearEnv: true,
    env: {
      ...Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([k]) => !/^SYNC_/.test(k))),
      PORT: String(port),
      SYNC_DB: db,
      SYNC_HOST: "127.0.0.1",
      SYNC_AUTH: "token",
      SYNC_RATE_LIMIT: "off",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const server: Server = {
    url: `http://127.0.0.1:${port}`,
    process,
    up: true,
    inFlight: 0,
    stderr: [],
  };
  // Keep the last lines of stderr (stacks of 500s), and never let a pipe fill up.
  (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      server.stderr.push(chunk);
      if (server.stderr.length > 50) server.stderr.shift();
    }
  })().catch(() => {});
  await untilListening(process, "listening", () => server.stderr.join(""));
  return server;
}

async function setUp(opts: TortureOptions, servers: Server[]): Promise<Run> {
  const created = await call(servers[0].url, "POST", "/rooms", "", {});
  if (created.status !== 201) throw new Error(`POST /rooms answered ${created.status}`);
  const room = { id: created.body.id, token: created.body.token };
  const run: Run = {
    opts,
    servers,
    room,
    agents: [],
    agentRevs: [],
    writes: [],
    reads: [],
    tasks: [],
    observedRevs: new Set(),
    unanswered: new Set(),
    stopAt: Infinity,
    violations: [],
    counts: {
      replayChecks: 0,
      concurrentDuplicates: 0,
      lostAnswers: 0,
      serverErrors: 0,
      kills: 0,
    },
  };
  for (let i = 0; i < opts.clients; i++) {
    const id = `agent-${i}`;
    const res = await call(servers[i % 2].url, "POST", `/rooms/${room.id}/agents`, room.token, {
      id,
      name: id,
    });
    if (res.status !== 201) throw new Error(`registering ${id} answered ${res.status}`);
    run.agents.push({ id, token: res.body.token, n: 0 });
    run.agentRevs.push(res.body.rev);
  }
  return run;
}

// ------------------------------------------------------------ after the load

async function readFinal(run: Run): Promise<Final> {
  const base = liveServer(run).url;
  const path = `/rooms/${run.room.id}`;
  const token = run.room.token;
  const messages = [];
  for (let after = 0;;) {
    const page = await call(base, "GET", `${path}/messages?after=${after}&limit=1000`, token);
    if (page.status !== 200) throw new Error(`GET messages answered ${page.status}`);
    if (page.body.length === 0) break;
    messages.push(...page.body);
    after = page.body.at(-1).id;
  }
  const changes = [];
  for (let after = 0;;) {
    const page = await call(base, "GET", `${path}/changes?after=${after}&limit=1000`, token);
    if (page.status !== 200) throw new Error(`GET changes answered ${page.status}`);
    if (page.body.changes.length === 0) break;
    changes.push({ after, revs: page.body.changes.map((c: { rev: number }) => c.rev) });
    after = page.body.next;
  }
  const room = await call(base, "GET", path, token);
  if (room.status !== 200) throw new Error(`GET room answered ${room.status}`);
  const versions = new Map<string, number>();
  for (let k = 0; k < run.opts.keys; k++) {
    const seen = await readKey(run, run.agents[0], `key-${k}`);
    if (!seen) throw new Error(`GET state key-${k} got no answer`);
    versions.set(`key-${k}`, seen.version);
  }
  return { messages, changes, roomRev: room.body.rev, versions };
}

// ------------------------------------------------------------ command line

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "25" },
      clients: { type: "string", default: "12" },
      keys: { type: "string", default: "3" },
      kills: { type: "string", default: "2" },
      "retry-bound": { type: "string", default: "45" },
    },
  });
  const opts: TortureOptions = {
    seconds: Number(values.seconds),
    clients: Number(values.clients),
    keys: Number(values.keys),
    kills: Number(values.kills),
    retryBoundMs: Number(values["retry-bound"]) * 1000,
    log: (line) => console.log(`  ${line}`),
  };
  console.log(
    `torture: ${opts.seconds} s of load from ${opts.clients} clients on 2 servers, ` +
      `${opts.kills} kill -9, lost answers retried for up to ${opts.retryBoundMs / 1000} s`,
  );
  const { figures, violations, stderr } = await runTorture(opts);
  for (const [name, value] of Object.entries(figures)) console.log(`${name.padEnd(24)} ${value}`);
  if (violations.length > 0) {
    console.log(`\n${violations.length} violation(s):`);
    for (const v of violations.slice(0, 40)) console.log(`  ${v}`);
    if (violations.length > 40) console.log(`  … and ${violations.length - 40} more`);
    if (stderr.trim()) console.log(`\nwhat the servers wrote to stderr (last lines):\n${stderr}`);
    Deno.exit(1);
  }
  console.log("\nno violation");
}
