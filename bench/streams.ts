// Event-stream fan-out: N raw connections stream one room's change feed; memory per stream and
// the time from one write until every stream has its event. Run by hand (not part of run.ts):
//   deno run -A bench/streams.ts [count=1000]
import { killAll, startService, SYNCHRONOUS } from "./harness.ts";
import { createFixture } from "./seed.ts";

const count = Number(Deno.args[0] ?? 1000);
const tmp = await Deno.makeTempDir({ prefix: "agent-sync-streams-" });

async function rssKb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

interface Stream {
  conn: Deno.Conn;
  text: string;
  /** When the text first held `id: <rev>` of the write, or 0. */
  gotAt: number;
}

try {
  const f = await createFixture(`${tmp}/streams.db`, 0, SYNCHRONOUS);
  const server = await startService(f, {
    SYNC_MAX_WAITS: String(count * 2),
    SYNC_MAX_WAITS_PER_CLIENT: String(count * 2),
  });
  const request = new TextEncoder().encode(
    `GET /rooms/${f.roomId}/changes?after=${f.rev} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
      `Authorization: Bearer ${f.agentToken}\r\nAccept: text/event-stream\r\n\r\n`,
  );
  await new Promise((r) => setTimeout(r, 500));
  const rssBefore = await rssKb(server.pid);
  let target = "";
  const streams: Stream[] = [];
  const read = async (s: Stream) => {
    const buf = new Uint8Array(4096);
    const decoder = new TextDecoder();
    try {
      while (true) {
        const n = await s.conn.read(buf);
        if (n === null) return;
        s.text += decoder.decode(buf.subarray(0, n), { stream: true });
        if (target && s.gotAt === 0 && s.text.includes(target)) s.gotAt = performance.now();
      }
    } catch { /* closed */ }
  };
  for (let i = 0; i < count; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, count - i) }, async () => {
        const s: Stream = { conn: await Deno.connect({ port: server.port }), text: "", gotAt: 0 };
        await s.conn.write(request);
        streams.push(s);
        read(s);
      }),
    );
  }
  // Every stream open: its headers and the retry hint arrived.
  const deadline = Date.now() + 30_000;
  while (streams.some((s) => !s.text.includes("retry:")) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const open = streams.filter((s) => s.text.startsWith("HTTP/1.1 200")).length;
  await new Promise((r) => setTimeout(r, 500));
  const rssHolding = await rssKb(server.pid);

  const t0 = performance.now();
  target = `id: ${f.rev + 1}\n`;
  const res = await fetch(`${server.base}/rooms/${f.roomId}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${f.agentToken}`, "content-type": "application/json" },
    body: JSON.stringify({ body: { text: "to every stream" } }),
  });
  await res.body?.cancel();
  while (streams.some((s) => s.gotAt === 0) && performance.now() - t0 < 30_000) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const times = streams.filter((s) => s.gotAt > 0).map((s) => s.gotAt - t0).sort((a, b) => a - b);
  for (const s of streams) {
    try {
      s.conn.close();
    } catch { /* closed */ }
  }
  await server.stop();
  console.log(JSON.stringify({
    count,
    open,
    writeStatus: res.status,
    kbPerStream: Math.round((rssHolding - rssBefore) / Math.max(1, open)),
    received: times.length,
    firstMs: Math.round(times[0] ?? NaN),
    medianMs: Math.round(times[Math.floor(times.length / 2)] ?? NaN),
    allMs: Math.round(times[times.length - 1] ?? NaN),
  }));
} finally {
  await killAll();
  await Deno.remove(tmp, { recursive: true });
}
