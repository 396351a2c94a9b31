// Issue 8, real server processes: a graceful stop, the bind address, a bad database, aborted uploads.
import assert from "node:assert/strict";
import { freePort, serverTest as test, startArgs } from "./servers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The `deno task start` command line, run with this Deno binary. */
const ARGS: string[] = await startArgs();

/** A server process whose whole stdout and stderr are kept. */
interface Proc {
  url: string;
  process: Deno.ChildProcess;
  /** Everything printed so far. */
  out(): string;
  err(): string;
  /** Resolves with the exit code once the process ended and its output was read. */
  exited: Promise<number>;
}

function spawn(env: Record<string, string>): Proc {
  const port = freePort();
  const process = new Deno.Command(Deno.execPath(), {
    args: ARGS,
    cwd: ROOT,
    env: { PORT: String(port), ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const drain = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  };
  const read = Promise.all([
    drain(process.stdout, (s) => out += s),
    drain(process.stderr, (s) => err += s),
  ]);
  return {
    url: `http://127.0.0.1:${port}`,
    process,
    out: () => out,
    err: () => err,
    exited: Promise.all([process.status, read]).then(([s]) => s.code),
  };
}

async function start(env: Record<string, string>): Promise<Proc> {
  const p = spawn(env);
  for (let i = 0; i < 3000 && !p.out().includes("listening"); i++) {
    const done = await Promise.race([p.exited, new Promise((r) => setTimeout(r, 10))]);
    if (typeof done === "number") throw new Error(`server exited ${done}: ${p.err()}`);
  }
  assert.match(p.out(), /listening/);
  return p;
}

/** Reads one HTTP answer with a JSON body from `conn`, or what came within 10 s. */
async function readAnswer(conn: Deno.Conn): Promise<string> {
  let answer = "";
  const buf = new Uint8Array(4096);
  const deadline = Date.now() + 10_000;
  while (!answer.endsWith("}") && Date.now() < deadline) {
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"late">((r) => setTimeout(() => r("late"), deadline - Date.now())),
    ]);
    if (n === null || n === "late") break;
    answer += new TextDecoder().decode(buf.subarray(0, n));
  }
  return answer;
}

async function post(url: string, token: string, body: unknown) {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} answers held waits with an empty page, closes the database and exits 0`, async (dir) => {
    const db = `${dir}/sync.db`;
    const server = await start({ SYNC_DB: db, SYNC_HOST: "127.0.0.1" });
    try {
      const room = await post(`${server.url}/rooms`, "", {});
      assert.equal(room.status, 201);
      const { id, token } = room.body;
      const sent = await post(`${server.url}/rooms/${id}/messages`, token, { body: "before" });
      assert.equal(sent.status, 201);
      const auth = { headers: { authorization: `Bearer ${token}` } };
      const held = [
        fetch(`${server.url}/rooms/${id}/messages?after=${sent.body.id}&wait=25`, auth),
        fetch(`${server.url}/rooms/${id}/changes?after=${sent.body.rev}&wait=25`, auth),
      ];
      for (const p of held) p.catch(() => {}); // awaited below; a dead server fails the test there
      // A write in flight: its headers and half its body are in when the signal comes.
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: Number(new URL(server.url).port),
      });
      const body = JSON.stringify({ body: "during the stop" });
      await conn.write(new TextEncoder().encode(
        `POST /rooms/${id}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${
          body.slice(0, 10)
        }`,
      ));
      // Let the server take all three requests before the signal.
      const health = await fetch(`${server.url}/health`);
      await health.body?.cancel();
      await new Promise((r) => setTimeout(r, 500));
      server.process.kill(signal);
      await new Promise((r) => setTimeout(r, 200));
      // While the upload holds the stop open, a new request is turned away at once.
      const late = await fetch(`${server.url}/health`);
      assert.equal(late.status, 503);
      assert.equal((await late.json()).error, "server_stopping");
      assert.equal(late.headers.get("retry-after"), "1");
      await conn.write(new TextEncoder().encode(body.slice(10)));
      const answer = await readAnswer(conn);
      conn.close();
      assert.match(
        answer,
        /^HTTP\/1\.1 201 /,
        `the write in flight finished: ${JSON.stringify(answer)} ${server.out()} ${server.err()}`,
      );
      const [messages, changes] = await Promise.all(held);
      assert.equal(messages.status, 200);
      const page = await messages.json();
      assert.ok(Array.isArray(page) && page.length <= 1, JSON.stringify(page));
      assert.equal(changes.status, 200);
      const feed = await changes.json();
      assert.ok(Array.isArray(feed.changes) && typeof feed.next === "number", JSON.stringify(feed));
      assert.equal(await server.exited, 0, server.err());
      assert.match(server.out(), /stopped/);
      assert.doesNotMatch(server.err(), /error|\bat /i, server.err());
      // SQLite removes the WAL when its last connection closes cleanly.
      assert.equal(await Deno.stat(`${db}-wal`).then(() => true, () => false), false);
    } finally {
      try {
        server.process.kill("SIGKILL");
      } catch { /* gone */ }
    }
  });
}

test("in open mode the server binds 127.0.0.1 and prints the address it bound", async (dir) => {
  const server = await start({ SYNC_DB: `${dir}/sync.db`, SYNC_AUTH: "open" });
  try {
    const port = new URL(server.url).port;
    assert.match(server.out(), new RegExp(`listening on http://127\\.0\\.0\\.1:${port}\\b`));
    const res = await fetch(`${server.url}/health`);
    assert.deepEqual(await res.json(), { ok: true, auth: "open" });
  } finally {
    server.process.kill("SIGTERM");
    await server.exited;
  }
});

