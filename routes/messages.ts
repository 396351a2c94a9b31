// Messages: post, list and wait (with filters), read one, claim and release tasks.
import type { Context } from "npm:hono@^4.13.19";
import { z } from "npm:zod@^4.6.7";
import { type Actor, type Api, type Env, JSON_TYPE } from "../context.ts";
import { keyed } from "../idempotency.ts";
import { checkSize, HttpError, json, queryInt } from "../http.ts";
import { MessageSchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";

export function messageOperations(api: Api) {
  const { id, limit, ttl, wait, bool, kind, msgId } = api.in;
  const roomPath = z.object({ id });
  const messagePath = z.object({ id, msg_id: msgId });
  const claimBody = z.strictObject({ agent: id.optional(), ttl: ttl.optional() });

  /** The agent a claim is made or released for, from the token or the optional body. */
  function claimant(actor: Actor, b: z.infer<typeof claimBody>): string {
    const agent = api.actingAs(actor, b.agent, "agent");
    if (!agent) {
      throw new HttpError(
        400,
        "invalid_body",
        'Invalid body: missing field "agent" (the claiming agent\'s id)',
      );
    }
    return agent;
  }

  function claimConflict(c: Context<Env>, msgId: number, r: q.ClaimResult, agent: string | null) {
    const roomId = c.req.param("id");
    if (!r.message) throw api.missing(`message ${msgId} in room "${roomId}"`);
    const holder = r.message.claim?.agent;
    return new HttpError(
      409,
      holder ? "claimed_by_other" : "not_claimed",
      holder
        ? `Message ${msgId} is claimed by "${holder}", not "${agent}"`
        : `Message ${msgId} is not claimed`,
      { claim: r.message.claim },
    );
  }

  return [
    operation({
      name: "postMessage",
      method: "POST",
      path: "/rooms/:id/messages",
      summary: "Post a message: to everyone, or to one agent with `to`",
      description:
        "`kind` tags the protocol (message, task, result, …); `reply_to` threads it under another message. With an agent token, `from` is that agent.",
      who: "write",
      params: roomPath,
      body: z.strictObject({
        from: id.nullable().optional(),
        to: id.nullable().optional(),
        kind: kind.optional(),
        body: json,
        reply_to: z.number().int().positive().nullable().optional(),
      }),
      example: { kind: "task", body: { title: "Parse module 3" } },
      answers: { 201: { description: "The message as stored", schema: MessageSchema } },
      errors: [400, 401, 403, 404, 413],
      handler: async (c, { params: { id: roomId }, body: b, access: { actor } }) => {
        checkSize("body", b.body, api.config.maxValueBytes);
        const from = api.actingAs(actor, b.from, "from");
        const d = c.get("db");
        const message = await q.insertMessage(d, {
          roomId,
          from,
          to: b.to ?? null,
          kind: b.kind ?? "message",
          body: b.body,
          replyTo: b.reply_to ?? null,
        }, keyed(c));
        if (!message) {
          if (b.reply_to != null && await q.getRoomAuth(d, roomId)) {
            throw new HttpError(
              400,
              "invalid_body",
              `Invalid body: field "reply_to" names message ${b.reply_to}, which is not in this room`,
              {
                fields: [{
                  field: "reply_to",
                  message: `message ${b.reply_to} is not in this room`,
                }],
              },
            );
          }
          throw api.noRoom(roomId);
        }
        api.written(roomId, message.rev);
        if (api.open) api.markSeen(d, roomId, from);
        await api.posted(d, roomId);
        return api.answer(c, "message_created", [message]);
      },
    }),

    operation({
      name: "listMessages",
      method: "GET",
      path: "/rooms/:id/messages",
      summary: "List messages after a cursor, filtered; `wait` holds the request until one arrives",
      description:
        "Pass the last id you saw as `after`. `wait=<seconds>` (at most SYNC_MAX_WAIT) answers as soon as a matching message exists. `unclaimed=true` lists open tasks.",
      who: "read",
      params: roomPath,
      query: z.strictObject({
        after: queryInt.optional(),
        before: queryInt.optional(),
        limit,
        kind: kind.optional(),
        to: id.optional(),
        from: id.optional(),
        thread: queryInt.optional(),
        unclaimed: bool.optional(),
        wait: wait.optional(),
      }),
      answers: { 200: { description: "Messages in id order", schema: z.array(MessageSchema) } },
      errors: [401, 404, 410],
      handler: async (c, { params: { id: roomId }, query: p, access: { room } }) => {
        const after = p.after ?? 0;
        api.checkCursor(room, after, "messages");
        const d = c.get("db");
        if (api.open) api.markSeen(d, roomId, p.to ?? null);
        const list = await api.held(c, room, after, p.wait ?? 0, async () => {
          const page = await q.listMessagesJson(d, roomId, {
            after,
            before: p.before,
            limit: api.clamp(p.limit),
            kind: p.kind,
            to: p.to,
            from: p.from,
            thread: p.thread,
            unclaimed: p.unclaimed,
          });
          // The retention point comes back with the rows: nothing found may mean that
          // retention passed the cursor since the room was read.
          if (page.trimmedRev === null) throw api.noRoom(roomId);
          api.checkCursor({ ...room, trimmed_rev: page.trimmedRev }, after, "messages");
          return page.items;
        });
        // The stored bodies are spliced into the answer as they are, never parsed again.
        return c.body(`[${list.join(",")}]`, 200, JSON_TYPE);
      },
    }),

    operation({
      name: "getMessage",
      method: "GET",
      path: "/rooms/:id/messages/:msg_id",
      summary: "Read one message, with its claim",
      who: "read",
      params: messagePath,
      answers: { 200: { description: "The message", schema: MessageSchema } },
      errors: [401, 404],
      handler: async (c, { params: { id: roomId, msg_id } }) => {
        const message = await q.getMessage(c.get("db"), roomId, msg_id);
        if (!message) throw api.missing(`message ${msg_id} in room "${roomId}"`);
        return c.json(message);
      },
    }),

    operation({
      name: "claimMessage",
      method: "POST",
      path: "/rooms/:id/messages/:msg_id/claim",
      summary: "Claim a message (a task) so no other agent works on it; exactly one wins",
      description:
        "With an agent token the body may be empty. `ttl` (seconds) makes the claim a lease that lapses unless renewed by claiming again.",
      who: "write",
      params: messagePath,
      body: claimBody,
      bodyOptional: true,
      example: { ttl: 300 },
      answers: { 200: { description: "The claimed message", schema: MessageSchema } },
      errors: [401, 403, 404, 409],
      handler: async (c, { params: { id: roomId, msg_id }, body: b, access: { actor } }) => {
        const agent = claimant(actor, b);
        const d = c.get("db");
        const r = await q.claimMessage(d, roomId, msg_id, agent, api.expiry(b.ttl), keyed(c));
        if (!r.message) throw api.missing(`message ${msg_id} in room "${roomId}"`);
        if (!r.ok) {
          throw new HttpError(
            409,
            "already_claimed",
            `Message ${msg_id} is claimed by "${r.message.claim?.agent}"`,
            { claim: r.message.claim },
          );
        }
        api.written(roomId, r.message.rev, b.ttl !== undefined);
        if (api.open) api.markSeen(d, roomId, agent);
        return api.answer(c, "message_claim", [r.message]);
      },
    }),

    operation({
      name: "releaseMessage",
      method: "DELETE",
      path: "/rooms/:id/messages/:msg_id/claim",
      summary: "Release a claim: your own, or any with the room token",
      who: "write",
      params: messagePath,
      body: claimBody,
      bodyOptional: true,
      example: { agent: "worker-1" },
      answers: { 200: { description: "The released message", schema: MessageSchema } },
      errors: [401, 403, 404, 409],
      handler: async (c, { params: { id: roomId, msg_id }, body: b, access: { actor } }) => {
        const asOwner = actor.kind === "room" || actor.kind === "admin";
        const agent = asOwner ? null : claimant(actor, b);
        const r = await q.releaseMessage(c.get("db"), roomId, msg_id, agent, keyed(c));
        if (!r.ok) throw claimConflict(c, msg_id, r, agent);
        api.written(roomId, r.message.rev);
        return api.answer(c, "message_claim", [r.message]);
      },
    }),
  ];
}
