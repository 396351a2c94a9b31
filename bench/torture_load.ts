// The torture's clients: keyed writes, compare-and-set, claim races, resends, and what they saw.
import type { Operation, RegisterInput, RegisterOutput } from "./linearizability.ts";

/** A single HTTP attempt that takes longer than this counts as unanswered. */
const ATTEMPT_MS = 15_000;
/** Pause before asking again after `409 idempotency_in_progress` or a refused connection. */
const PAUSE_MS = 250;
/** Lease of every claim: far longer than a run, so a claim stays live throughout. */
const CLAIM_TTL = 600;
/** A bound on the writes of one run whatever the machine's speed (and on the checker's work). */
const MAX_WRITES = 50_000;

export interface TortureOptions {
  /** Seconds of load. */
  seconds: number;
  /** Concurrent clients, each an agent with its own token. */
  clients: number;
  /** Keys under compare-and-set. */
  keys: number;
  /** kill -9 rounds, evenly spread over the load, alternating between the two servers. */
  kills: number;
  /** How long a request whose answer was lost is retried with its key before giving up. */
  retryBoundMs: number;
  /** Progress lines (startup, kills); silent when absent. */
  log?: (line: string) => void;
}

/** One logical keyed write: every send of it carries the same key, token, path and body. */
export interface Write {
  kind: "message" | "cas" | "claim";
  method: "POST" | "PUT";
  path: string;
  body: string;
  key: string;
  agent: Agent;
  /** When it was first sent, and when its first answer arrived (Infinity: none). */
  call: number;
  ret: number;
  status?: number;
  // deno-lint-ignore no-explicit-any
  answer?: any;
  /** 2xx answers that were not replays: more than one means the write ran twice. */
  executions: number;
  sends: number;
  inProgress: number;
  /** Its answer was lost and it was retried after a restart. */
  retried: boolean;
  /** Still unanswered (or still `409 idempotency_in_progress`) when the retry bound ran out. */
  unresolved?: string;
  op?: string;
  stateKey?: string;
  input?: RegisterInput;
  msgId?: number;
}

export interface Agent {
  id: string;
  token: string;
  n: number;
}

export interface Server {
  url: string;
  process: Deno.ChildProcess;
  up: boolean;
  /** Requests sent to it and not yet answered. */
  inFlight: number;
  stderr: string[];
}

interface Answer {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  replayed: boolean;
  at: number;
}

/** Everything a run records, for the checks. */
export interface Run {
  opts: TortureOptions;
  servers: Server[];
  room: { id: string; token: string };
  agents: Agent[];
  agentRevs: number[];
  writes: Write[];
  reads: (Operation<RegisterInput, RegisterOutput> & { stateKey: string })[];
  tasks: number[];
  /** Revs read back from GET state, which show a write the feed may no longer list. */
  observedRevs: Set<number>;
  unanswered: Set<Write>;
  /** When the clients stop starting new operations (set once every kill is done). */
  stopAt: number;
  violations: string[];
  counts: {
    replayChecks: number;
    concurrentDuplicates: number;
    lostAnswers: number;
    serverErrors: number;
    kills: number;
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)];

export async function call(
  base: string,
  method: string,
  path: string,
  token: string,
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
    signal: AbortSignal.timeout(ATTEMPT_MS),
  });
  return { status: res.status, body: await res.json() };
}

export function liveServer(run: Run): Server {
  return pick(run.servers.filter((s) => s.up));
}

/** One agent's loop: a message or task, a compare-and-set, or a claim race, until told to stop. */
export async function client(run: Run, agent: Agent) {
  while (performance.now() < run.stopAt && run.writes.length < MAX_WRITES) {
    const r = Math.random();
    if (r < 0.45) await postMessage(run, agent, Math.random() < 0.3 ? "task" : "message");
    else if (r < 0.8) {
      await compareAndSet(run, agent, `key-${Math.floor(Math.random() * run.opts.keys)}`);
    } else await claimRace(run);
  }
}