test("in token mode the server binds 0.0.0.0 and says so", async (dir) => {
  const server = await start({ SYNC_DB: `${dir}/sync.db` });
  try {
    assert.match(server.out(), /listening on http:\/\/0\.0\.0\.0:\d+/);
  } finally {
    server.process.kill("SIGTERM");
    await server.exited;
  }
});

test("a corrupt or unusable database stops the start with one line naming SYNC_DB", async (dir) => {
  const corrupt = `${dir}/corrupt.db`;
  await Deno.writeTextFile(corrupt, "this is not a database, ".repeat(400));
  await Deno.writeTextFile(`${dir}/file`, "a file, not a directory");
  for (
    const [db, cause] of [[corrupt, /not a database/], [
      `${dir}/file/sync.db`,
      /mkdir/,
    ]] as const
  ) {
    const p = spawn({ SYNC_DB: db, SYNC_HOST: "127.0.0.1" });
    const code = await p.exited;
    assert.notEqual(code, 0);
    const lines = p.err().trim().split("\n");
    assert.equal(lines.length, 1, p.err());
    assert.match(lines[0], new RegExp(`SYNC_DB=${db.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`));
    assert.match(lines[0], cause);
    assert.doesNotMatch(p.out(), /listening/);
  }
});

test("an upload aborted mid-body logs one line, not a 500 with a stack", async (dir) => {
  const server = await start({ SYNC_DB: `${dir}/sync.db`, SYNC_HOST: "127.0.0.1" });
  try {
    const room = await post(`${server.url}/rooms`, "", {});
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(server.url).port),
    });
    await conn.write(new TextEncoder().encode(
      `POST /rooms/${room.body.id}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${room.body.token}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"body":"` +
        "x".repeat(1000),
    ));
    await new Promise((r) => setTimeout(r, 300));
    conn.close();
    for (let i = 0; i < 500 && !server.err().includes("aborted"); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const list = await fetch(`${server.url}/rooms/${room.body.id}/messages`, {
      headers: { authorization: `Bearer ${room.body.token}` },
    });
    assert.deepEqual(await list.json(), [], "nothing was written");
  } finally {
    server.process.kill("SIGTERM");
    await server.exited;
  }
  const lines = server.err().trim().split("\n");
  assert.equal(lines.length, 1, server.err());
  assert.match(lines[0], /request body aborted: POST \/rooms\/[^/]+\/messages/);
  assert.doesNotMatch(server.err(), /Internal error|\n\s+at /);
});

test("a body sent too slowly over a real connection is answered 408", async (dir) => {
  const server = await start({
    SYNC_DB: `${dir}/sync.db`,
    SYNC_HOST: "127.0.0.1",
    SYNC_BODY_TIMEOUT_MS: "300",
  });
  try {
    const room = await post(`${server.url}/rooms`, "", {});
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(server.url).port),
    });
    await conn.write(new TextEncoder().encode(
      `POST /rooms/${room.body.id}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${room.body.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"bo`,
    ));
    const answer = await readAnswer(conn);
    conn.close();
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /\r\nconnection: close\r\n/i, "the client is told not to reuse it");
    assert.match(answer, /"error":"request_timeout"/);
  } finally {
    server.process.kill("SIGTERM");
    await server.exited;
  }
  assert.equal(server.err(), "", "a timeout is an answer, not a log line");
});
