// The change feed (polled, waited on, or streamed) and the digest that sums it up for one agent.
import { z } from "npm:zod@^4.6.7";
import { type Api, JSON_TYPE } from "../context.ts";
import { queryInt } from "../http.ts";
import { digest, DIGEST_DEFAULT_BYTES, DIGEST_MAX_BYTES, DIGEST_MIN_BYTES } from "../digest.ts";
import { ChangesPageSchema, DigestSchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";
import { changeStream, streamCursor, wantsStream } from "../stream.ts";

export function changeOperations(api: Api) {
  const { id, limit, wait } = api.in;
  return [
    operation({
      name: "listChanges",
      method: "GET",
      path: "/rooms/:id/changes",
      summary: "Every write to the room after a cursor: messages, agents and state, in order",
      description:
        "Each entity appears at its latest revision; a lease or ttl that ran out is a change too. Pass `next` as `after` to continue; `wait=<seconds>` holds the request until something changes. With `Accept: text/event-stream` the feed streams as server-sent events (`id: <rev>`, data = one change), resumed with `Last-Event-ID`; the server ends each stream after SYNC_STREAM_SECONDS.",
      who: "read",
      params: z.object({ id }),
      query: z.strictObject({ after: queryInt.optional(), limit, wait: wait.optional() }),
      answers: {
        200: {
          description: "Changes and the next cursor, or the event stream",
          schema: ChangesPageSchema,
          stream: true,
        },
      },
      errors: [401, 404, 410],
      handler: async (c, { params: { id: roomId }, query: p, access: { room } }) => {
        const after = p.after ?? 0;
        if (wantsStream(c.req.header("accept"))) {
          const from = streamCursor(c.req.header("last-event-id"), after);
          api.checkCursor(room, from, "changes");
          return changeStream({
            db: c.get("db"),
            roomId,
            after: from,
            waiters: api.waiters,
            client: c.get("client"),
            address: c.get("ip"),
            signal: c.req.raw.signal,
            seconds: api.config.streamSeconds,
            heartbeatSeconds: api.config.streamHeartbeatSeconds,
            pageSize: api.clamp(p.limit),
            view: (ch) => ch.type === "agent" ? { ...ch, agent: api.agentView(ch.agent) } : ch,
            checkRetention: (trimmed, cursor) =>
              api.checkCursor({ ...room, rev: cursor, trimmed_rev: trimmed }, cursor, "changes"),
          });
        }
        api.checkCursor(room, after, "changes");
        const changes = await api.held(c, room, after, p.wait ?? 0, async () => {
          const r = await q.listChangesJson(
            c.get("db"),
            roomId,
            after,
            api.clamp(p.limit),
            api.config.onlineSeconds,
          );
          api.checkCursor({ ...room, trimmed_rev: r.trimmedRev }, after, "changes");
          return r.changes;
        });
        const next = changes.length > 0
          ? changes[changes.length - 1].rev
          : Math.max(after, room.rev);
        // Stored bodies and values are spliced into the answer as they are, never parsed again.
        const items = changes.map((ch) => ch.json).join(",");
        return c.body(`{"changes":[${items}],"next":${next}}`, 200, JSON_TYPE);
      },
    }),

    operation({
      name: "getDigest",
      method: "GET",
      path: "/rooms/:id/digest",
      summary: "Catch up in one bounded answer: your inbox, open tasks, changed keys and agents",
      description:
        "For an agent whose context was reset or that slept: what changed since `after` that concerns it, within `max_bytes` (cut sections say so in `cut`, with the request that continues). The agent is the token's; with the room or view token (or in open mode) `agent=` names one.",
      who: "read",
      params: z.object({ id }),
      query: z.strictObject({
        after: queryInt.optional(),
        max_bytes: queryInt.pipe(
          z.number().min(DIGEST_MIN_BYTES, `must be at least ${DIGEST_MIN_BYTES}`)
            .max(DIGEST_MAX_BYTES, `must be at most ${DIGEST_MAX_BYTES}`),
        ).optional(),
        agent: id.optional(),
      }),
      answers: { 200: { description: "The digest", schema: DigestSchema } },
      errors: [401, 403, 404],
      handler: async (c, { params: { id: roomId }, query: p, access: { actor } }) => {
        const agent = api.actingAs(actor, p.agent, "agent");
        if (api.open) api.markSeen(c.get("db"), roomId, agent);
        const d = await digest(c.get("db"), roomId, {
          after: p.after ?? 0,
          agent,
          maxBytes: p.max_bytes ?? DIGEST_DEFAULT_BYTES,
          onlineSeconds: api.config.onlineSeconds,
        });
        if (!d) throw api.noRoom(roomId);
        return c.json(d);
      },
    }),
  ];
}
