// The change feed: every write to a room in revision order, read (and waited on) with one cursor.
import { z } from "npm:zod@^4.6.7";
import type { Api } from "../context.ts";
import { queryInt } from "../http.ts";
import { ChangesPageSchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";

export function changeOperations(api: Api) {
  const { id, limit, wait } = api.in;
  return [
    operation({
      name: "listChanges",
      method: "GET",
      path: "/rooms/:id/changes",
      summary: "Every write to the room after a cursor: messages, agents and state, in order",
      description:
        "Each entity appears at its latest revision. Pass `next` as `after` to continue; `wait=<seconds>` holds the request until something changes.",
      who: "read",
      params: z.object({ id }),
      query: z.strictObject({ after: queryInt.optional(), limit, wait: wait.optional() }),
      answers: { 200: { description: "Changes and the next cursor", schema: ChangesPageSchema } },
      errors: [401, 404, 410],
      handler: async (c, { params: { id: roomId }, query: p, access: { room } }) => {
        const after = p.after ?? 0;
        api.checkCursor(room, after, "changes");
        const changes = await api.held(c, room, p.wait ?? 0, async () => {
          const r = await q.listChanges(c.get("db"), roomId, after, api.clamp(p.limit));
          api.checkCursor({ ...room, trimmed_rev: r.trimmedRev }, after, "changes");
          return r.changes;
        });
        const next = changes.length > 0
          ? changes[changes.length - 1].rev
          : Math.max(after, room.rev);
        return c.json({
          changes: changes.map((ch) =>
            ch.type === "agent" ? { ...ch, agent: api.agentView(ch.agent) } : ch
          ),
          next,
        });
      },
    }),
  ];
}
