// The torture's verdicts: exactly-once writes, gap-free revisions, linearizable CAS, one claimer.
import {
  checkLinearizable,
  type Operation,
  REGISTER,
  type RegisterInput,
  type RegisterOutput,
} from "./linearizability.ts";
import type { Run, Write } from "./torture_load.ts";

/** What the room holds once the load is over and every retry is done. */
export interface Final {
  messages: {
    id: number;
    body: { op?: string };
    claim: { agent: string } | null;
  }[];
  /** Each page of `/changes` from 0: the `after` it was asked with and the revs it returned. */
  changes: { after: number; revs: number[] }[];
  roomRev: number;
  /** The last version of each key under compare-and-set (0: never written). */
  versions: Map<string, number>;
}

export type Figures = Record<string, string | number>;

/** Checks a finished run against what the room holds; pushes each violation onto the run. */
export function verify(run: Run, final: Final): Figures {
  const v = run.violations;
  const writes = run.writes;
  const acked = writes.filter((w) => w.status !== undefined && w.status < 300);
  const unknown = writes.filter((w) => w.status === undefined);
  for (const w of unknown) {
    v.push(`${w.method} ${w.path} key ${w.key} (answer lost): ${w.unresolved ?? "no answer"}`);
  }

  const duplicates = checkMessages(run, final);
  const revs = checkRevisions(run, final, acked, unknown);
  const lin = checkHistories(run);
  const claims = checkClaims(run, final);

  const count = (kind: Write["kind"]) => writes.filter((w) => w.kind === kind).length;
  const retried = writes.filter((w) => w.retried);
  const waits = writes.map((w) => w.inProgress);
  return {
    operations: `${writes.length + run.reads.length} (messages ${count("message")}, ` +
      `compare-and-set ${count("cas")}, claims ${count("claim")}, reads ${run.reads.length})`,
    "HTTP requests": writes.reduce((n, w) => n + w.sends, 0) + run.reads.length,
    acknowledged: `${acked.length} writes answered 2xx, ` +
      `${writes.length - acked.length - unknown.length} refused (409), ${unknown.length} unknown`,
    "kill -9": run.counts.kills,
    "answers lost": run.counts.lostAnswers,
    retried:
      `${retried.length} after a lost answer (${
        retried.filter((w) => w.status !== undefined).length
      } answered), ${run.counts.replayChecks} replays of an answered write, ` +
      `${run.counts.concurrentDuplicates} duplicates in flight`,
    "in progress (409)": `${waits.reduce((a, b) => a + b, 0)} answers, ` +
      `at most ${Math.max(0, ...waits)} for one request`,
    "duplicates found": duplicates,
    gaps: revs.gaps,
    repeats: revs.repeats,
    "room rev": `${final.roomRev} (${revs.writes})`,
    claims: claims,
    linearizability: lin,
    duration: "",
  };
}

/** Every acknowledged message is in the log exactly once; an unanswered one at most once. */
function checkMessages(run: Run, final: Final): number {
  const found = new Map<string, number[]>();
  for (const m of final.messages) {
    const op = m.body?.op;
    if (typeof op !== "string") continue;
    found.set(op, [...(found.get(op) ?? []), m.id]);
  }
  let duplicates = 0;
  const sent = new Set<string>();
  for (const w of run.writes) {
    if (w.kind !== "message") continue;
    sent.add(w.op!);
    const ids = found.get(w.op!) ?? [];
    if (ids.length > 1) {
      duplicates += ids.length - 1;
      run.violations.push(`message ${w.op} is in the log ${ids.length} times (ids ${ids})`);
    }
    if (w.status === 201 && ids.length === 0) {
      run.violations.push(`acknowledged message ${w.op} (id ${w.answer.id}) is missing`);
    }
    if (w.status === 201 && ids.length > 0 && !ids.includes(w.answer.id)) {
      run.violations.push(
        `message ${w.op} was acknowledged as id ${w.answer.id}, stored as ${ids}`,
      );
    }
  }
  for (const op of found.keys()) {
    if (!sent.has(op)) run.violations.push(`message ${op} is in the log but was never sent`);
  }
  return duplicates;
}

