// The floor of this stack for the service's two hot routes: a bare Deno.serve doing only the
// service's own storage call, with no framework, no token check and no input validation.
// `POST /rooms/:id/messages` runs schema.ts's insertMessage (an Idempotency-Key commits its
// record with it, as in the service); `GET /rooms/:id/messages?after=N` runs listMessagesJson
// (limit 50) and splices the stored JSON. What the service costs beyond this is its own.
import { createHash } from "node:crypto";
import { openDb } from "../db.ts";
import * as q from "../schema.ts";

const port = Number(Deno.env.get("PORT") ?? 8002);
const db = await openDb({
  url: Deno.env.get("SYNC_DB"),
  synchronous: Deno.env.get("SYNC_SYNCHRONOUS") === "FULL" ? "FULL" : "NORMAL",
});
await q.migrate(db);
const JSON_TYPE = { "content-type": "application/json" };
const hash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 32);

async function handle(req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (url.pathname === "/health") return new Response('{"ok":true}', { headers: JSON_TYPE });
  const roomId = url.pathname.split("/")[2];
  if (req.method === "POST") {
    const text = await req.text();
    const b = JSON.parse(text);
    const key = req.headers.get("idempotency-key");
    const idem = key === null ? undefined : {
      keyHash: hash(`key\n${req.headers.get("authorization")}\n${url.pathname}\n${key}`),
      requestHash: hash(text),
      at: Date.now(),
      secret: null,
    };
    const message = await q.insertMessage(db, {
      roomId,
      from: null,
      to: null,
      kind: b.kind ?? "message",
      body: b.body,
      replyTo: null,
    }, idem);
    return new Response(JSON.stringify(message), { status: 201, headers: JSON_TYPE });
  }
  const page = await q.listMessagesJson(db, roomId, {
    after: Number(url.searchParams.get("after") ?? 0),
    limit: 50,
  });
  return new Response(`[${page.items.join(",")}]`, { headers: JSON_TYPE });
}

Deno.serve({
  port,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`floor listening on ${port}`),
}, handle);
