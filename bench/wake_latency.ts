// Wake-up latency of a blocking wait: a waiter on one server, a message written through another
// (or the same) server; time from just before sending the write to the waiter's answer.
// Usage: wake_latency.ts <waiterBase> <writerBase> <room> <token> <samples> <minDelayMs> <maxDelayMs>
const [waiterBase, writerBase, room, token, samplesArg, minArg, maxArg] = Deno.args;
const samples = Number(samplesArg);
const [minDelay, maxDelay] = [Number(minArg), Number(maxArg)];
const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };

async function getJson(url: string, init: RequestInit = {}) {
  const res = await fetch(url, { headers, ...init });
  const body = await res.json();
  if (!res.ok) {
    throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${JSON.stringify(body)}`);
  }
  return body;
}

let rev = (await getJson(`${waiterBase}/rooms/${room}`)).rev as number;
const latencies: number[] = [];
const writes: number[] = [];
let early = 0;
let wrong = 0;

for (let i = 0; i < samples + 3; i++) {
  let answered = false;
  const waiter = getJson(`${waiterBase}/rooms/${room}/changes?after=${rev}&wait=10`).then((b) => {
    answered = true;
    return b;
  });
  // A random delay, so a cross-process waiter meets every phase of the server's poll timer.
  await new Promise((r) => setTimeout(r, minDelay + Math.random() * (maxDelay - minDelay)));
  if (answered) early++;
  const t0 = performance.now();
  const msg = await getJson(`${writerBase}/rooms/${room}/messages`, {
    method: "POST",
    body: JSON.stringify({ kind: "message", body: { text: "wake up", i } }),
  });
  const tw = performance.now();
  const got = await waiter;
  const t1 = performance.now();
  if (got.changes?.[0]?.rev !== msg.rev) wrong++;
  rev = msg.rev;
  if (i < 3) continue; // warm-up
  latencies.push(t1 - t0);
  writes.push(tw - t0);
}
console.log(JSON.stringify({ latencies, writes, early, wrong }));
