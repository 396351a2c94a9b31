// CPU of a POST with an Idempotency-Key against one without, in process, on each driver.
// deno run --allow-all --unstable-no-legacy-abort bench/keyed.ts [requests per round]
import process from "node:process";
import { loadConfig } from "../config.ts";
import { createService } from "../main.ts";

const N = Number(Deno.args[0] ?? 2000);
const ROUNDS = 5;

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

for (const driver of ["embedded", "libsql"] as const) {
  const dir = await Deno.makeTempDir({ prefix: "agent-sync-keyed-" });
  const config = loadConfig({ SYNC_RATE_LIMIT: "off", SYNC_MAX_MESSAGES: "0" });
  config.db = { ...config.db, url: `${dir}/bench.db`, driver };
  const service = createService(config);
  const created = await service.fetch(
    new Request("http://bench/rooms", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    }),
  );
  const room = await created.json();
  const body = JSON.stringify({ kind: "message", body: { text: "hello from the bench", n: 1 } });
  let seq = 0;
  const run = async (keyed: boolean) => {
    const t0 = cpuUs();
    for (let i = 0; i < N; i++) {
      const headers: Record<string, string> = {
        "content-type": "application/json",
        authorization: `Bearer ${room.token}`,
      };
      if (keyed) headers["idempotency-key"] = `bench-${++seq}`;
      const res = await service.fetch(
        new Request(`http://bench/rooms/${room.id}/messages`, { method: "POST", headers, body }),
      );
      if (res.status !== 201) throw new Error(`${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
    return (cpuUs() - t0) / N;
  };
  await run(false), await run(true); // warm up
  const plain: number[] = [];
  const keyed: number[] = [];
  for (let r = 0; r < ROUNDS; r++) plain.push(await run(false)), keyed.push(await run(true));
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const p = median(plain);
  const k = median(keyed);
  console.log(
    `${driver.padEnd(8)} unkeyed POST ${p.toFixed(0)} µs CPU, keyed ${k.toFixed(0)} µs: ratio ${
      (k / p).toFixed(2)
    } (${ROUNDS} interleaved rounds of ${N}, medians)`,
  );
  await service.close();
  await Deno.remove(dir, { recursive: true });
}
