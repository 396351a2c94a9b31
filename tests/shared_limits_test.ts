// Issue 11: limits kept in the shared database hold across instances; the proxy hop count.
import assert from "node:assert/strict";
import { mintToken } from "../auth.ts";
import { loadConfig } from "../config.ts";
import { openDb } from "../db.ts";
import { clientAddress } from "../limits.ts";
import { createService, type Service } from "../main.ts";
import { testConfig } from "./helpers.ts";

/** Two instances sharing one database file, as two processes behind a load balancer would. */
async function pair(env: Record<string, string>, driver: "embedded" | "libsql" = "libsql") {
  const dir = await Deno.makeTempDir();
  const make = () => {
    const config = testConfig(env);
    config.db = { ...config.db, url: `${dir}/shared.db`, driver };
    return createService(config);
  };
  const a = make();
  await a.db(); // migrated once, so the two do not race here (tests/sqld_test.ts races them)
  const b = make();
  return {
    a,
    b,
    dir,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function call(s: Service, ip: string, method: string, path: string, init: RequestInit = {}) {
  return s.fetch(
    new Request(`http://test${path}`, { method, ...init }),
    { remoteAddr: { hostname: ip } },
  );
}

const createRoom = (s: Service, ip: string) =>
  call(s, ip, "POST", "/rooms", { headers: { "content-type": "application/json" }, body: "{}" });

// A 100-second window: one rarely turns over during a test.
const SHARED = { SYNC_LIMITS: "db", SYNC_RATE_LIMIT: "6", SYNC_RATE_BURST: "10" };

function test(name: string, fn: () => void | Promise<void>) {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

test("SYNC_LIMITS=db counts rooms created per address across instances", async () => {
  await using p = await pair({ ...SHARED, SYNC_ROOMS_PER_HOUR: "3" });
  const statuses = [];
  for (const s of [p.a, p.b, p.a, p.b]) {
    const res = await createRoom(s, "10.0.0.1");
    statuses.push(res.status);
    if (res.status === 429) {
      const body = await res.json();
      assert.equal(body.error, "rate_limited");
      assert.doesNotMatch(JSON.stringify(body), /as_room_/);
      const retry = Number(res.headers.get("retry-after"));
      assert.ok(retry >= 1 && retry <= 3600, `Retry-After ${retry}`);
    } else await res.body?.cancel();
  }
  assert.deepEqual(statuses, [201, 201, 201, 429]);
  const other = await createRoom(p.b, "10.0.0.2");
  assert.equal(other.status, 201, "another address has its own budget");
  await other.body?.cancel();
});

test("SYNC_LIMITS=db counts a token's requests across instances", async () => {
  await using p = await pair(SHARED);
  const res = await createRoom(p.a, "10.0.0.3");
  const room = await res.json();
  const statuses = [];
  for (let i = 0; i < 14; i++) {
    const r = await call(i % 2 ? p.a : p.b, "10.0.0.3", "GET", `/rooms/${room.id}`, {
      headers: { authorization: `Bearer ${room.token}` },
    });
    statuses.push(r.status);
    if (r.status === 429) {
      assert.equal((await r.json()).error, "rate_limited");
      assert.match(r.headers.get("ratelimit") ?? "", /^limit=10, remaining=0, reset=\d+$/);
    } else await r.body?.cancel();
  }
  // The burst of 10 is one budget for both instances; the window may turn over at most once.
  const served = statuses.filter((s) => s === 200).length;
  assert.ok(served >= 10 && served < 14, `served ${served}: ${statuses}`);
  assert.ok(statuses.includes(429));
  const view = await call(p.b, "10.0.0.3", "GET", `/rooms/${room.id}`, {
    headers: { authorization: `Bearer ${room.view_token}` },
  });
  assert.equal(view.status, 200, "another token of the same address is not affected");
  await view.body?.cancel();
});

/** The index of the fixed window a limit of `perMinute` and `burst` is in now. */
function windowNow(perMinute: number, burst: number): number {
  return Math.floor(Date.now() / (Math.ceil(burst / (perMinute / 60)) * 1000));
}

test("SYNC_LIMITS=db lets a busy client past its burst by at most burst / 10 per instance", async () => {
  // A 100-second window, so the test almost never sees one turn over (and checks when it does).
  const env = { SYNC_LIMITS: "db", SYNC_RATE_LIMIT: "60", SYNC_RATE_BURST: "100" };
  await using p = await pair(env);
  const res = await createRoom(p.a, "10.0.0.7");
  const room = await res.json();
  const before = windowNow(60, 100);
  let served = 0;
  for (let i = 0; i < 200; i++) {
    const r = await call(i % 2 ? p.a : p.b, "10.0.0.7", "GET", `/rooms/${room.id}`, {
      headers: { authorization: `Bearer ${room.token}` },
    });
    if (r.status === 200) served++;
    else assert.equal(r.status, 429);
    await r.body?.cancel();
  }
  if (windowNow(60, 100) === before) {
    assert.ok(served >= 100 && served <= 120, `served ${served} of 200`);
  }
  assert.ok(served < 200, "the budget is shared");
});

test("SYNC_LIMITS=db counts made-up tokens per address across instances", async () => {
  await using p = await pair(SHARED);
  const res = await createRoom(p.a, "10.0.0.4");
  const room = await res.json();
  const use = () =>
    call(p.b, "10.6.6.6", "GET", `/rooms/${room.id}`, {
      headers: { authorization: `Bearer ${room.token}` },
    });
  await (await use()).body?.cancel();
  const statuses = [];
  for (let i = 0; i < 30; i++) {
    const r = await call(i % 2 ? p.a : p.b, "10.6.6.6", "GET", `/rooms/${room.id}`, {
      headers: { authorization: `Bearer ${mintToken("room")}` },
    });
    statuses.push(r.status);
    await r.body?.cancel();
  }
  assert.deepEqual(new Set(statuses), new Set([404, 429]));
  // 10 failures fill the budget; a window turning over mid-test could allow 10 more.
  const refused = statuses.filter((s) => s === 404).length;
  assert.ok(refused >= 10 && refused <= 20, `404s: ${refused}`);
  const good = await use();
  assert.equal(good.status, 200, "a token that worked on this instance still does");
  const d = await openDb({ url: `${p.dir}/shared.db` });
  try {
    const rs = await d.execute({
      sql: "SELECT count(*) FROM limit_windows WHERE bucket LIKE 'rate:%'",
    });
    const rows = Number((rs.rows[0] as unknown[])[0]);
    // One per made-up token let through to fail, one for the room token, one for its creation.
    assert.ok(rows <= refused + 2, `${rows} rate rows for ${refused} failures`);
  } finally {
    d.close();
  }
  await good.body?.cancel();
});

test("SYNC_LIMITS=memory keeps each instance's count apart", async () => {
  await using p = await pair({ ...SHARED, SYNC_LIMITS: "memory", SYNC_ROOMS_PER_HOUR: "2" });
  for (const s of [p.a, p.a, p.b, p.b]) {
    const res = await createRoom(s, "10.0.0.5");
    assert.equal(res.status, 201);
    await res.body?.cancel();
  }
});

test("limit windows that are over are removed from the database", async () => {
  await using p = await pair(SHARED, "embedded");
  const d = await openDb({ url: `${p.dir}/shared.db` });
  try {
    await d.execute({
      sql: "INSERT INTO limit_windows (bucket, window_end, hits) VALUES ('rate:old', ?, 5)",
      args: [new Date(Date.now() - 1000).toISOString()],
    });
    const res = await createRoom(p.b, "10.0.0.6");
    assert.equal(res.status, 201);
    await res.body?.cancel();
    let left = 1;
    for (let i = 0; i < 100 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const rs = await d.execute({
        sql: "SELECT count(*) FROM limit_windows WHERE bucket = 'rate:old'",
      });
      left = Number((rs.rows[0] as unknown[])[0]);
    }
    assert.equal(left, 0);
    const rs = await d.execute({ sql: "SELECT bucket FROM limit_windows" });
    const stored = JSON.stringify(rs.rows);
    assert.ok(rs.rows.length > 0, "this request's windows are kept");
    assert.doesNotMatch(stored, /10\.0\.0\.6|as_room_/, "no address or token is stored");
  } finally {
    d.close();
  }
});

test("SYNC_LIMITS defaults to db for a remote database and on Val Town, memory otherwise", () => {
  assert.equal(loadConfig({ SYNC_DB: "http://127.0.0.1:8080" }).limits, "db");
  assert.equal(loadConfig({ SYNC_DB: "libsql://x.turso.io" }).limits, "db");
  assert.equal(loadConfig({ valtown: "1" }).limits, "db");
  assert.equal(loadConfig({}).limits, "memory");
  assert.equal(loadConfig({ SYNC_DB: "./data/x.db" }).limits, "memory");
  assert.equal(loadConfig({ SYNC_DB: "http://h", SYNC_LIMITS: "memory" }).limits, "memory");
  assert.throws(() => loadConfig({ SYNC_LIMITS: "redis" }), /SYNC_LIMITS must be "db" or "memory"/);
});

test("SYNC_TRUST_PROXY takes the client from that many X-Forwarded-For entries from the end", () => {
  assert.equal(loadConfig({}).trustProxy, 0);
  assert.equal(loadConfig({ valtown: "1" }).trustProxy, 1);
  assert.equal(loadConfig({ SYNC_TRUST_PROXY: "1" }).trustProxy, 1);
  assert.equal(loadConfig({ SYNC_TRUST_PROXY: "2", valtown: "1" }).trustProxy, 2);
  assert.equal(loadConfig({ SYNC_TRUST_PROXY: "0", valtown: "1" }).trustProxy, 0);
  assert.throws(() => loadConfig({ SYNC_TRUST_PROXY: "yes" }), /SYNC_TRUST_PROXY="yes"/);
  const xff = "6.6.6.6, 1.1.1.1, 2.2.2.2";
  assert.equal(clientAddress(xff, 0, "9.9.9.9"), "9.9.9.9", "0: the connection");
  assert.equal(clientAddress(xff, 1, "9.9.9.9"), "2.2.2.2", "1: the entry the proxy appended");
  assert.equal(clientAddress(xff, 2, "9.9.9.9"), "1.1.1.1");
  assert.equal(clientAddress("2.2.2.2", 2, "9.9.9.9"), "9.9.9.9", "fewer entries than hops");
  assert.equal(clientAddress(undefined, 1, "9.9.9.9"), "9.9.9.9");
  assert.equal(clientAddress(undefined, 1, undefined), "local");
});

test("SYNC_TRUST_PROXY=2 counts rooms by the second-to-last X-Forwarded-For entry", async () => {
  await using p = await pair({ ...SHARED, SYNC_TRUST_PROXY: "2", SYNC_ROOMS_PER_HOUR: "1" });
  const create = (xff: string) =>
    p.a.fetch(
      new Request("http://test/rooms", {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": xff },
        body: "{}",
      }),
      { remoteAddr: { hostname: "10.1.1.1" } },
    );
  const first = await create("spoofed-1, 203.0.113.7, 10.0.0.9");
  assert.equal(first.status, 201);
  await first.body?.cancel();
  const spoofing = await create("spoofed-2, 203.0.113.7, 10.0.0.9");
  assert.equal(spoofing.status, 429, "a client cannot pick its own address");
  await spoofing.body?.cancel();
  const other = await create("203.0.113.8, 10.0.0.9");
  assert.equal(other.status, 201);
  await other.body?.cancel();
});
