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
}

async function openEmbedded(path: string, synchronous: string): Promise<Db> {
  const { DatabaseSync } = await import("node:sqlite");
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
      p = { stmt, columns, returnsRows: columns.length > 0 };
      cache.set(sql, p);
    }
    return p;
  };
  // Rows come back through all(), never get(): get() on a RETURNING statement leaves it
  // open and stops SQLite from resetting the WAL.
  const run = ({ sql, args = [] }: Statement): ResultSet => {
    const p = prepare(sql);
    // deno-lint-ignore no-explicit-any
    const params = args as any[];
    if (p.returnsRows) {
      const rows = p.stmt.all(...params) as unknown as RawRow[];
      return { columns: p.columns, rows, rowsAffected: /^\s*select/i.test(sql) ? 0 : rows.length };
    }
    const info = p.stmt.run(...params);
    return { columns: [], rows: [], rowsAffected: Number(info.changes) };
  };
  return {
    driver: `embedded node:sqlite (${path})`,
    execute: (stmt) => Promise.resolve().then(() => run(stmt)),
    batch: (stmts, mode = "deferred") =>
      Promise.resolve().then(() => {
        sqlite.exec(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN");
        try {
          const results = stmts.map(run);
          sqlite.exec("COMMIT");
          return results;
        } catch (err) {
          if (sqlite.isTransaction) sqlite.exec("ROLLBACK");
          throw err;
        }
      }),
    close: () => sqlite.close(),
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
  return {
    driver: `@libsql/client (${url.replace(/\?.*/, "")})`,
    execute: (stmt) => retryBusy(() => client.execute(stmt as never) as Promise<ResultSet>),
    batch: (stmts, mode = "deferred") =>
      retryBusy(() => client.batch(stmts as never, mode) as Promise<ResultSet[]>),
    close: () => client.close(),
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
  return {
    driver: "Val Town std/sqlite",
    execute: (stmt) => sqlite.execute(stmt),
    batch: (stmts, mode = "deferred") => sqlite.batch(stmts, mode),
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
