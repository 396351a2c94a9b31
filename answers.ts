// The answers of the write routes, shaped once: by the handler, and by a replay of its Idempotency-Key.
import { isOnline } from "./models.ts";
import type { Agent, AnswerOp, Message, Room, StateEntry, StateWrite } from "./schema.ts";

/** Secrets minted for one answer (tokens), merged into it; stored only encrypted. */
export type Secret = Record<string, string> | null;

/** What each write's answer is shaped from: the rows it wrote, as schema.ts decodes them. */
export interface AnswerRows {
  room_created: Room;
  room_deleted: { id: string };
  agent_created: Agent;
  agent_updated: Agent;
  message_created: Message;
  message_claim: Message;
  state_put: StateWrite;
  state_deleted: StateWrite;
  state_batch: StateWrite;
}

export interface AnswerContext {
  secret: Secret;
  /** The time the answer describes, in ms since the epoch. */
  at: number;
  onlineSeconds: number;
}

/** An agent as the API shows it: whether it was seen within `onlineSeconds` before `at`. */
export function agentView(a: Agent, onlineSeconds: number, at = Date.now()) {
  return { ...a, online: isOnline(a.last_seen, onlineSeconds, at) };
}

function stateDeleted(e: StateEntry) {
  return { deleted: true, scope: e.scope, key: e.key, version: e.version, rev: e.rev };
}

const SHAPERS: {
  [K in AnswerOp]: {
    status: 200 | 201;
    shape: (rows: AnswerRows[K][], x: AnswerContext) => unknown;
  };
} = {
  room_created: { status: 201, shape: ([room], x) => ({ ...room, ...x.secret }) },
  room_deleted: { status: 200, shape: ([{ id }]) => ({ deleted: true, id }) },
  agent_created: {
    status: 201,
    shape: ([a], x) => ({ ...agentView(a, x.onlineSeconds, x.at), ...x.secret }),
  },
  agent_updated: {
    status: 200,
    shape: ([a], x) => ({ ...agentView(a, x.onlineSeconds, x.at), ...x.secret }),
  },
  message_created: { status: 201, shape: ([m]) => m },
  message_claim: { status: 200, shape: ([m]) => m },
  state_put: { status: 200, shape: ([s]) => s.entry },
  state_deleted: { status: 200, shape: ([s]) => stateDeleted(s.entry) },
  state_batch: {
    status: 200,
    shape: (rows) => ({
      results: rows.map((s) => s.deleted ? { ...s.entry, deleted: true } : s.entry),
      rev: rows[rows.length - 1].entry.rev,
    }),
  },
};

/** The status and body a write answers, from the rows it wrote. */
export function answer<K extends AnswerOp>(
  op: K,
  rows: AnswerRows[K][],
  x: AnswerContext,
): { status: 200 | 201; body: unknown } {
  const shaper = SHAPERS[op];
  return { status: shaper.status, body: shaper.shape(rows, x) };
}

export function isAnswerOp(op: string): op is AnswerOp {
  return Object.hasOwn(SHAPERS, op);
}