/**
 * Revisions have no gaps or repeats. The feed alone cannot show that: it lists each message,
 * agent and key once, at its newest rev, so a claimed message or a key written again hides its
 * older revs. What holds instead:
 * - the feed's revs strictly increase across pages and its last is the room's rev;
 * - no two writes the server acknowledged (agents, messages, CAS, claims) share a rev, and
 *   none is above the room's rev;
 * - each write takes exactly one rev, and the writes can be counted from the end state: agents
 *   registered + messages in the log + the final version of each key (versions grow by one per
 *   write and nothing is deleted) + claims answered 200. Claims whose answer was lost may or
 *   may not have written, so the room's rev must lie between that count and the count plus
 *   those claims: below means two writes shared a rev, above means a rev was skipped;
 * - every rev from 1 to the room's rev is seen somewhere (feed, message ids, acknowledged
 *   answers, revs read back), except at most one per write whose answer was lost (it may have
 *   written a rev that a later write hid).
 */
function checkRevisions(run: Run, final: Final, acked: Write[], unknown: Write[]) {
  const v = run.violations;
  const top = final.roomRev;
  let gaps = 0;
  let repeats = 0;
  let last = 0;
  const seen = new Set<number>();
  for (const page of final.changes) {
    for (const rev of page.revs) {
      if (rev <= last) {
        repeats++;
        v.push(`/changes?after=${page.after} returned rev ${rev} after rev ${last}`);
      }
      if (rev > top) v.push(`/changes returned rev ${rev}, above the room's rev ${top}`);
      last = Math.max(last, rev);
      seen.add(rev);
    }
  }
  if (last !== top) v.push(`the feed ends at rev ${last}, the room is at rev ${top}`);

  const owner = new Map<number, string>();
  const claim = (rev: number, what: string) => {
    if (rev > top) v.push(`${what} was acknowledged at rev ${rev}, above the room's rev ${top}`);
    const other = owner.get(rev);
    if (other) {
      repeats++;
      v.push(`rev ${rev} was acknowledged for two writes: ${other} and ${what}`);
    }
    owner.set(rev, what);
    seen.add(rev);
  };
  run.agentRevs.forEach((rev, i) => claim(rev, `agent ${run.agents[i].id}`));
  for (const w of acked) claim(w.answer.rev, `${w.method} ${w.path} key ${w.key}`);
  for (const m of final.messages) seen.add(m.id);
  for (const rev of run.observedRevs) seen.add(rev);
  for (const w of run.writes) if (w.answer?.current?.rev) seen.add(w.answer.current.rev);

  const claimsAcked = acked.filter((w) => w.kind === "claim").length;
  const claimsUnknown = unknown.filter((w) => w.kind === "claim").length;
  const versions = [...final.versions.values()].reduce((a, b) => a + b, 0);
  const least = run.agents.length + final.messages.length + versions + claimsAcked;
  const most = least + claimsUnknown;
  if (top < least) {
    repeats += least - top;
    v.push(`the room is at rev ${top} after at least ${least} writes: revisions were reused`);
  }
  if (top > most) {
    gaps += top - most;
    v.push(
      `the room is at rev ${top} after at most ${most} writes: a rev was skipped or a write ran twice`,
    );
  }
  const unseen = [];
  for (let rev = 1; rev <= top; rev++) if (!seen.has(rev)) unseen.push(rev);
  const excusable = unknown.filter((w) => w.kind !== "message").length;
  if (unseen.length > excusable) {
    gaps = Math.max(gaps, unseen.length - excusable);
    v.push(
      `${unseen.length} revs are accounted for by no write (${unseen.slice(0, 10)}), ` +
        `only ${excusable} writes lost their answer: a rev was skipped or a write ran twice`,
    );
  }
  return {
    gaps,
    repeats,
    writes: least === most ? `${least} writes` : `${least} to ${most} writes`,
  };
}