function newWrite(
  run: Run,
  kind: Write["kind"],
  method: Write["method"],
  path: string,
  body: unknown,
  agent: Agent,
): Write {
  const w: Write = {
    kind,
    method,
    path: `/rooms/${run.room.id}${path}`,
    body: JSON.stringify(body),
    key: crypto.randomUUID(),
    agent,
    call: performance.now(),
    ret: Infinity,
    executions: 0,
    sends: 0,
    inProgress: 0,
    retried: false,
  };
  run.writes.push(w);
  return w;
}

async function postMessage(run: Run, agent: Agent, kind: "task" | "message") {
  const op = `${agent.id}#${agent.n++}`;
  const w = newWrite(run, "message", "POST", "/messages", { kind, body: { op } }, agent);
  w.op = op;
  await deliver(run, w);
  if (kind === "task" && w.status === 201) run.tasks.push(w.answer.id);
}

/** Reads the key, writes it only if unchanged since, and reads it back on a conflict. */
async function compareAndSet(run: Run, agent: Agent, key: string) {
  const seen = await readKey(run, agent, key);
  if (!seen) return;
  const value = `${agent.id}#${agent.n++}`;
  const w = newWrite(run, "cas", "PUT", "/state", {
    key,
    value,
    if_version: seen.version,
  }, agent);
  w.stateKey = key;
  w.input = { kind: "cas", ifVersion: seen.version, value };
  await deliver(run, w);
  if (w.status === 409) await readKey(run, agent, key);
}

/** Two or three agents claim one of the newest tasks at once. */
async function claimRace(run: Run) {
  if (run.tasks.length === 0) return await postMessage(run, pick(run.agents), "task");
  const msgId = pick(run.tasks.slice(-4));
  const claimers = new Set(
    Array.from({ length: 2 + Math.floor(Math.random() * 2) }, () => pick(run.agents)),
  );
  await Promise.all([...claimers].map((agent) => {
    const w = newWrite(run, "claim", "POST", `/messages/${msgId}/claim`, { ttl: CLAIM_TTL }, agent);
    w.msgId = msgId;
    return deliver(run, w);
  }));
}

/** GET of one key, recorded as a read in the key's history; null when unanswered. */
export async function readKey(
  run: Run,
  agent: Agent,
  key: string,
): Promise<{ version: number; value: unknown } | null> {
  const callAt = performance.now();
  let res;
  try {
    res = await call(
      liveServer(run).url,
      "GET",
      `/rooms/${run.room.id}/state?key=${encodeURIComponent(key)}`,
      agent.token,
    );
  } catch {
    return null; // a read that got no answer changed nothing: leave it out of the history
  }
  const ret = performance.now();
  if (res.status !== 200 && res.status !== 404) {
    unexpected(run, `GET state ${key}`, res.status, res.body);
    return null;
  }
  if (res.status === 200) run.observedRevs.add(res.body.rev);
  const seen = res.status === 200
    ? { version: res.body.version as number, value: res.body.value }
    : { version: 0, value: null };
  run.reads.push({
    stateKey: key,
    input: { kind: "read" },
    output: { kind: "read", ...seen },
    call: callAt,
    ret,
  });
  return seen;
}

/**
 * Sends a write; sometimes a second copy at the same instant (a client that timed out too
 * soon), and sometimes the same request again after its answer (which must be a replay).
 */
async function deliver(run: Run, w: Write) {
  const copies = Math.random() < 0.05 ? 2 : 1;
  if (copies === 2) run.counts.concurrentDuplicates++;
  await Promise.all(Array.from({ length: copies }, () => sendUntilAnswered(run, w, Infinity)));
  if (w.status === undefined) {
    run.counts.lostAnswers++;
    run.unanswered.add(w);
  } else if (Math.random() < 0.1) {
    run.counts.replayChecks++;
    await sendUntilAnswered(run, w, Infinity);
  }
}

