// Agents: register (or re-register), list, read, and update one's own status.
import { z } from "npm:zod@^4.6.7";
import { mintToken, sha256 } from "../auth.ts";
import type { Api } from "../context.ts";
import { keyed } from "../idempotency.ts";
import { checkSize, HttpError, json, textSchema } from "../http.ts";
import { AgentSchema, AgentWithTokenSchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";

export function agentOperations(api: Api) {
  const { id } = api.in;
  const roomPath = z.object({ id });
  const agentPath = z.object({ id, agent_id: id });

  return [
    operation({
      name: "registerAgent",
      method: "POST",
      path: "/rooms/:id/agents",
      summary: "Register an agent (room token), or re-register one",
      description:
        "A new agent answers 201 with its agent token, shown only this once. Naming an existing agent re-registers it (its own token or the room token): 200, and a new token with rotate_token.",
      who: "write",
      params: roomPath,
      body: z.strictObject({
        id: id.optional(),
        name: textSchema(200).min(1, "must not be empty"),
        role: textSchema(100).optional(),
        meta: json.optional(),
        rotate_token: z.boolean().optional(),
      }),
      example: { id: "worker-1", name: "Worker 1", role: "worker" },
      answers: {
        201: { description: "Registered, with its token", schema: AgentWithTokenSchema },
        200: { description: "Re-registered", schema: AgentWithTokenSchema },
      },
      errors: [401, 403, 404, 409, 413],
      handler: async (c, { params: { id: roomId }, body: b, access: { actor } }) => {
        checkSize("meta", b.meta ?? null, api.config.maxValueBytes);
        const d = c.get("db");
        const agentId = b.id ?? (actor.kind === "agent" ? actor.agentId : crypto.randomUUID());
        const existing = await q.getAgent(d, roomId, agentId);
        if (!existing) {
          if (actor.kind === "agent") {
            throw new HttpError(
              403,
              "forbidden",
              "Agent tokens cannot register other agents: use the room token",
            );
          }
          const token = api.open ? null : mintToken("agent");
          const r = await q.insertAgent(
            d,
            {
              roomId,
              id: agentId,
              name: b.name,
              role: b.role ?? "agent",
              meta: b.meta ?? null,
              tokenHash: token ? sha256(token) : null,
            },
            api.config.maxAgents,
            keyed(c, token ? { token } : null),
          );
          if (r.result === "no_room") throw api.noRoom(roomId);
          if (r.result === "full") {
            throw new HttpError(
              409,
              "room_full",
              `Room "${roomId}" has ${api.config.maxAgents} agents already (SYNC_MAX_AGENTS)`,
            );
          }
          if (r.result === "exists") {
            throw new HttpError(
              409,
              "agent_exists",
              `Agent "${agentId}" was just registered by another request: re-register with its token`,
            );
          }
          api.written(roomId, r.agent!.rev);
          return api.answer(c, "agent_created", [r.agent!], token ? { token } : null);
        }
        if (
          actor.kind === "agent"
            ? actor.agentId !== agentId
            : actor.kind !== "room" && actor.kind !== "admin" && !api.open
        ) {
          throw new HttpError(
            409,
            "agent_exists",
            `Agent "${agentId}" is registered already: re-register with its own token or the room token`,
          );
        }
        const token = !api.open && b.rotate_token ? mintToken("agent") : null;
        const agent = await q.updateAgent(d, roomId, agentId, {
          name: b.name,
          role: b.role,
          meta: b.meta,
          tokenHash: token ? sha256(token) : undefined,
        }, keyed(c, token ? { token } : null));
        if (!agent) throw api.noRoom(roomId);
        api.written(roomId, agent.rev);
        return api.answer(c, "agent_updated", [agent], token ? { token } : null);
      },
    }),

    operation({
      name: "listAgents",
      method: "GET",
      path: "/rooms/:id/agents",
      summary: "List the room's agents, with whether each is online",
      who: "read",
      params: roomPath,
      query: z.strictObject({}),
      answers: { 200: { description: "Agents, by join time", schema: z.array(AgentSchema) } },
      errors: [401, 404],
      handler: async (c, { params: { id: roomId } }) =>
        c.json((await q.listAgents(c.get("db"), roomId)).map((a) => api.agentView(a))),
    }),

    operation({
      name: "getAgent",
      method: "GET",
      path: "/rooms/:id/agents/:agent_id",
      summary: "Read one agent",
      who: "read",
      params: agentPath,
      answers: { 200: { description: "The agent", schema: AgentSchema } },
      errors: [401, 404],
      handler: async (c, { params: { id: roomId, agent_id: agentId } }) => {
        const agent = await q.getAgent(c.get("db"), roomId, agentId);
        if (!agent) throw api.missing(`agent "${agentId}" in room "${roomId}"`);
        return c.json(api.agentView(agent));
      },
    }),

    operation({
      name: "updateAgent",
      method: "PATCH",
      path: "/rooms/:id/agents/:agent_id",
      summary: "Update an agent: status, note, name, role or meta (its own token)",
      who: "write",
      params: agentPath,
      body: z.strictObject({
        name: textSchema(200).min(1, "must not be empty").optional(),
        role: textSchema(100).optional(),
        meta: json.optional(),
        status: textSchema(32).min(1, "must not be empty").optional(),
        note: textSchema(280).nullable().optional(),
      }),
      example: { status: "busy", note: "parsing module 3" },
      answers: { 200: { description: "The updated agent", schema: AgentSchema } },
      errors: [401, 403, 404, 413],
      authorize: (_c, { params, access }) => {
        api.actingAs(access.actor, params.agent_id, "agent_id");
      },
      handler: async (c, { params: { id: roomId, agent_id: agentId }, body: b }) => {
        checkSize("meta", b.meta ?? null, api.config.maxValueBytes);
        const agent = await q.updateAgent(c.get("db"), roomId, agentId, b, keyed(c));
        if (!agent) throw api.missing(`agent "${agentId}" in room "${roomId}"`);
        api.written(roomId, agent.rev);
        return api.answer(c, "agent_updated", [agent]);
      },
    }),
  ];
}