/** The compare-and-set history of each key is linearizable as a register with a version. */
function checkHistories(run: Run): string {
  const byKey = new Map<string, Operation<RegisterInput, RegisterOutput>[]>();
  const add = (key: string, op: Operation<RegisterInput, RegisterOutput>) =>
    byKey.set(key, [...(byKey.get(key) ?? []), op]);
  for (const r of run.reads) add(r.stateKey, r);
  for (const w of run.writes) {
    if (w.kind !== "cas") continue;
    add(w.stateKey!, { input: w.input!, output: casOutput(w), call: w.call, ret: w.ret });
  }
  const results = [];
  let ops = 0;
  let bad = false;
  for (const [key, history] of [...byKey].sort()) {
    const r = checkLinearizable(REGISTER, history);
    ops += history.length;
    if (r.result !== "linearizable") {
      bad = true;
      run.violations.push(`the history of ${key} (${history.length} operations) is ${r.result}`);
      run.violations.push(...explain(run, key, history));
    }
    results.push(`${key} ${r.result}`);
  }
  return `${bad ? "VIOLATED" : "ok"} over ${ops} operations (${results.join(", ")})`;
}

/** The usual cause, named: a value was seen that no write answered 200 for. */
function explain(run: Run, key: string, history: Operation<RegisterInput, RegisterOutput>[]) {
  const written = new Set(
    history.filter((op) => op.output?.kind === "ok").map((op) =>
      JSON.stringify((op.input as { value: unknown }).value)
    ),
  );
  const seen = new Map<string, number>();
  for (const op of history) {
    if (op.output && op.output.kind !== "ok" && op.output.version > 0) {
      seen.set(JSON.stringify(op.output.value), op.output.version);
    }
  }
  const lines = [];
  for (const [value, version] of seen) {
    if (written.has(value)) continue;
    const w = run.writes.find((w) =>
      w.stateKey === key && JSON.stringify(JSON.parse(w.body).value) === value
    );
    lines.push(
      `  ${key} was seen at version ${version} holding ${value}, which no write answered 200 for` +
        (w
          ? `: its write answered ${w.status} ${w.answer?.error ?? ""}` +
            `${w.retried ? " to a retry after a lost answer" : ""}`
          : ""),
    );
  }
  return lines;
}

function casOutput(w: Write): RegisterOutput | undefined {
  if (w.status === 200) return { kind: "ok", version: w.answer.version };
  if (w.status === 409 && w.answer.error === "version_conflict") {
    const current = w.answer.current;
    return { kind: "conflict", version: current?.version ?? 0, value: current?.value ?? null };
  }
  return undefined;
}

/** For each task, at most one agent got a 200 claim, and it is the holder everyone else saw. */
function checkClaims(run: Run, final: Final): string {
  const holders = new Map(final.messages.map((m) => [m.id, m.claim?.agent ?? null]));
  const byTask = new Map<number, Write[]>();
  for (const w of run.writes) {
    if (w.kind === "claim") byTask.set(w.msgId!, [...(byTask.get(w.msgId!) ?? []), w]);
  }
  let doubles = 0;
  for (const [id, claims] of byTask) {
    const winners = new Set(claims.filter((w) => w.status === 200).map((w) => w.agent.id));
    const maybe = new Set(claims.filter((w) => w.status === undefined).map((w) => w.agent.id));
    const holder = holders.get(id) ?? null;
    if (winners.size > 1) {
      doubles++;
      run.violations.push(`task ${id} was claimed with 200 by ${[...winners].join(" and ")}`);
    }
    const expected = winners.size === 1 ? [...winners] : [...maybe, null];
    if (!expected.includes(holder)) {
      run.violations.push(`task ${id} is held by ${holder}, expected one of ${expected}`);
    }
    for (const w of claims) {
      const named = w.status === 409 ? w.answer.claim?.agent : undefined;
      if (named !== undefined && named !== holder) {
        run.violations.push(`a claim of task ${id} was refused naming ${named}, holder ${holder}`);
      }
    }
  }
  const contested = [...byTask.values()].filter((c) => new Set(c.map((w) => w.agent.id)).size > 1);
  return `${byTask.size} tasks claimed (${contested.length} by several agents), ` +
    `${doubles} with two winners`;
}
