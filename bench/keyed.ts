// CPU of a POST with an Idempotency-Key against one without: the server process's CPU per request.
// deno run --allow-all bench/keyed.ts [requests per round]
// Starts the server as `deno task start` does, on each driver, and reads its CPU time from /proc.

import { freePort, startArgs, untilListening } from "../tests/servers.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const N = Number(Deno.args[0] ?? 2000);
const ROUNDS = 7;
const CLIENTS = 8;
const TICK_US = 1e6 / 100; // USER_HZ

async function serverCpuUs(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_US; // utime + stime
}

async function start(dir: string, driver: string) {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: await startArgs(),
    cwd: ROOT,
    env: {
      PORT: String(port),
      SYNC_HOST: "127.0.0.1",
      SYNC_DB: `${dir}/bench.db`,
      SYNC_DB_DRIVER: driver,
      SYNC_RATE_LIMIT: "off",
      SYNC_MAX_MESSAGES: "0",
    },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  await untilListening(child);
  return { url: `http://127.0.0.1:${port}`, child };
}

for (const driver of ["embedded", "libsql"]) {
  const dir = await Deno.makeTempDir({ prefix: "agent-sync-keyed-" });
  const { url, child } = await start(dir, driver);
  try {
    const room = await (await fetch(`${url}/rooms`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    })).json();
    const body = JSON.stringify({ kind: "message", body: { text: "hello from the bench", n: 1 } });
    let seq = 0;
    const run = async (keyed: boolean) => {
      const t0 = await serverCpuUs(child.pid);
      let left = N;
      await Promise.all(Array.from({ length: CLIENTS }, async () => {
        while (left-- > 0) {
          const headers: Record<string, string> = {
            "content-type": "application/json",
            authorization: `Bearer ${room.token}`,
          };
          if (keyed) headers["idempotency-key"] = `bench-${++seq}`;
          const res = await fetch(`${url}/rooms/${room.id}/messages`, {
            method: "POST",
            headers,
            body,
          });
          if (res.status !== 201) throw new Error(`${res.status} ${await res.text()}`);
          await res.arrayBuffer();
        }
      }));
      return (await serverCpuUs(child.pid) - t0) / N;
    };
    await run(false), await run(true); // warm up
    const plain: number[] = [];
    const keyed: number[] = [];
    for (let r = 0; r < ROUNDS; r++) plain.push(await run(false)), keyed.push(await run(true));
    // On a shared machine the fastest round is the one least disturbed by other processes.
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const [p, k] = [median(plain), median(keyed)];
    const [pMin, kMin] = [Math.min(...plain), Math.min(...keyed)];
    console.log(
      `${driver.padEnd(8)} server µs CPU per POST, unkeyed/keyed: median ${p.toFixed(0)}/${
        k.toFixed(0)
      } = ${(k / p).toFixed(2)}, best ${pMin.toFixed(0)}/${kMin.toFixed(0)} = ${
        (kMin / pMin).toFixed(2)
      } (${ROUNDS} interleaved rounds of ${N}, ${CLIENTS} connections)`,
    );
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
}
