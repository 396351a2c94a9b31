// Issue 11: main.ts run as Val Town runs it (imported, no deno.json, net and env only, std/sqlite).
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { untilListening } from "./servers.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const VAL_TOKEN = "vt_test_token";

/**
 * The HTTP API std/sqlite talks to, over one SQLite file: statements in as JSON, rows out as
 * arrays, each batch one transaction.
 */
function sqliteApi(path: string) {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL");
  let requests = 0;
  const run = ({ sql, args }: { sql: string; args: unknown[] }) => {
    const stmt = db.prepare(sql);
    // deno-lint-ignore no-explicit-any
    const params = args as any[];
    const columns = stmt.columns().map((c) => c.name);
    if (columns.length > 0) {
      (stmt as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
      const rows = stmt.all(...params) as unknown as unknown[][];
      return { columns, columnTypes: [], rows, rowsAffected: 0, lastInsertRowid: null };
    }
    const info = stmt.run(...params);
    return {
      columns: [],
      columnTypes: [],
      rows: [],
      rowsAffected: Number(info.changes),
      lastInsertRowid: Number(info.lastInsertRowid),
    };
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (req.method === "POST") requests++;
    if (req.method === "POST" && req.headers.get("authorization") !== `Bearer ${VAL_TOKEN}`) {
      return Response.json({ error: "unauthorized" }, { status: 401 });
    }
    const { pathname } = new URL(req.url);
    if (req.method === "GET" && pathname.startsWith("/v/std/sqlite/")) {
      // The stand-in module itself, served like esm.town serves the real one.
      const file = new URL(pathname.slice("/v/std/sqlite/".length), FIXTURES);
      return new Response(await Deno.readTextFile(file), {
        headers: { "content-type": "application/typescript" },
      });
    }
    const body = await req.json();
    try {
      if (pathname === "/v1/sqlite/execute") {
        assert.ok(Array.isArray(body.statement.args), "args travel as a JSON array");
        return Response.json(run(body.statement));
      }
      if (pathname === "/v1/sqlite/batch") {
        db.exec(body.mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN");
        try {
          const results = body.statements.map(run);
          db.exec("COMMIT");
          return Response.json(results);
        } catch (err) {
          if (db.isTransaction) db.exec("ROLLBACK");
          throw err;
        }
      }
      return Response.json({ error: "not found" }, { status: 404 });
    } catch (err) {
      return Response.json({ error: String(err) }, { status: 400 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests: () => requests,
    async close() {
      await server.shutdown();
      db.close();
    },
  };
}

/** Starts the val: the entry module, an import map for std/sqlite, and Val Town's permissions. */
async function startVal(
  dir: string,
  stdSqlite: string,
  apiUrl: string,
  env: Record<string, string>,
) {
  const importMap = `${dir}/import_map_${stdSqlite}.json`;
  await Deno.writeTextFile(
    importMap,
    JSON.stringify({
      imports: { "https://esm.town/v/std/sqlite/main.ts": `${apiUrl}/v/std/sqlite/${stdSqlite}` },
    }),
  );
  const keep = ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"];
  const inherited = Object.fromEntries(
    keep.flatMap((k) => Deno.env.get(k) ? [[k, Deno.env.get(k)!]] : []),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-config",
      "--no-lock",
      `--import-map=${importMap}`,
      "--allow-net",
      "--allow-env",
      // Val Town lets a val import from esm.town; here the stand-in's host plays that part.
      `--allow-import=${new URL(apiUrl).host}`,
      `--reload=${apiUrl}/`,
      new URL("valtown_entry.ts", FIXTURES).pathname,
    ],
    // No SYNC_DB: on Val Town the val's own database is used.
    clearEnv: true,
    env: { ...inherited, NO_COLOR: "1", valtown: VAL_TOKEN, VALTOWN_API_URL: apiUrl, ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = await untilListening(child, "val listening");
  assert.match(out, /X-Forwarded-For entry 1 from the end/, "the trusted hop is logged at start");
  assert.match(out, /limits kept in the database/);
  return {
    url: /val listening on (\S+)/.exec(out)![1],
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

interface Res {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
}

async function call(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; ip?: string } = {},
): Promise<Res> {
  const headers: Record<string, string> = { "x-forwarded-for": opts.ip ?? "203.0.113.1" };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  return { status: res.status, body: await res.json() };
}

for (const shape of ["named", "default"]) {
  Deno.test({
    name: `the README's flows pass on two Val Town instances sharing std/sqlite (${shape} export)`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      const api = sqliteApi(`${dir}/val.db`);
      const env = { SYNC_ROOMS_PER_HOUR: "3" };
      const vals = [];
      try {
        const std = `valtown_sqlite_${shape}.ts`;
        vals.push(
          ...await Promise.all([
            startVal(dir, std, api.url, env),
            startVal(dir, std, api.url, env),
          ]),
        );
        const [A, B] = vals.map((v) => v.url);

        // Create a room on one instance, use it from the other.
        const room = await call(A, "POST", "/rooms", { body: { meta: { goal: "ship v1" } } });
        assert.equal(room.status, 201, JSON.stringify(room.body));
        const { id, token } = room.body;
        const read = await call(B, "GET", `/rooms/${id}`, { token });
        assert.equal(read.status, 200);
        assert.deepEqual(read.body.meta, { goal: "ship v1" });

        const alice = await call(B, "POST", `/rooms/${id}/agents`, {
          token,
          body: { id: "alice", name: "Alice", role: "planner" },
        });
        assert.equal(alice.status, 201);
        const bob = await call(A, "POST", `/rooms/${id}/agents`, {
          token,
          body: { id: "bob", name: "Bob", role: "coder" },
        });
        assert.equal(bob.status, 201);
        const agents = await call(A, "GET", `/rooms/${id}/agents`, { token });
        assert.deepEqual(agents.body.map((a: { id: string }) => a.id).sort(), ["alice", "bob"]);

        // Post on one, poll on the other; a held poll wakes on a write from the other.
        const held = call(A, "GET", `/rooms/${id}/messages?after=0&wait=20`, {
          token: bob.body.token,
        });
        await new Promise((r) => setTimeout(r, 300));
        const task = await call(B, "POST", `/rooms/${id}/messages`, {
          token: alice.body.token,
          body: { kind: "task", to: "bob", body: { title: "Write the parser", n: 1 } },
        });
        assert.equal(task.status, 201);
        assert.equal(task.body.from_agent, "alice");
        const polled = await held;
        assert.equal(polled.status, 200);
        assert.deepEqual(polled.body.map((m: { id: number }) => m.id), [task.body.id]);
        assert.deepEqual(polled.body[0].body, { title: "Write the parser", n: 1 });

        // Claim: one winner across instances.
        const claims = await Promise.all([
          call(A, "POST", `/rooms/${id}/messages/${task.body.id}/claim`, {
            token: bob.body.token,
          }),
          call(B, "POST", `/rooms/${id}/messages/${task.body.id}/claim`, {
            token: alice.body.token,
          }),
        ]);
        assert.deepEqual(claims.map((c) => c.status).sort(), [200, 409]);

        // State with compare-and-set.
        const put = await call(A, "PUT", `/rooms/${id}/state`, {
          token: bob.body.token,
          body: { key: "lock", value: { by: "bob" }, if_version: 0 },
        });
        assert.equal(put.status, 200);
        assert.equal(put.body.version, 1);
        const lost = await call(B, "PUT", `/rooms/${id}/state`, {
          token: alice.body.token,
          body: { key: "lock", value: { by: "alice" }, if_version: 0 },
        });
        assert.equal(lost.status, 409);
        assert.equal(lost.body.current.version, 1);
        const next = await call(B, "PUT", `/rooms/${id}/state`, {
          token: alice.body.token,
          body: { key: "lock", value: { by: "alice" }, if_version: 1 },
        });
        assert.equal(next.status, 200);
        assert.equal(next.body.version, 2);

        // The change feed, read from either instance, holds everything in revision order.
        const changes = await call(A, "GET", `/rooms/${id}/changes?after=0`, { token });
        assert.equal(changes.status, 200);
        const revs = changes.body.changes.map((c: { rev: number }) => c.rev);
        assert.deepEqual(revs, [...revs].sort((x, y) => x - y));
        assert.deepEqual(
          changes.body.changes.map((c: { type: string }) => c.type).sort(),
          ["agent", "agent", "message", "state"],
        );
        assert.equal(changes.body.next, next.body.rev);

        // The rooms-per-address budget is kept in the val's database, not in each isolate.
        const more = [];
        for (const base of [B, A, B]) {
          more.push((await call(base, "POST", "/rooms", { body: {} })).status);
        }
        assert.deepEqual(more, [201, 201, 429]);
        assert.ok(api.requests() > 0, "every statement went through std/sqlite");
      } finally {
        for (const v of vals) await v.stop();
        await api.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
