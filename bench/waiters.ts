// Concurrent long-polls: opens N raw HTTP/1.1 connections that each wait on the change feed,
// checks they are all still held after a few seconds, then wakes them with one write.
// Usage: waiters.ts <port> <room> <token> <count> <holdSeconds> <serverPid>
const [portArg, room, token, countArg, holdArg, pidArg] = Deno.args;
const port = Number(portArg);
const count = Number(countArg);
const holdMs = Number(holdArg) * 1000;
const base = `http://127.0.0.1:${port}`;

async function rssKb(pid: string): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

const auth = { authorization: `Bearer ${token}` };
const rev = (await (await fetch(`${base}/rooms/${room}`, { headers: auth })).json()).rev as number;
const rssBefore = await rssKb(pidArg);

const request = new TextEncoder().encode(
  `GET /rooms/${room}/changes?after=${rev}&wait=25 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
);

interface Held {
  firstByteAt: number;
  doneAt: number;
  text: string;
}

/** Reads one whole response (the server closes the connection after it). */
async function readAll(conn: Deno.Conn, h: Held) {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(2048);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (h.firstByteAt === 0) h.firstByteAt = performance.now();
      chunks.push(buf.slice(0, n));
    }
  } catch {
    // reset by peer: counted as a failure below
  }
  h.doneAt = performance.now();
  h.text = new TextDecoder().decode(
    chunks.length === 1 ? chunks[0] : new Uint8Array(chunks.flatMap((c) => [...c])),
  );
  try {
    conn.close();
  } catch { /* already closed */ }
}

const held: Held[] = [];
const reads: Promise<void>[] = [];
const tOpen = performance.now();
let connectErrors = 0;
for (let i = 0; i < count; i += 250) {
  const batch = Array.from({ length: Math.min(250, count - i) }, async () => {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(request);
      const h: Held = { firstByteAt: 0, doneAt: 0, text: "" };
      held.push(h);
      reads.push(readAll(conn, h));
    } catch {
      connectErrors++;
    }
  });
  await Promise.all(batch);
  await new Promise((r) => setTimeout(r, 10));
}
const openMs = performance.now() - tOpen;

await new Promise((r) => setTimeout(r, holdMs));
const pendingAfterHold = held.filter((h) => h.firstByteAt === 0).length;
const rssSamples: number[] = [];
for (let i = 0; i < 3; i++) {
  rssSamples.push(await rssKb(pidArg));
  await new Promise((r) => setTimeout(r, 200));
}
const rssHolding = Math.max(...rssSamples);
const stillPending = held.filter((h) => h.firstByteAt === 0).length;

const t0 = performance.now();
const res = await fetch(`${base}/rooms/${room}/messages`, {
  method: "POST",
  headers: { ...auth, "content-type": "application/json" },
  body: JSON.stringify({ kind: "message", body: { text: "wake up, all of you" } }),
});
const written = await res.json();
const writeMs = performance.now() - t0;
const timeout = new Promise((r) => setTimeout(r, 30_000, "timeout"));
const finished = await Promise.race([Promise.all(reads), timeout]);

const ok =
  held.filter((h) =>
    h.text.startsWith("HTTP/1.1 200") && h.text.includes(`"type":"message"`) &&
    h.text.includes(`"rev":${written.rev}`)
  ).length;
const wakeTimes = held.filter((h) => h.doneAt > 0).map((h) => h.doneAt - t0).sort((a, b) => a - b);
const statuses: Record<string, number> = {};
for (const h of held) {
  const s = /^HTTP\/1\.1 (\d+)/.exec(h.text)?.[1] ?? "none";
  statuses[s] = (statuses[s] ?? 0) + 1;
}
console.log(JSON.stringify({
  count,
  opened: held.length,
  connectErrors,
  openMs,
  pendingAfterHold,
  stillPending,
  rssBefore,
  rssHolding,
  writeStatus: res.status,
  writeMs,
  timedOut: finished === "timeout",
  ok,
  statuses,
  wakeMedianMs: wakeTimes[Math.floor(wakeTimes.length / 2)] ?? null,
  wakeAllMs: wakeTimes[wakeTimes.length - 1] ?? null,
}));
