// The shapes the API answers with, as zod schemas: the code's types, the OpenAPI document and the MCP tools come from these.
import { z } from "npm:zod@^4.6.7";

/** Any JSON value. */
export const JsonValue = z.unknown().meta({ description: "Any JSON value" });

export const RoomSchema = z.object({
  id: z.string(),
  created_at: z.string().meta({ description: "ISO-8601 UTC" }),
  meta: JsonValue,
  rev: z.number().int().meta({
    description: "The room's newest revision: every write takes the next one",
  }),
}).meta({ id: "Room" });
export type Room = z.infer<typeof RoomSchema>;

export const RoomCreatedSchema = RoomSchema.extend({
  token: z.string().optional().meta({
    description: "The room token (token mode), shown only once",
  }),
  view_token: z.string().optional().meta({
    description: "The read-only view token (token mode), shown only once",
  }),
}).meta({ id: "RoomCreated" });

export const AgentRowSchema = z.object({
  id: z.string(),
  room_id: z.string(),
  name: z.string(),
  role: z.string(),
  joined_at: z.string(),
  meta: JsonValue,
  status: z.string(),
  note: z.string().nullable(),
  last_seen: z.string().nullable(),
  rev: z.number().int(),
});
/** An agent as stored. */
export type Agent = z.infer<typeof AgentRowSchema>;

/** Whether an agent last seen at `lastSeen` counts as online at `at` (ms since the epoch). */
export function isOnline(lastSeen: string | null, onlineSeconds: number, at = Date.now()): boolean {
  return lastSeen !== null && at - Date.parse(lastSeen) < onlineSeconds * 1000;
}

export const AgentSchema = AgentRowSchema.extend({
  online: z.boolean().meta({ description: "Seen within SYNC_ONLINE_SECONDS" }),
}).meta({ id: "Agent" });
export type AgentView = z.infer<typeof AgentSchema>;

export const AgentWithTokenSchema = AgentSchema.extend({
  token: z.string().optional().meta({
    description: "The agent token (token mode), shown only when issued",
  }),
}).meta({ id: "AgentWithToken" });

export const ClaimSchema = z.object({
  agent: z.string(),
  claimed_at: z.string(),
  expires_at: z.string().nullable(),
}).meta({ id: "Claim" });
export type Claim = z.infer<typeof ClaimSchema>;

export const MessageSchema = z.object({
  id: z.number().int(),
  room_id: z.string(),
  from_agent: z.string().nullable(),
  to_agent: z.string().nullable(),
  kind: z.string(),
  body: JsonValue,
  reply_to: z.number().int().nullable(),
  created_at: z.string(),
  claim: ClaimSchema.nullable(),
  expired_claim: z.object({ agent: z.string(), expires_at: z.string() }).optional().meta({
    description: "The lease that ran out, while nobody has claimed the message since",
  }),
  rev: z.number().int(),
}).meta({ id: "Message" });
export type Message = z.infer<typeof MessageSchema>;

export const StateEntrySchema = z.object({
  room_id: z.string(),
  scope: z.string(),
  key: z.string(),
  value: JsonValue,
  version: z.number().int(),
  rev: z.number().int(),
  updated_at: z.string(),
  expires_at: z.string().nullable(),
}).meta({ id: "StateEntry" });
export type StateEntry = z.infer<typeof StateEntrySchema>;

export const StateDeletedSchema = z.object({
  deleted: z.literal(true),
  scope: z.string(),
  key: z.string(),
  version: z.number().int(),
  rev: z.number().int(),
}).meta({ id: "StateDeleted" });

export const StateBatchResultSchema = z.object({
  results: z.array(StateEntrySchema.extend({ deleted: z.literal(true).optional() })),
  rev: z.number().int(),
}).meta({ id: "StateBatchResult" });

export const ChangeSchema = z.discriminatedUnion("type", [
  z.object({ rev: z.number().int(), type: z.literal("message"), message: MessageSchema }),
  z.object({ rev: z.number().int(), type: z.literal("agent"), agent: AgentSchema }),
  z.object({
    rev: z.number().int(),
    type: z.literal("state"),
    deleted: z.boolean(),
    expired: z.literal(true).optional().meta({ description: "Deleted because its ttl ran out" }),
    state: StateEntrySchema,
  }),
]).meta({ id: "Change" });
/** A change as stored: agents without their computed `online`. */
export type Change =
  | { rev: number; type: "message"; message: Message }
  | { rev: number; type: "agent"; agent: Agent }
  | { rev: number; type: "state"; deleted: boolean; expired?: true; state: StateEntry };

export const ChangesPageSchema = z.object({
  changes: z.array(ChangeSchema),
  next: z.number().int().meta({ description: "The cursor to pass as `after` next time" }),
}).meta({ id: "ChangesPage" });

const Item = z.record(z.string(), z.unknown());
export const DigestSchema = z.object({
  room: z.string(),
  agent: z.string().nullable(),
  after: z.number().int(),
  next: z.number().int().meta({ description: "The cursor to pass as `after` next time" }),
  counts: z.record(z.string(), z.number().int()).meta({
    description: "New messages since the cursor, per kind",
  }),
  inbox: z.array(Item).meta({ description: "Messages to the agent it has not answered" }),
  tasks: z.array(Item).meta({
    description: "Open tasks: unclaimed, lease expired, or claimed by the agent",
  }),
  agents: z.array(Item).meta({ description: "Agents that joined, left or changed" }),
  state: z.array(Item).meta({ description: "Keys changed since the cursor, at their latest" }),
  truncated: z.boolean().meta({ description: "Whether max_bytes cut something: see `cut`" }),
}).catchall(z.unknown()).meta({ id: "Digest" });

export const RoomDeletedSchema = z.object({ deleted: z.literal(true), id: z.string() })
  .meta({ id: "RoomDeleted" });

export const HealthSchema = z.object({ ok: z.literal(true), auth: z.enum(["token", "open"]) })
  .meta({ id: "Health" });

export const ErrorSchema = z.object({
  error: z.string().meta({ description: "A stable machine-readable code, e.g. `not_found`" }),
  message: z.string().meta({ description: "What went wrong and what to do about it" }),
  status: z.number().int(),
}).catchall(z.unknown()).meta({ id: "Error" });
