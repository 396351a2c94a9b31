// The HTTP ceiling of this machine: a bare Deno.serve answering a small JSON, nothing else.
const port = Number(Deno.env.get("PORT") ?? 8001);
const BODY = JSON.stringify({ ok: true, service: "bare" });

Deno.serve({
  port,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`bare listening on ${port}`),
}, () => new Response(BODY, { headers: { "content-type": "application/json" } }));