/**
 * Sends `w` once, and again while the answer is `409 idempotency_in_progress` (until `until`).
 * Returns whether it got a final answer.
 */
async function sendUntilAnswered(run: Run, w: Write, until: number): Promise<boolean> {
  const bound = Math.min(until, performance.now() + run.opts.retryBoundMs);
  while (true) {
    const a = await send(run, w);
    if (!a) return false;
    if (a.status === 409 && a.body?.error === "idempotency_in_progress") {
      w.inProgress++;
      if (performance.now() + PAUSE_MS > bound) {
        w.unresolved = `still 409 idempotency_in_progress after ${w.inProgress} tries`;
        return false;
      }
      await sleep(PAUSE_MS);
      continue;
    }
    if (a.status >= 500) {
      run.counts.serverErrors++;
      unexpected(run, `${w.method} ${w.path}`, a.status, a.body);
      return false;
    }
    settle(run, w, a);
    return true;
  }
}

async function send(run: Run, w: Write): Promise<Answer | null> {
  w.sends++;
  const server = liveServer(run);
  server.inFlight++;
  try {
    const res = await fetch(`${server.url}${w.path}`, {
      method: w.method,
      headers: {
        authorization: `Bearer ${w.agent.token}`,
        "content-type": "application/json",
        "idempotency-key": w.key,
      },
      body: w.body,
      signal: AbortSignal.timeout(ATTEMPT_MS),
    });
    const text = await res.text();
    return {
      status: res.status,
      body: JSON.parse(text),
      replayed: res.headers.get("idempotent-replayed") === "true",
      at: performance.now(),
    };
  } catch {
    return null; // the server died (or hung) before answering
  } finally {
    server.inFlight--;
  }
}

const EXPECTED: Record<Write["kind"], number[]> = {
  message: [201],
  cas: [200, 409],
  claim: [200, 409],
};

/**
 * Records an answer: the first one is the write's. A 2xx is stored with its key, so every later
 * answer must be the same one replayed. A refusal (409) is not stored: a resend runs again and
 * may name a newer holder or version, but it must still be a refusal (nothing here releases a
 * claim or lowers a version).
 */
function settle(run: Run, w: Write, a: Answer) {
  const ok = a.status < 300;
  if (ok && !a.replayed) w.executions++;
  if (w.executions > 1) {
    run.violations.push(`${w.method} ${w.path} key ${w.key} wrote ${w.executions} times`);
  }
  if (w.status === undefined) {
    if (!EXPECTED[w.kind].includes(a.status)) {
      unexpected(run, `${w.method} ${w.path}`, a.status, a.body);
    }
    w.status = a.status;
    w.answer = a.body;
    w.ret = a.at;
    run.unanswered.delete(w);
    w.unresolved = undefined;
    return;
  }
  w.ret = Math.min(w.ret, a.at);
  const same = w.status < 300
    ? a.status === w.status && JSON.stringify(a.body) === JSON.stringify(w.answer)
    : a.status >= 300;
  if (!same) {
    run.violations.push(
      `${w.method} ${w.path} key ${w.key} answered ${w.status} ${JSON.stringify(w.answer)}, ` +
        `then ${a.status} ${JSON.stringify(a.body)}`,
    );
  }
}

function unexpected(run: Run, what: string, status: number, body: unknown) {
  run.violations.push(`${what} answered ${status} ${JSON.stringify(body).slice(0, 300)}`);
}

/** Retries every write whose answer was lost, all at once, each with its own key. */
export async function retryUnanswered(run: Run) {
  const lost = [...run.unanswered];
  run.unanswered.clear();
  await Promise.all(lost.map(async (w) => {
    w.retried = true;
    const until = performance.now() + run.opts.retryBoundMs;
    while (!(await sendUntilAnswered(run, w, until))) {
      if (performance.now() + PAUSE_MS > until) {
        w.unresolved ??= `no answer after ${w.sends} sends`;
        return;
      }
      await sleep(PAUSE_MS);
    }
  }));
}
