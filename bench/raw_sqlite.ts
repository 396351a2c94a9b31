// The storage ceiling: the service's own statements run in a loop on raw node:sqlite, no HTTP.
// Usage: raw_sqlite.ts <insert|plain|select|tail|upsert> <db> <seconds> <rounds> <room> <synchronous> [after]
// (select: `after` random below the given one; tail: `after` as given). Prints the best round.
// The SQL and arguments are captured from schema.ts itself, so they are the statements it runs;
// "plain" is the floor below them: a single-row INSERT into a table with no index or trigger.
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { cpuUsage } from "node:process";
import type { Db, ResultSet, Statement } from "../db.ts";
import { insertMessage, listMessages, putState } from "../schema.ts";

const [mode, path, secondsArg, roundsArg, roomId, synchronous, afterArg] = Deno.args;
const seconds = Number(secondsArg);
const rounds = Number(roundsArg);

/** A Db that runs nothing and keeps the statements schema.ts hands it. */
function recorder(): { db: Db; stmts: Statement[] } {
  const stmts: Statement[] = [];
  const empty: ResultSet = { columns: [], rows: [], rowsAffected: 0 };
  const db: Db = {
    driver: "recorder",
    execute: (s) => (stmts.push(s), Promise.resolve(empty)),
    batch: (s) => (stmts.push(...s), Promise.resolve(s.map(() => empty))),
    close: () => {},
  };
  return { db, stmts };
}

const AFTER_SENTINEL = 987_654_321;
const rec = recorder();
if (mode === "insert") {
  await insertMessage(rec.db, {
    roomId,
    from: "bench-agent",
    to: null,
    kind: "message",
    body: { text: "hello from the bench", n: 1 },
    replyTo: null,
  });
} else if (mode === "plain") {
  rec.stmts.push({
    sql: "INSERT INTO plain_bench (room_id, body) VALUES (?, ?)",
    args: [roomId, JSON.stringify({ text: "hello from the bench", n: 1 })],
  });
} else if (mode === "select" || mode === "tail") {
  await listMessages(rec.db, roomId, { after: AFTER_SENTINEL, limit: 50 });
} else if (mode === "upsert") {
  for (let k = 0; k < 100; k++) {
    await putState(rec.db, roomId, {
      scope: "_shared",
      key: `k${k}`,
      value: { status: "working", progress: 42 },
    }, 10_000);
  }
} else {
  throw new Error(`Unknown mode "${mode}"`);
}

const sqlite = new DatabaseSync(path);
sqlite.exec(
  `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA busy_timeout = 5000;`,
);
if (mode === "plain") {
  sqlite.exec(
    "CREATE TABLE IF NOT EXISTS plain_bench (id INTEGER PRIMARY KEY, room_id TEXT, body TEXT)",
  );
}
const stmt: StatementSync = sqlite.prepare(rec.stmts[0].sql);
// As db.ts does: rows as arrays.
(stmt as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
// deno-lint-ignore no-explicit-any
const argLists = rec.stmts.map((s) => s.args as any[]);
const afterIndex = argLists[0].indexOf(AFTER_SENTINEL);
const after = Number(afterArg ?? 0);

let rows = 0;
function once(i: number) {
  const args = argLists[i % argLists.length];
  if (afterIndex >= 0) {
    args[afterIndex] = mode === "tail" ? after : Math.floor(Math.random() * after);
  }
  rows += stmt.all(...args).length;
}

function loop(ms: number): number {
  const end = performance.now() + ms;
  let n = 0;
  while (true) {
    for (let j = 0; j < 64; j++) once(n++);
    if (performance.now() >= end) return n;
  }
}

loop(500); // warm-up
let best = { ops: 0, elapsed: 1, cpuUs: Infinity, rowsPerOp: 0 };
for (let r = 0; r < rounds; r++) {
  rows = 0;
  const c0 = cpuUsage();
  const t0 = performance.now();
  const ops = loop(seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  const c = cpuUsage(c0);
  const cpuUs = (c.user + c.system) / ops;
  if (ops / elapsed > best.ops / best.elapsed) {
    best = { ops, elapsed, cpuUs: best.cpuUs, rowsPerOp: rows / ops };
  }
  best.cpuUs = Math.min(best.cpuUs, cpuUs);
}
const wal = await Deno.stat(path + "-wal").then((s) => s.size).catch(() => 0);
sqlite.close();
console.log(JSON.stringify({
  mode,
  ops: best.ops,
  seconds: best.elapsed,
  rate: best.ops / best.elapsed,
  cpuUsPerOp: best.cpuUs,
  rowsPerOp: best.rowsPerOp,
  walBytes: wal,
  sql: rec.stmts[0].sql.replace(/\s+/g, " ").slice(0, 120),
}));
