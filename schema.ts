// SQLite tables, migrations and one function per query; every write takes its room's next revision.
import type { Db, RawRow, ResultSet, Statement, Value } from "./db.ts";

import { isOnline } from "./models.ts";
import type { Agent, Change, Claim, Message, Room, StateEntry } from "./models.ts";
export type { Agent, Change, Claim, Message, Room, StateEntry };

/** A room as a request's access check reads it: its meta left as stored, parsed only if used. */
export interface RoomAuth extends Omit<Room, "meta"> {
  meta_json: string;
  token_hash: string | null;
  view_token_hash: string | null;
  trimmed_rev: number;
  agent_id: string | null;
}

const ACTIVE_NOW = `UPDATE rooms SET active_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  WHERE id = NEW.room_id AND active_at < strftime('%Y-%m-%dT%H:%M', 'now')`;

const MIGRATIONS: string[][] = [[
  `CREATE TABLE rooms (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT 'null',
    rev INTEGER NOT NULL DEFAULT 0,
    trimmed_rev INTEGER NOT NULL DEFAULT 0,
    active_at TEXT NOT NULL,
    token_hash TEXT,
    view_token_hash TEXT
  )`,
  `CREATE INDEX rooms_active_at ON rooms (active_at)`,
  `CREATE TABLE agents (
    room_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'agent',
    meta TEXT NOT NULL DEFAULT 'null',
    joined_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'idle',
    note TEXT,
    last_seen TEXT,
    rev INTEGER NOT NULL,
    token_hash TEXT,
    PRIMARY KEY (room_id, id)
  ) WITHOUT ROWID`,
  `CREATE INDEX agents_rev ON agents (room_id, rev)`,
  `CREATE INDEX agents_token ON agents (room_id, token_hash) WHERE token_hash IS NOT NULL`,
  `CREATE TABLE messages (
    room_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    from_agent TEXT,
    to_agent TEXT,
    kind TEXT NOT NULL DEFAULT 'message',
    body TEXT NOT NULL,
    reply_to INTEGER,
    thread_id INTEGER,
    created_at TEXT NOT NULL,
    claimed_by TEXT,
    claimed_at TEXT,
    claim_expires_at TEXT,
    PRIMARY KEY (room_id, id)
  ) WITHOUT ROWID`,
  `CREATE INDEX messages_rev ON messages (room_id, rev)`,
  `CREATE INDEX messages_kind ON messages (room_id, kind, id)`,
  `CREATE INDEX messages_thread ON messages (room_id, thread_id) WHERE thread_id IS NOT NULL`,
  `CREATE TABLE state (
    room_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL DEFAULT 'null',
    version INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, scope, key)
  ) WITHOUT ROWID`,
  `CREATE INDEX state_rev ON state (room_id, rev)`,
  `CREATE TABLE idempotency (
    key_hash TEXT PRIMARY KEY NOT NULL,
    room_id TEXT,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    response TEXT,
    created_at TEXT NOT NULL
  )`,
  `CREATE INDEX idempotency_created_at ON idempotency (created_at)`,
  // A failed condition inside a batch inserts NULL here, which aborts and rolls back the batch.
  `CREATE TABLE batch_guard (failed INTEGER NOT NULL)`,
  // Each write carries the room's next revision; these keep rooms.rev at the newest one.
  ...["messages", "agents", "state"].flatMap((table) => [
    `CREATE TRIGGER ${table}_rev_insert AFTER INSERT ON ${table} BEGIN
      UPDATE rooms SET rev = NEW.rev, active_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
      WHERE id = NEW.room_id AND rev < NEW.rev; END`,
    `CREATE TRIGGER ${table}_rev_update AFTER UPDATE OF rev ON ${table} WHEN NEW.rev > OLD.rev BEGIN
      UPDATE rooms SET rev = NEW.rev, active_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
      WHERE id = NEW.room_id AND rev < NEW.rev; END`,
  ]),
], [
  // MCP clients connect to /mcp with a token alone: find its room (and agent) by its hash.
  `CREATE INDEX IF NOT EXISTS agents_token_hash ON agents (token_hash) WHERE token_hash IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS rooms_token_hash ON rooms (token_hash) WHERE token_hash IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS rooms_view_token_hash ON rooms (view_token_hash)
    WHERE view_token_hash IS NOT NULL`,
], [
  // Expiry (a claim lease or a key's ttl running out is a change) and the digest. Only indexes,
  // each IF NOT EXISTS, so this migration is safe in any order with others appended beside it.
  // A pending lease: claimed_at is set to NULL when its expiry is recorded (see expireDue).
  `CREATE INDEX IF NOT EXISTS messages_lease ON messages (room_id, claim_expires_at)
    WHERE claimed_at IS NOT NULL AND claim_expires_at IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS state_ttl ON state (room_id, expires_at)
    WHERE deleted = 0 AND expires_at IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS messages_reply ON messages (room_id, reply_to)
    WHERE reply_to IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS messages_to ON messages (room_id, to_agent, id)
    WHERE to_agent IS NOT NULL`,
], [
  // Fixed-window counters for the limits instances share (limits.ts): one row per budget,
  // client and window, removed once the window is over.
  `CREATE TABLE limit_windows (
    bucket TEXT NOT NULL,
    window_end TEXT NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, window_end)
  ) WITHOUT ROWID`,
  `CREATE INDEX limit_windows_end ON limit_windows (window_end)`,
], [
  // Counters kept by the triggers, so that neither the key cap nor retention counts rows:
  // msg_count is the room's stored messages, state_keys its keys not deleted (expired ones
  // included until overwritten or deleted; the cap subtracts those through state_expires).
  `ALTER TABLE rooms ADD COLUMN msg_count INTEGER NOT NULL DEFAULT 0`,
  `ALTER TABLE rooms ADD COLUMN state_keys INTEGER NOT NULL DEFAULT 0`,
  `UPDATE rooms SET
    msg_count = (SELECT count(*) FROM messages WHERE room_id = rooms.id),
    state_keys = (SELECT count(*) FROM state WHERE room_id = rooms.id AND deleted = 0)`,
  `CREATE INDEX state_expires ON state (room_id, expires_at)
    WHERE deleted = 0 AND expires_at IS NOT NULL`,
  ...["messages", "agents", "state"].flatMap((table) => [
    `DROP TRIGGER ${table}_rev_insert`,
    `DROP TRIGGER ${table}_rev_update`,
  ]),
  // Activity is kept to the minute: rewriting rooms.active_at and its index on every write
  // cost more than idle expiry needs.
  ...[["messages", "msg_count = msg_count + 1"], ["agents", ""], [
    "state",
    "state_keys = state_keys + 1 - NEW.deleted",
  ]].map(([table, count]) =>
    `CREATE TRIGGER ${table}_rev_insert AFTER INSERT ON ${table} BEGIN
      UPDATE rooms SET rev = max(rev, NEW.rev)${count ? `, ${count}` : ""} WHERE id = NEW.room_id;
      ${ACTIVE_NOW}; END`
  ),
  ...[["messages", ""], ["agents", ""], [
    "state",
    "state_keys = state_keys + OLD.deleted - NEW.deleted",
  ]]
    .map(([table, count]) =>
      `CREATE TRIGGER ${table}_rev_update AFTER UPDATE OF rev ON ${table} WHEN NEW.rev > OLD.rev
      BEGIN
        UPDATE rooms SET rev = max(rev, NEW.rev)${count ? `, ${count}` : ""} WHERE id = NEW.room_id;
        ${ACTIVE_NOW}; END`
    ),
], [
  // An Idempotency-Key's record now commits in its write's own batch, with the answer as the
  // written rows (`op` names how to shape them) and any minted token encrypted in `secret`.
  // Reservations the old three-step scheme left pending cannot be told apart: forget them.
  `ALTER TABLE idempotency ADD COLUMN op TEXT`,
  `ALTER TABLE idempotency ADD COLUMN secret TEXT`,
  `ALTER TABLE idempotency ADD COLUMN at INTEGER NOT NULL DEFAULT 0`,
  `DELETE FROM idempotency WHERE status = 0`,
  // Records are appended in time order, so expiry deletes a prefix of rowids; an index on
  // created_at cost every keyed write a third b-tree insert.
  `DROP INDEX IF EXISTS idempotency_created_at`,
], [
  // A key is found by the first 128 bits of its SHA-256 (32 hex digits), and a request compared
  // by as many: half the index entry that every keyed write inserts at a random place in the
  // key index (measured: 83 -> 66 µs of SQL a keyed POST at 100,000 stored keys), still unique.
  `UPDATE idempotency SET key_hash = substr(key_hash, 1, 32),
    request_hash = substr(request_hash, 1, 32)`,
], [
  // Deleting a room (also idle expiry, up to 100 rooms a sweep) forgets the keys used in it:
  // without an index that scanned every record of the last day with the event loop stopped.
  // A room's records sit together in it, so a keyed write adds about 3 µs.
  `CREATE INDEX IF NOT EXISTS idempotency_room ON idempotency (room_id) WHERE room_id IS NOT NULL`,
]];

/** Applies every migration not yet recorded in `_migrations`, each with its record in one batch. */
export async function migrate(db: Db): Promise<void> {
  await db.execute({
    sql: `CREATE TABLE IF NOT EXISTS _migrations (
      id INTEGER PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL)`,
  });
  const done = await db.execute({ sql: "SELECT id FROM _migrations" });
  const applied = new Set(objects(done).map((r) => Number(r.id)));
  for (const [i, stmts] of MIGRATIONS.entries()) {
    if (applied.has(i + 1)) continue;
    try {
      await db.batch([
        ...stmts.map((sql) => ({ sql })),
        { sql: "INSERT INTO _migrations (id, applied_at) VALUES (?, ?)", args: [i + 1, now()] },
      ], "write");
    } catch (err) {
      // Another process applied it first.
      const again = await db.execute({
        sql: "SELECT 1 FROM _migrations WHERE id = ?",
        args: [i + 1],
      });
      if (again.rows.length === 0) throw err;
    }
  }
}

let nowMs = 0;
let nowIso = "";
/** The time as ISO text; built at most once a millisecond (it costs about 1 µs each time). */
export function now(): string {
  const t = Date.now();
  if (t !== nowMs) nowMs = t, nowIso = new Date(t).toISOString();
  return nowIso;
}

/** Rows as objects by column name, whichever shape the driver returned. */
function objects(rs: ResultSet): Record<string, unknown>[] {
  return rs.rows.map((row: RawRow) => {
    if (!Array.isArray(row)) return row as Record<string, unknown>;
    const obj: Record<string, unknown> = {};
    rs.columns.forEach((c, i) => obj[c] = row[i]);
    return obj;
  });
}

function parse(text: unknown): unknown {
  return JSON.parse(String(text));
}

const ROOM_COLS = "id, created_at, meta, rev";
function toRoom(r: Record<string, unknown>): Room {
  return {
    id: String(r.id),
    created_at: String(r.created_at),
    meta: parse(r.meta),
    rev: Number(r.rev),
  };
}

const AGENT_COLS = "room_id, id, name, role, meta, joined_at, status, note, last_seen, rev";
function toAgent(r: Record<string, unknown>): Agent {
  return {
    id: String(r.id),
    room_id: String(r.room_id),
    name: String(r.name),
    role: String(r.role),
    joined_at: String(r.joined_at),
    meta: parse(r.meta),
    status: String(r.status),
    note: r.note === null ? null : String(r.note),
    last_seen: r.last_seen === null ? null : String(r.last_seen),
    rev: Number(r.rev),
  };
}

const MESSAGE_COLS =
  "room_id, id, rev, from_agent, to_agent, kind, body, reply_to, created_at, claimed_by, claimed_at, claim_expires_at";
function toMessage(r: Record<string, unknown>): Message {
  return toMessageAt(r, now());
}
/** A message as it was at time `at`: a claim expired since then still shows. */
function toMessageAt(r: Record<string, unknown>, at: string): Message {
  const expires = r.claim_expires_at === null ? null : String(r.claim_expires_at);
  const held = r.claimed_by !== null && (expires === null || expires > at);
  return {
    id: Number(r.id),
    room_id: String(r.room_id),
    from_agent: r.from_agent === null ? null : String(r.from_agent),
    to_agent: r.to_agent === null ? null : String(r.to_agent),
    kind: String(r.kind),
    body: parse(r.body),
    reply_to: r.reply_to === null ? null : Number(r.reply_to),
    created_at: String(r.created_at),
    claim: held
      ? { agent: String(r.claimed_by), claimed_at: String(r.claimed_at), expires_at: expires }
      : null,
    ...(r.claimed_by !== null && !held
      ? { expired_claim: { agent: String(r.claimed_by), expires_at: expires! } }
      : {}),
    rev: Number(r.rev),
  };
}

const STATE_COLS = "room_id, scope, key, value, version, rev, updated_at, expires_at, deleted";
function toState(r: Record<string, unknown>): StateEntry {
  return {
    room_id: String(r.room_id),
    scope: String(r.scope),
    key: String(r.key),
    value: parse(r.value),
    version: Number(r.version),
    rev: Number(r.rev),
    updated_at: String(r.updated_at),
    expires_at: r.expires_at === null ? null : String(r.expires_at),
  };
}

const NEXT_REV = "(SELECT rev + 1 FROM rooms WHERE id = ?)";
const LIVE = "deleted = 0 AND (expires_at IS NULL OR expires_at > ?)";

// ---------------------------------------------------------------- rooms

const CREATE_ROOM_SQL =
  `INSERT INTO rooms (id, created_at, meta, active_at, token_hash, view_token_hash)
      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING ${ROOM_COLS}`;

/** Creates a room, or returns null when the id is taken. */
export async function createRoom(
  db: Db,
  room: { id: string; meta: unknown; tokenHash: string | null; viewTokenHash: string | null },
  idem?: KeyedWrite,
): Promise<Room | null> {
  const t = now();
  const stmt = {
    sql: CREATE_ROOM_SQL,
    args: [room.id, t, JSON.stringify(room.meta ?? null), t, room.tokenHash, room.viewTokenHash],
  };
  const rs = idem
    ? (await keyedBatch(db, idem, "room_created", room.id, [stmt]))?.[0]
    : await db.execute(stmt);
  const row = rs && objects(rs)[0];
  return row ? toRoom(row) : null;
}

const GET_ROOM_AUTH_SQL = `SELECT ${ROOM_COLS}, token_hash, view_token_hash, trimmed_rev,
        (SELECT a.id FROM agents a WHERE a.room_id = rooms.id AND a.token_hash = ?) AS agent_id
      FROM rooms WHERE id = ?`;

/**
 * The room with what is needed to authorize a request to it: its token hashes, and the id of
 * its agent whose token hashes to `agentTokenHash`, if any.
 */
export async function getRoomAuth(
  db: Db,
  id: string,
  agentTokenHash: string | null = null,
): Promise<RoomAuth | null> {
  const rs = await db.execute({
    sql: GET_ROOM_AUTH_SQL,
    args: [agentTokenHash, id],
  });
  const r = objects(rs)[0];
  if (!r) return null;
  return {
    id: String(r.id),
    created_at: String(r.created_at),
    meta_json: String(r.meta),
    rev: Number(r.rev),
    token_hash: r.token_hash === null ? null : String(r.token_hash),
    view_token_hash: r.view_token_hash === null ? null : String(r.view_token_hash),
    trimmed_rev: Number(r.trimmed_rev),
    agent_id: r.agent_id === null ? null : String(r.agent_id),
  };
}

/** The room as its answers show it, from its access row. */
export function roomOf(a: RoomAuth): Room {
  return { id: a.id, created_at: a.created_at, meta: parse(a.meta_json), rev: a.rev };
}

/** The room a token hash belongs to, as its room, view or one of its agents' token. */
export async function findTokenRoom(
  db: Db,
  tokenHash: string,
): Promise<{ roomId: string; agentId: string | null } | null> {
  const rs = await db.execute({
    sql: `SELECT room_id, id AS agent_id FROM agents WHERE token_hash = ?1
      UNION ALL SELECT id, NULL FROM rooms WHERE token_hash = ?1 OR view_token_hash = ?1
      LIMIT 1`,
    args: [tokenHash],
  });
  const r = objects(rs)[0];
  if (!r) return null;
  return { roomId: String(r.room_id), agentId: r.agent_id === null ? null : String(r.agent_id) };
}

const LIST_ROOMS_SQL = `SELECT ${ROOM_COLS} FROM rooms ORDER BY created_at, id LIMIT ?+0`;

export async function listRooms(db: Db, limit: number): Promise<Room[]> {
  const rs = await db.execute({
    sql: LIST_ROOMS_SQL,
    args: [limit],
  });
  return objects(rs).map(toRoom);
}

/** Current revisions of the given rooms; a deleted room is absent from the map. */
export async function roomRevs(db: Db, ids: string[]): Promise<Map<string, number>> {
  const revs = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const rs = await db.execute({
      sql: `SELECT id, rev FROM rooms WHERE id IN (${chunk.map(() => "?").join(", ")})`,
      args: chunk,
    });
    for (const r of objects(rs)) revs.set(String(r.id), Number(r.rev));
  }
  return revs;
}

/** What deleting a room runs, a statement per table (each found by an index on its room). */
export const DELETE_ROOM = ["rooms", "messages", "state", "agents", "idempotency"].map((table) =>
  `DELETE FROM ${table} WHERE ${table === "rooms" ? "id" : "room_id"} = ?`
);

/** Removes a room and everything in it; false when there was no such room. */
export async function deleteRoom(db: Db, id: string, idem?: KeyedWrite): Promise<boolean> {
  const stmts = DELETE_ROOM.map((sql) => ({ sql, args: [id] }));
  if (idem) {
    // The room's own row last: the key's record is kept only if that delete took.
    const keyed = await keyedBatch(db, idem, "room_deleted", id, [...stmts.slice(1), stmts[0]]);
    return keyed?.at(-1)?.rowsAffected === 1;
  }
  const results = await db.batch(stmts, "write");
  return results[0].rowsAffected > 0;
}

/** Deletes rooms with no write since `before`; returns their ids. */
export async function expireIdleRooms(db: Db, before: string): Promise<string[]> {
  const rs = await db.execute({
    sql: "SELECT id FROM rooms WHERE active_at < ? LIMIT 100",
    args: [before],
  });
  const ids = objects(rs).map((r) => String(r.id));
  for (const id of ids) await deleteRoom(db, id);
  return ids;
}

// ---------------------------------------------------------------- agents

const GET_AGENT_SQL = `SELECT ${AGENT_COLS} FROM agents WHERE room_id = ? AND id = ?`;

export async function getAgent(db: Db, roomId: string, id: string): Promise<Agent | null> {
  const rs = await db.execute({
    sql: GET_AGENT_SQL,
    args: [roomId, id],
  });
  const r = objects(rs)[0];
  return r ? toAgent(r) : null;
}

const LIST_AGENTS_SQL = `SELECT ${AGENT_COLS} FROM agents WHERE room_id = ? ORDER BY joined_at, id`;

export async function listAgents(db: Db, roomId: string): Promise<Agent[]> {
  const rs = await db.execute({
    sql: LIST_AGENTS_SQL,
    args: [roomId],
  });
  return objects(rs).map(toAgent);
}

export type AgentInsert = "created" | "exists" | "no_room" | "full";

const INSERT_AGENT_SQL =
  `INSERT INTO agents (room_id, id, name, role, meta, joined_at, last_seen, rev, token_hash)
      SELECT r.id, ?, ?, ?, ?, ?, ?, r.rev + 1, ? FROM rooms r
      WHERE r.id = ? AND (SELECT count(*) FROM agents WHERE room_id = r.id) < ?
      ON CONFLICT (room_id, id) DO NOTHING RETURNING ${AGENT_COLS}`;

/** Registers a new agent unless the id is taken or the room holds `maxAgents` already. */
export async function insertAgent(
  db: Db,
  a: {
    roomId: string;
    id: string;
    name: string;
    role: string;
    meta: unknown;
    tokenHash: string | null;
  },
  maxAgents: number,
  idem?: KeyedWrite,
): Promise<{ result: AgentInsert; agent?: Agent }> {
  const t = now();
  const stmt = {
    sql: INSERT_AGENT_SQL,
    args: [
      a.id,
      a.name,
      a.role,
      JSON.stringify(a.meta ?? null),
      t,
      t,
      a.tokenHash,
      a.roomId,
      maxAgents,
    ],
  };
  const rs = idem
    ? (await keyedBatch(db, idem, "agent_created", a.roomId, [stmt]))?.[0]
    : await db.execute(stmt);
  const r = rs && objects(rs)[0];
  if (r) return { result: "created", agent: toAgent(r) };
  if (await getAgent(db, a.roomId, a.id)) return { result: "exists" };
  return { result: (await getRoomAuth(db, a.roomId)) ? "full" : "no_room" };
}

const UPDATE_AGENT_SQL = `UPDATE agents SET
        name = coalesce(?, name), role = coalesce(?, role),
        meta = CASE WHEN ? THEN ? ELSE meta END,
        status = coalesce(?, status),
        note = CASE WHEN ? THEN ? ELSE note END,
        token_hash = coalesce(?, token_hash),
        last_seen = ?, rev = ${NEXT_REV}
      WHERE room_id = ? AND id = ? RETURNING ${AGENT_COLS}`;

/** Changes a registered agent; fields left undefined keep their value. */
export async function updateAgent(
  db: Db,
  roomId: string,
  id: string,
  patch: {
    name?: string;
    role?: string;
    meta?: unknown;
    status?: string;
    note?: string | null;
    tokenHash?: string;
  },
  idem?: KeyedWrite,
): Promise<Agent | null> {
  const stmt = {
    sql: UPDATE_AGENT_SQL,
    args: [
      patch.name ?? null,
      patch.role ?? null,
      patch.meta !== undefined ? 1 : 0,
      JSON.stringify(patch.meta ?? null),
      patch.status ?? null,
      patch.note !== undefined ? 1 : 0,
      patch.note ?? null,
      patch.tokenHash ?? null,
      now(),
      roomId,
      roomId,
      id,
    ],
  };
  const rs = idem
    ? (await keyedBatch(db, idem, "agent_updated", roomId, [stmt]))?.[0]
    : await db.execute(stmt);
  const r = rs && objects(rs)[0];
  return r ? toAgent(r) : null;
}

/** Marks an agent as seen now; presence alone takes no revision. */
export async function touchAgent(db: Db, roomId: string, id: string): Promise<void> {
  await db.execute({
    sql: "UPDATE agents SET last_seen = ? WHERE room_id = ? AND id = ?",
    args: [now(), roomId, id],
  });
}

// ---------------------------------------------------------------- messages

export interface NewMessage {
  roomId: string;
  from: string | null;
  to: string | null;
  kind: string;
  body: unknown;
  replyTo: number | null;
}

const INSERT_MESSAGE_SQL =
  `INSERT INTO messages (room_id, id, rev, from_agent, to_agent, kind, body, reply_to,
        thread_id, created_at)
      SELECT r.id, r.rev + 1, r.rev + 1, ?, ?, ?, ?, ?,
        (SELECT coalesce(p.thread_id, p.id) FROM messages p WHERE p.room_id = r.id AND p.id = ?), ?
      FROM rooms r WHERE r.id = ?
        AND (? IS NULL OR EXISTS (SELECT 1 FROM messages p WHERE p.room_id = r.id AND p.id = ?))
      RETURNING ${MESSAGE_COLS}`;

/** Appends a message at the room's next revision; null when the room or `reply_to` is unknown. */
export async function insertMessage(
  db: Db,
  m: NewMessage,
  idem?: KeyedWrite,
): Promise<Message | null> {
  const stmt = {
    sql: INSERT_MESSAGE_SQL,
    args: [
      m.from,
      m.to,
      m.kind,
      JSON.stringify(m.body),
      m.replyTo,
      m.replyTo,
      now(),
      m.roomId,
      m.replyTo,
      m.replyTo,
    ],
  };
  if (idem) {
    const rs = await keyedBatch(db, idem, "message_created", m.roomId, [stmt]);
    const r = rs && objects(rs[0])[0];
    return r ? toMessageAt(r, new Date(idem.at).toISOString()) : null;
  }
  const r = objects(await db.execute(stmt))[0];
  return r ? toMessage(r) : null;
}

const GET_MESSAGE_SQL = `SELECT ${MESSAGE_COLS} FROM messages WHERE room_id = ? AND id = ?`;

export async function getMessage(db: Db, roomId: string, id: number): Promise<Message | null> {
  const rs = await db.execute({
    sql: GET_MESSAGE_SQL,
    args: [roomId, id],
  });
  const r = objects(rs)[0];
  return r ? toMessage(r) : null;
}

export interface MessageQuery {
  after: number;
  before?: number;
  limit: number;
  kind?: string;
  to?: string;
  from?: string;
  thread?: number;
  unclaimed?: boolean;
}

// Filters of a message listing, in the order their arguments follow the cursor.
const MESSAGE_FILTERS = [
  ["before", "m.id < ?"],
  ["kind", "m.kind = ?"],
  ["to", "(m.to_agent = ? OR m.to_agent IS NULL)"],
  ["from", "m.from_agent = ?"],
  // The whole thread the message belongs to: its root and every reply under that root.
  [
    "thread",
    `coalesce(m.thread_id, m.id) = (SELECT coalesce(t.thread_id, t.id) FROM messages t
    WHERE t.room_id = r.id AND t.id = ?)`,
  ],
  ["unclaimed", "(m.claimed_by IS NULL OR m.claim_expires_at <= ?)"],
] as const;
const listMessagesSql = new Map<number, string>();

/**
 * One statement per combination of filters, built once. The room is the outer row of a LEFT
 * JOIN, so its retention point comes back in the same snapshot as the messages, and a row
 * comes back (with null message columns) when none matched: nothing when retention passed the
 * cursor, never a gap.
 */
function messagesSql(mask: number): string {
  let sql = listMessagesSql.get(mask);
  if (sql === undefined) {
    const where = MESSAGE_FILTERS.filter((_, i) => mask & (1 << i)).map(([, w]) => ` AND ${w}`);
    const cols = MESSAGE_COLS.split(", ").map((c) => `m.${c}`).join(", ");
    sql = `SELECT r.trimmed_rev, ${cols} FROM rooms r LEFT JOIN messages m
      ON m.room_id = r.id AND m.id > ?${where.join("")} AND ? >= r.trimmed_rev
      WHERE r.id = ? ORDER BY m.id ${mask & 1 ? "DESC" : "ASC"} LIMIT ?+0`;
    listMessagesSql.set(mask, sql);
  }
  return sql;
}

async function queryMessages(db: Db, roomId: string, q: MessageQuery): Promise<ResultSet> {
  let mask = 0;
  const args: Value[] = [q.after];
  const values = [q.before, q.kind, q.to, q.from, q.thread, q.unclaimed ? now() : undefined];
  values.forEach((v, i) => {
    if (v !== undefined) mask |= 1 << i, args.push(v);
  });
  // After 0 reads from the oldest kept message whatever retention removed.
  args.push(q.after > 0 ? q.after : Number.MAX_SAFE_INTEGER, roomId, q.limit);
  return await db.execute({ sql: messagesSql(mask), args });
}

/** Rows of a result by column index, whichever shape the driver returned them in. */
function cells(rs: ResultSet): ArrayLike<unknown>[] {
  return rs.rows.map((row) =>
    Array.isArray(row) || typeof (row as ArrayLike<unknown>).length === "number"
      ? row as ArrayLike<unknown>
      : rs.columns.map((c) => (row as Record<string, unknown>)[c])
  );
}

export interface MessagePage {
  /** Each message as JSON text, in id order. */
  items: string[];
  /** The room's retention point when the messages were read; null when the room is gone. */
  trimmedRev: number | null;
}

const shared = new Map<string, Promise<unknown>>();
let sharing = false;

/**
 * Until the microtasks queued so far have run, the same listing asked again shares the first
 * one's answer: when a write wakes thousands of held requests at once (feed.ts calls this after
 * waking them), they read the room once, not once each. Nothing is shared past that, so no answer
 * outlives a commit of this process. (Kept off otherwise: sharing cost every request CPU.)
 */
export function shareReadsNow() {
  // Reads begun before this wake may predate the write that caused it: never share those.
  shared.clear();
  if (sharing) return;
  sharing = true;
  queueMicrotask(() => {
    sharing = false;
    shared.clear();
  });
}

function once<T>(key: string, read: () => Promise<T>): Promise<T> {
  if (!sharing) return read();
  let p = shared.get(key) as Promise<T> | undefined;
  if (p === undefined) shared.set(key, p = read());
  return p;
}

/**
 * Messages of a room in id order, after the cursor (or the newest ones before `before`), as
 * JSON text with the stored bodies spliced in unparsed; none when retention removed messages
 * after the cursor.
 */
export function listMessagesJson(db: Db, roomId: string, q: MessageQuery): Promise<MessagePage> {
  const key = `m\n${roomId}\n${q.after}\n${q.before}\n${q.limit}\n${q.kind}\n${q.to}\n${q.from}\n` +
    `${q.thread}\n${q.unclaimed}`;
  return once(key, () => readMessagesJson(db, roomId, q));
}

async function readMessagesJson(db: Db, roomId: string, q: MessageQuery): Promise<MessagePage> {
  const rows = cells(await queryMessages(db, roomId, q));
  if (rows.length === 0) return { items: [], trimmedRev: null };
  let items: string[] = [];
  if (rows[0][2] !== null) {
    const t = now();
    items = rows.map((r) => messageJson(r, 1, t));
  }
  return {
    items: q.before !== undefined ? items.reverse() : items,
    trimmedRev: Number(rows[0][0]),
  };
}

/** Messages of a room as objects; see `listMessagesJson`. */
export async function listMessages(db: Db, roomId: string, q: MessageQuery): Promise<Message[]> {
  const rs = await queryMessages(db, roomId, q);
  const list = objects(rs).filter((r) => r.id !== null).map(toMessage);
  return q.before !== undefined ? list.reverse() : list;
}

const str = (v: unknown) => JSON.stringify(String(v));
const strOrNull = (v: unknown) => v === null ? "null" : JSON.stringify(String(v));
const numOrNull = (v: unknown) => v === null ? "null" : String(Number(v));

/** JSON.stringify(toMessage(row)), with the stored body spliced in as it is. */
function messageJson(r: ArrayLike<unknown>, o: number, t: string): string {
  const by = r[o + 9];
  const expires = r[o + 11];
  const held = by !== null && (expires === null || String(expires) > t);
  const claim = held
    ? `{"agent":${str(by)},"claimed_at":${str(r[o + 10])},"expires_at":${strOrNull(expires)}}`
    : "null";
  // A lease that ran out, while nobody has claimed the message since (see toMessage).
  const lapsed = by !== null && !held
    ? `,"expired_claim":{"agent":${str(by)},"expires_at":${strOrNull(expires)}}`
    : "";
  return `{"id":${Number(r[o + 1])},"room_id":${str(r[o])},"from_agent":${
    strOrNull(r[o + 3])
  },"to_agent":${strOrNull(r[o + 4])},"kind":${str(r[o + 5])},"body":${r[o + 6]},"reply_to":${
    numOrNull(r[o + 7])
  },"created_at":${str(r[o + 8])},"claim":${claim}${lapsed},"rev":${Number(r[o + 2])}}`;
}

/** JSON.stringify(toState(row)), with the stored value spliced in as it is. */
function stateJson(r: ArrayLike<unknown>): string {
  return `{"room_id":${str(r[0])},"scope":${str(r[1])},"key":${str(r[2])},"value":${
    r[3]
  },"version":${Number(r[4])},"rev":${Number(r[5])},"updated_at":${str(r[6])},"expires_at":${
    strOrNull(r[7])
  }}`;
}

export type ClaimResult =
  | { ok: true; message: Message }
  | { ok: false; message: Message | null };

const CLAIM_MESSAGE_SQL = `UPDATE messages SET claimed_by = ?1,
        claimed_at = CASE WHEN claimed_by = ?1 AND (claim_expires_at IS NULL OR claim_expires_at > ?2)
          THEN claimed_at ELSE ?2 END,
        claim_expires_at = ?3, rev = (SELECT rev + 1 FROM rooms WHERE id = ?4)
      WHERE room_id = ?4 AND id = ?5
        AND (claimed_by IS NULL OR claimed_by = ?1 OR claim_expires_at <= ?2)
      RETURNING ${MESSAGE_COLS}`;

/** Claims a message for `agent` unless someone else holds a live claim on it. */
export async function claimMessage(
  db: Db,
  roomId: string,
  id: number,
  agent: string,
  expiresAt: string | null,
  idem?: KeyedWrite,
): Promise<ClaimResult> {
  const t = now();
  const stmt = { sql: CLAIM_MESSAGE_SQL, args: [agent, t, expiresAt, roomId, id] };
  const r = await claimWrite(db, roomId, stmt, idem);
  if (r) return { ok: true, message: r };
  return { ok: false, message: await getMessage(db, roomId, id) };
}

const RELEASE_MESSAGE_SQL =
  `UPDATE messages SET claimed_by = NULL, claimed_at = NULL, claim_expires_at = NULL,
        rev = (SELECT rev + 1 FROM rooms WHERE id = ?1)
      WHERE room_id = ?1 AND id = ?2 AND claimed_by IS NOT NULL
        AND (claim_expires_at IS NULL OR claim_expires_at > ?3)
        AND (?4 IS NULL OR claimed_by = ?4)
      RETURNING ${MESSAGE_COLS}`;

/** Releases a claim held by `agent` (any holder when `agent` is null). */
export async function releaseMessage(
  db: Db,
  roomId: string,
  id: number,
  agent: string | null,
  idem?: KeyedWrite,
): Promise<ClaimResult> {
  const stmt = { sql: RELEASE_MESSAGE_SQL, args: [roomId, id, now(), agent] };
  const r = await claimWrite(db, roomId, stmt, idem);
  if (r) return { ok: true, message: r };
  return { ok: false, message: await getMessage(db, roomId, id) };
}

/** Runs a claim or release, keyed or not; the message it changed, or null. */
async function claimWrite(
  db: Db,
  roomId: string,
  stmt: Statement,
  idem: KeyedWrite | undefined,
): Promise<Message | null> {
  if (!idem) {
    const r = objects(await db.execute(stmt))[0];
    return r ? toMessage(r) : null;
  }
  const rs = await keyedBatch(db, idem, "message_claim", roomId, [stmt]);
  const r = rs && objects(rs[0])[0];
  return r ? toMessageAt(r, new Date(idem.at).toISOString()) : null;
}

// The cutoffs walk from the oldest kept message, so a trim costs what it removes: the excess
// over the cap counted by rooms.msg_count, and the run of messages older than the age limit.
const TRIM_BY_COUNT = `(SELECT max(id) FROM (SELECT id FROM messages
  WHERE room_id = ?1 AND id > (SELECT trimmed_rev FROM rooms WHERE id = ?1) ORDER BY id
  LIMIT (SELECT max(0, msg_count - ?2) FROM rooms WHERE id = ?1)))`;
const TRIM_BY_AGE = `(SELECT id FROM messages WHERE room_id = ?1 AND id < coalesce(
  (SELECT id FROM messages WHERE room_id = ?1 AND id > (SELECT trimmed_rev FROM rooms WHERE id = ?1)
    AND created_at >= ?3 ORDER BY id LIMIT 1), 9007199254740991) ORDER BY id DESC LIMIT 1)`;
const TRIM = [
  `UPDATE rooms SET trimmed_rev = max(trimmed_rev,
    coalesce(CASE WHEN ?2 > 0 AND msg_count > ?2 THEN ${TRIM_BY_COUNT} END, 0),
    coalesce(CASE WHEN ?3 IS NOT NULL THEN ${TRIM_BY_AGE} END, 0))
  WHERE id = ?1`,
  // Everything below the cutoff: older messages are gone already, so this walks only the excess.
  `DELETE FROM messages WHERE room_id = ?1
    AND id <= (SELECT trimmed_rev FROM rooms WHERE id = ?1)`,
  "UPDATE rooms SET msg_count = msg_count - changes() WHERE id = ?1",
];

/**
 * Drops a room's messages beyond the newest `keep` (0: no cap) and older than `olderThan`,
 * recording the highest dropped id so that cursors older than it are refused instead of
 * silently skipping.
 */
export async function trimMessages(
  db: Db,
  roomId: string,
  keep: number,
  olderThan: string | null,
): Promise<void> {
  if (keep <= 0 && olderThan === null) return;
  await db.batch([
    { sql: TRIM[0], args: [roomId, keep, olderThan] },
    { sql: TRIM[1], args: [roomId] },
    { sql: TRIM[2], args: [roomId] },
  ], "write");
}

/** Rooms that hold messages older than `before`, for age-based retention. */
export async function roomsWithMessagesBefore(db: Db, before: string): Promise<string[]> {
  const rs = await db.execute({
    sql: `SELECT r.id FROM rooms r WHERE EXISTS (SELECT 1 FROM messages m
      WHERE m.room_id = r.id AND m.id > r.trimmed_rev AND m.created_at < ?) LIMIT 100`,
    args: [before],
  });
  return objects(rs).map((r) => String(r.id));
}

// ---------------------------------------------------------------- state

const GET_STATE =
  `SELECT ${STATE_COLS} FROM state WHERE room_id = ? AND scope = ? AND key = ? AND ${LIVE}`;

export async function getState(
  db: Db,
  roomId: string,
  scope: string,
  key: string,
): Promise<StateEntry | null> {
  const rs = await db.execute({ sql: GET_STATE, args: [roomId, scope, key, now()] });
  const r = objects(rs)[0];
  return r ? toState(r) : null;
}

export interface StatePut {
  scope: string;
  key: string;
  value: unknown;
  /** Only if the live version equals this; 0 means only if the key does not exist. */
  ifVersion?: number;
  expiresAt?: string | null;
}
export interface StateDelete {
  scope: string;
  key: string;
  ifVersion?: number;
}

/**
 * The live keys of room `r` (?1) at time ?5 are below the cap ?8: the counter of keys not
 * deleted, less (only when it reaches the cap) the expired ones still stored, counted in the
 * state_expires index without reading any value.
 */
const BELOW_CAP = `CASE WHEN r.state_keys < ?8 THEN 1 ELSE r.state_keys - (SELECT count(*)
  FROM state WHERE room_id = ?1 AND deleted = 0 AND expires_at IS NOT NULL AND expires_at <= ?5)
  < ?8 END`;

const PUT_STATE =
  `INSERT INTO state (room_id, scope, key, value, version, rev, updated_at, expires_at)
      SELECT r.id, ?2, ?3, ?4, 1, r.rev + 1, ?5, ?6 FROM rooms r
      WHERE r.id = ?1
        AND (?7 IS NULL OR ?7 = 0 OR EXISTS (SELECT 1 FROM state
          WHERE room_id = ?1 AND scope = ?2 AND key = ?3))
        AND (EXISTS (SELECT 1 FROM state WHERE room_id = ?1 AND scope = ?2 AND key = ?3
            AND deleted = 0 AND (expires_at IS NULL OR expires_at > ?5))
          OR ${BELOW_CAP})
      ON CONFLICT (room_id, scope, key) DO UPDATE SET
        value = excluded.value, version = state.version + 1, rev = excluded.rev,
        updated_at = excluded.updated_at, expires_at = excluded.expires_at, deleted = 0
      WHERE ?7 IS NULL
        OR (?7 = 0 AND (state.deleted = 1 OR state.expires_at <= ?5))
        OR (?7 = state.version AND state.deleted = 0
          AND (state.expires_at IS NULL OR state.expires_at > ?5))
      RETURNING ${STATE_COLS}`;

function putStatement(roomId: string, p: StatePut, maxKeys: number, t: string): Statement {
  const ifv = p.ifVersion ?? null;
  return {
    sql: PUT_STATE,
    args: [roomId, p.scope, p.key, JSON.stringify(p.value), t, p.expiresAt ?? null, ifv, maxKeys],
  };
}

const DELETE_STATE = `UPDATE state SET deleted = 1, value = 'null', expires_at = NULL,
    updated_at = ?4, rev = (SELECT rev + 1 FROM rooms WHERE id = ?1)
  WHERE room_id = ?1 AND scope = ?2 AND key = ?3 AND deleted = 0
    AND (expires_at IS NULL OR expires_at > ?4) AND (?5 IS NULL OR version = ?5)
  RETURNING ${STATE_COLS}`;

function deleteStatement(roomId: string, d: StateDelete, t: string): Statement {
  return {
    sql: DELETE_STATE,
    args: [roomId, d.scope, d.key, t, d.ifVersion ?? null],
  };
}

/** Writes one key; null when its condition failed, the room is unknown, or the room is full. */
export async function putState(
  db: Db,
  roomId: string,
  p: StatePut,
  maxKeys: number,
  idem?: KeyedWrite,
): Promise<StateEntry | null> {
  const stmt = putStatement(roomId, p, maxKeys, now());
  const rs = idem
    ? (await keyedBatch(db, idem, "state_put", roomId, [stmt]))?.[0]
    : await db.execute(stmt);
  const r = rs && objects(rs)[0];
  return r ? toState(r) : null;
}

/** Deletes one live key; null when absent or its condition failed. */
export async function deleteState(
  db: Db,
  roomId: string,
  d: StateDelete,
  idem?: KeyedWrite,
): Promise<StateEntry | null> {
  const stmt = deleteStatement(roomId, d, now());
  const rs = idem
    ? (await keyedBatch(db, idem, "state_deleted", roomId, [stmt]))?.[0]
    : await db.execute(stmt);
  const r = rs && objects(rs)[0];
  return r ? toState(r) : null;
}

export type StateOp = ({ op: "put" } & StatePut) | ({ op: "delete" } & StateDelete);

const COUNT_STATE = `SELECT r.state_keys - (SELECT count(*) FROM state
    WHERE room_id = r.id AND deleted = 0 AND expires_at IS NOT NULL AND expires_at <= ?) AS n
  FROM rooms r WHERE r.id = ?`;

/**
 * Counts a room's live keys, to tell a full room from a failed condition: from the room's
 * counter, without reading the keys.
 */
export async function countState(db: Db, roomId: string): Promise<number> {
  const rs = await db.execute({ sql: COUNT_STATE, args: [now(), roomId] });
  return Number(objects(rs)[0]?.n ?? 0);
}

/**
 * Applies several writes all or nothing: after each write a guard checks that it took (it
 * changed a row); a failed guard aborts the batch, which rolls it back.
 * Returns the written entries, or null when a condition failed.
 */
export async function applyStateBatch(
  db: Db,
  roomId: string,
  ops: StateOp[],
  maxKeys: number,
  idem?: KeyedWrite,
): Promise<StateEntry[] | null> {
  const t = now();
  // (Comparing each row's rev with the room's missed a failed write to the key the room wrote
  // last, and let the rest of the batch commit: the guard counts changes().)
  const stmts: Statement[] = ops.flatMap((op) => [
    op.op === "put" ? putStatement(roomId, op, maxKeys, t) : deleteStatement(roomId, op, t),
    GUARD,
  ]);
  if (idem) {
    const results = await keyedBatch(db, idem, "state_batch", roomId, stmts, ops.length);
    return results && results.filter((_, i) => i % 2 === 0).map((rs) => toState(objects(rs)[0]));
  }
  try {
    const results = await db.batch(stmts, "write");
    return results.filter((_, i) => i % 2 === 0).map((rs) => toState(objects(rs)[0]));
  } catch (err) {
    if (/batch_guard/.test(String((err as Error)?.message))) return null;
    throw err;
  }
}

// ---------------------------------------------------------------- expiry

const LEASE_PENDING = "claimed_at IS NOT NULL AND claim_expires_at IS NOT NULL";
const TTL_PENDING = "deleted = 0 AND expires_at IS NOT NULL";

/** The earliest claim lease or key ttl still to run out, in one room or (null) in every room. */
export async function nextExpiry(db: Db, roomId: string | null): Promise<string | null> {
  const inRoom = roomId === null ? "" : "room_id = ?1 AND";
  const rs = await db.execute({
    sql: `SELECT min(t) AS t FROM (
      SELECT min(claim_expires_at) AS t FROM messages INDEXED BY messages_lease WHERE ${inRoom} ${LEASE_PENDING}
      UNION ALL SELECT min(expires_at) FROM state INDEXED BY state_ttl WHERE ${inRoom} ${TTL_PENDING})`,
    args: roomId === null ? [] : [roomId],
  });
  const t = objects(rs)[0]?.t;
  return t === null || t === undefined ? null : String(t);
}

/**
 * Records every lease and ttl that ran out by `at` (in one room, or in all) as a change: each
 * row takes its room's next revision, so every expiry appears once in the feed. A lapsed claim
 * keeps its holder and expiry, with claimed_at cleared to mark it recorded; an expired key
 * becomes a tombstone that keeps its expires_at. The conditions make it safe for several
 * processes to run at once: a row is taken by whichever gets there first, exactly once.
 * Returns the newest revision each room reached.
 */
export async function expireDue(
  db: Db,
  roomId: string | null,
  at: string = now(),
): Promise<Map<string, number>> {
  const inRoom = roomId === null ? "" : "room_id = ?2 AND";
  const args = roomId === null ? [at] : [at, roomId];
  // The correlated subquery is evaluated per row, after the rev trigger of the row before.
  // INDEXED BY: without statistics the planner would scan the room by its primary key.
  const results = await db.batch([
    {
      sql: `UPDATE messages INDEXED BY messages_lease SET claimed_at = NULL,
          rev = (SELECT rev + 1 FROM rooms WHERE id = messages.room_id)
        WHERE ${inRoom} ${LEASE_PENDING} AND claim_expires_at <= ?1 RETURNING room_id, rev`,
      args,
    },
    {
      sql:
        `UPDATE state INDEXED BY state_ttl SET deleted = 1, value = 'null', updated_at = expires_at,
          rev = (SELECT rev + 1 FROM rooms WHERE id = state.room_id)
        WHERE ${inRoom} ${TTL_PENDING} AND expires_at <= ?1 RETURNING room_id, rev`,
      args,
    },
    // For one room, its revision after the batch: when a concurrent request recorded the
    // expiry first, this one still learns the revision that holds it.
    ...(roomId === null ? [] : [{
      sql: "SELECT id AS room_id, rev FROM rooms WHERE id = ?",
      args: [roomId],
    }]),
  ], "write");
  const revs = new Map<string, number>();
  for (const r of results.flatMap(objects)) {
    const id = String(r.room_id);
    revs.set(id, Math.max(revs.get(id) ?? 0, Number(r.rev)));
  }
  return revs;
}

// ---------------------------------------------------------------- digest

/** A statement with `?N` parameters, given exactly as many arguments as the highest N it uses. */
function numbered(stmt: { sql: string; args: Value[] }): Statement {
  const n = Math.max(0, ...[...stmt.sql.matchAll(/\?(\d+)/g)].map((m) => Number(m[1])));
  return { sql: stmt.sql, args: stmt.args.slice(0, n) };
}

export interface DigestRows {
  rev: number;
  trimmedRev: number;
  /** When the room was at the cursor, as near as its rows tell (null for cursor 0). */
  cursorTime: string | null;
  /** Messages to the agent after the cursor that it has not replied to (tasks aside). */
  inbox: Message[];
  inboxTotal: number;
  /** Tasks open to the agent: unclaimed, lease run out, or claimed by it with no result yet. */
  tasks: Message[];
  tasksTotal: number;
  /** Keys written, deleted or expired after the cursor, at their latest version. */
  state: (StateEntry & { deleted: boolean })[];
  stateTotal: number;
  agents: Agent[];
  /** New messages after the cursor, per kind. */
  counts: { kind: string; n: number }[];
}

/**
 * What a digest is made of, read in one snapshot: at most `limit` rows per list, with totals.
 * `agent` null reads no inbox, and tasks open to anyone. Null when the room does not exist.
 */
export async function readDigest(
  db: Db,
  roomId: string,
  q: { after: number; agent: string | null; limit: number },
): Promise<DigestRows | null> {
  const t = now();
  // ?1 room, ?2 agent, ?3 cursor, ?4 now
  const args = [roomId, q.agent, q.after, t];
  const repliedBy = (kind: string) =>
    `EXISTS (SELECT 1 FROM messages r INDEXED BY messages_reply WHERE r.room_id = ?1
      AND r.reply_to IS NOT NULL AND r.reply_to = m.id AND r.from_agent = ?2 ${kind})`;
  // INDEXED BY: without statistics the planner scans the room by primary key instead, and does
  // so again for every row in the correlated subquery.
  const inbox = `FROM messages m INDEXED BY messages_to WHERE m.room_id = ?1
    AND m.to_agent IS NOT NULL AND m.to_agent = ?2 AND m.id > ?3
    AND m.kind <> 'task' AND (m.from_agent IS NULL OR m.from_agent <> ?2)
    AND NOT ${repliedBy("")}`;
  const tasks = `FROM messages m INDEXED BY messages_kind WHERE m.room_id = ?1 AND m.kind = 'task'
    AND (?2 IS NULL OR m.to_agent IS NULL OR m.to_agent = ?2)
    AND (m.claimed_by IS NULL OR m.claim_expires_at <= ?4
      OR (m.claimed_by = ?2 AND NOT ${repliedBy("AND r.kind = 'result'")}))`;
  const state = "FROM state WHERE room_id = ?1 AND rev > ?3";
  const cols = MESSAGE_COLS.split(", ").map((c) => `m.${c}`).join(", ");
  const results = await db.batch(
    [
      { sql: "SELECT rev, trimmed_rev FROM rooms WHERE id = ?1", args },
      {
        sql: `SELECT max(t) AS t FROM (
        SELECT (SELECT created_at FROM messages WHERE room_id = ?1 AND id <= ?3
          ORDER BY id DESC LIMIT 1) AS t
        UNION ALL SELECT (SELECT updated_at FROM state WHERE room_id = ?1 AND rev <= ?3
          ORDER BY rev DESC LIMIT 1))`,
        args,
      },
      { sql: `SELECT ${cols} ${inbox} ORDER BY m.id LIMIT ?5`, args: [...args, q.limit] },
      { sql: `SELECT count(*) AS n ${inbox}`, args },
      { sql: `SELECT ${cols} ${tasks} ORDER BY m.id LIMIT ?5`, args: [...args, q.limit] },
      { sql: `SELECT count(*) AS n ${tasks}`, args },
      { sql: `SELECT ${STATE_COLS} ${state} ORDER BY rev LIMIT ?5`, args: [...args, q.limit] },
      { sql: `SELECT count(*) AS n ${state}`, args },
      {
        sql: `SELECT ${AGENT_COLS} FROM agents WHERE room_id = ?1 ORDER BY joined_at, id LIMIT ?5`,
        args: [...args, q.limit],
      },
      {
        // Grouped by an expression, so the planner reads the primary key's range after the
        // cursor rather than the whole room through messages_kind.
        sql: `SELECT kind, count(*) AS n FROM messages WHERE room_id = ?1 AND id > ?3
          GROUP BY kind || '' ORDER BY n DESC, kind`,
        args,
      },
    ].map(numbered),
    "read",
  );
  const [room, cursor, inboxRows, inboxN, taskRows, tasksN, stateRows, stateN, agents, counts] =
    results.map(objects);
  if (!room[0]) return null;
  const count = (rows: Record<string, unknown>[]) => Number(rows[0]?.n ?? 0);
  return {
    rev: Number(room[0].rev),
    trimmedRev: Number(room[0].trimmed_rev),
    cursorTime: cursor[0]?.t == null ? null : String(cursor[0].t),
    inbox: inboxRows.map(toMessage),
    inboxTotal: count(inboxN),
    tasks: taskRows.map(toMessage),
    tasksTotal: count(tasksN),
    state: stateRows.map((r) => ({ ...toState(r), deleted: Number(r.deleted) === 1 })),
    stateTotal: count(stateN),
    agents: agents.map(toAgent),
    counts: counts.map((r) => ({ kind: String(r.kind), n: Number(r.n) })),
  };
}

// ---------------------------------------------------------------- changes

const LIST_CHANGES = [
  `SELECT ${MESSAGE_COLS} FROM messages WHERE room_id = ? AND rev > ? ORDER BY rev LIMIT ?+0`,
  `SELECT ${AGENT_COLS} FROM agents WHERE room_id = ? AND rev > ? ORDER BY rev LIMIT ?+0`,
  `SELECT ${STATE_COLS} FROM state WHERE room_id = ? AND rev > ? ORDER BY rev LIMIT ?+0`,
  // Read in the same snapshot, so a trim between two reads cannot open an unseen gap.
  "SELECT trimmed_rev FROM rooms WHERE id = ?",
];

async function queryChanges(db: Db, roomId: string, after: number, limit: number) {
  const args = [roomId, after, limit];
  return await db.batch([
    { sql: LIST_CHANGES[0], args },
    { sql: LIST_CHANGES[1], args },
    { sql: LIST_CHANGES[2], args },
    { sql: LIST_CHANGES[3], args: [roomId] },
  ], "read");
}

/**
 * Every change after `after` in revision order, each entity at its latest revision, with the
 * room's retention point read in the same snapshot.
 */
export async function listChanges(
  db: Db,
  roomId: string,
  after: number,
  limit: number,
): Promise<{ changes: Change[]; trimmedRev: number }> {
  const [messages, agents, state, room] = await queryChanges(db, roomId, after, limit);
  const changes: Change[] = [
    ...objects(messages).map((r) => ({
      rev: Number(r.rev),
      type: "message" as const,
      message: toMessage(r),
    })),
    ...objects(agents).map((r) => ({
      rev: Number(r.rev),
      type: "agent" as const,
      agent: toAgent(r),
    })),
    ...objects(state).map((r) => ({
      rev: Number(r.rev),
      type: "state" as const,
      deleted: Number(r.deleted) === 1,
      // Only expiry leaves a deleted key with its expires_at (a delete clears it).
      ...(Number(r.deleted) === 1 && r.expires_at !== null ? { expired: true as const } : {}),
      state: toState(r),
    })),
  ];
  return {
    changes: changes.sort((a, b) => a.rev - b.rev).slice(0, limit),
    trimmedRev: Number(objects(room)[0]?.trimmed_rev ?? 0),
  };
}

/** One change as JSON text, with its revision. */
export interface ChangeJson {
  rev: number;
  json: string;
}

/**
 * The changes of `listChanges` as JSON text, stored bodies and values spliced in unparsed;
 * agents carry `online` (seen within `onlineSeconds`), as the agent routes show them.
 */
export function listChangesJson(
  db: Db,
  roomId: string,
  after: number,
  limit: number,
  onlineSeconds: number,
): Promise<{ changes: ChangeJson[]; trimmedRev: number }> {
  return once(
    `c\n${roomId}\n${after}\n${limit}\n${onlineSeconds}`,
    () => readChangesJson(db, roomId, after, limit, onlineSeconds),
  );
}

async function readChangesJson(
  db: Db,
  roomId: string,
  after: number,
  limit: number,
  onlineSeconds: number,
): Promise<{ changes: ChangeJson[]; trimmedRev: number }> {
  const [messages, agents, state, room] = await queryChanges(db, roomId, after, limit);
  const t = now();
  const changes: ChangeJson[] = [];
  for (const r of cells(messages)) {
    const rev = Number(r[2]);
    changes.push({
      rev,
      json: `{"rev":${rev},"type":"message","message":${messageJson(r, 0, t)}}`,
    });
  }
  for (const r of objects(agents)) {
    const a = toAgent(r);
    const online = isOnline(a.last_seen, onlineSeconds);
    changes.push({
      rev: a.rev,
      json: `{"rev":${a.rev},"type":"agent","agent":${JSON.stringify({ ...a, online })}}`,
    });
  }
  for (const r of cells(state)) {
    const rev = Number(r[5]);
    changes.push({
      rev,
      // Only expiry leaves a deleted key with its expires_at (a delete clears it).
      json: `{"rev":${rev},"type":"state","deleted":${Number(r[8]) === 1}${
        Number(r[8]) === 1 && r[7] !== null ? ',"expired":true' : ""
      },"state":${stateJson(r)}}`,
    });
  }
  return {
    changes: changes.sort((a, b) => a.rev - b.rev).slice(0, limit),
    trimmedRev: Number(objects(room)[0]?.trimmed_rev ?? 0),
  };
}

// ---------------------------------------------------------------- idempotency

/**
 * A write carrying an Idempotency-Key. Its record commits in the write's own batch, with the
 * answer: the written rows, selected in the same transaction. A concurrent request with the same
 * key hits the record's primary key and aborts its whole batch, so the write happens once.
 */
export interface KeyedWrite {
  keyHash: string;
  requestHash: string;
  /** The time the answer describes, in ms since the epoch (claims held, agents online). */
  at: number;
  /** Encrypted secrets that belong to the answer (tokens minted for it), or null. */
  secret: string | null;
  /**
   * Set by the write: `stored` when the record committed with it, `taken` when another request
   * with this key committed first (nothing was written), `unchanged` when the write changed
   * nothing (nothing was stored either).
   */
  outcome?: "stored" | "taken" | "unchanged";
}

/** The tables an answer's rows come from; `ids` is a room id alone (a deleted room). */
type WrittenTable = "rooms" | "agents" | "messages" | "state" | "ids";

/** What a keyed write answers, by the write that made it: the key of its answer shaper. */
export const ANSWER_TABLES = {
  room_created: "rooms",
  room_deleted: "ids",
  agent_created: "agents",
  agent_updated: "agents",
  message_created: "messages",
  message_claim: "messages",
  state_put: "state",
  state_deleted: "state",
  state_batch: "state",
} as const satisfies Record<string, WrittenTable>;
export type AnswerOp = keyof typeof ANSWER_TABLES;

/** A state row as written, with whether the write deleted it. */
export interface StateWrite {
  entry: StateEntry;
  deleted: boolean;
}

export interface IdempotencyRecord {
  requestHash: string;
  /** How to shape the answer from `rows`; null for a record of the old format. */
  op: string | null;
  /** The status of an old-format record; new ones take theirs from `op`. */
  status: number;
  /** The written rows as JSON (old format: the encrypted response). */
  response: string | null;
  secret: string | null;
  at: number;
  createdAt: string;
}

const COLS: Record<WrittenTable, string> = {
  rooms: ROOM_COLS,
  agents: AGENT_COLS,
  messages: MESSAGE_COLS,
  state: STATE_COLS,
  ids: "id",
};

/**
 * The rows a write changed, as the JSON its record keeps, selected in the write's transaction:
 * each write takes the room's next revision, so its `n` writes hold the room's newest `n`.
 */
function answerOf(table: WrittenTable, roomId: string, n: number): Statement {
  const cols = COLS[table];
  if (table === "ids") return { sql: "json_array(json_array(?))", args: [roomId] };
  if (table === "rooms") {
    return {
      sql: `(SELECT json_array(json_array(${cols})) FROM rooms WHERE id = ?)`,
      args: [roomId],
    };
  }
  // A range with ORDER BY: with `rev = (SELECT …)` SQLite scans the room by primary key instead.
  return {
    sql: `(SELECT json_group_array(json_array(${cols})) FROM (SELECT ${cols} FROM ${table}
      WHERE room_id = ? AND rev > (SELECT rev FROM rooms WHERE id = ?) - ? ORDER BY rev))`,
    args: [roomId, roomId, n],
  };
}

const GUARD: Statement = {
  // changes() counts the rows the write itself touched (not its triggers): 0 when its
  // condition failed, and then the NULL aborts the batch.
  sql: "INSERT INTO batch_guard (failed) SELECT NULL WHERE changes() = 0",
};

/**
 * Runs `writes` (`n` of them take a revision) and then the key's record with their answer, in
 * one batch. The record is kept only if the last write changed a row, unless that is a GUARD.
 * Returns the writes' results, or null when a guard failed or the key was taken (another
 * request with it committed first: the primary key aborts this batch, writes and all).
 */
async function keyedBatch(
  db: Db,
  idem: KeyedWrite,
  op: AnswerOp,
  roomId: string,
  writes: Statement[],
  n = 1,
): Promise<ResultSet[] | null> {
  const answer = answerOf(ANSWER_TABLES[op], roomId, n);
  const record: Statement = {
    sql: `INSERT INTO idempotency
        (key_hash, room_id, request_hash, op, secret, at, created_at, response)
      SELECT ?, ?, ?, ?, ?, ?, ?, ${answer.sql}
      WHERE ${writes.at(-1) === GUARD ? "1" : "changes() > 0"}`,
    args: [
      idem.keyHash,
      // A deleted room's record outlives it (deleting a room forgets the keys used in it).
      op === "room_deleted" ? null : roomId,
      idem.requestHash,
      op,
      idem.secret,
      idem.at,
      new Date(idem.at).toISOString(),
      ...answer.args ?? [],
    ],
  };
  try {
    const results = await db.batch([...writes, record], "write");
    idem.outcome = results[results.length - 1].rowsAffected > 0 ? "stored" : "unchanged";
    return results.slice(0, -1);
  } catch (err) {
    const message = String((err as Error)?.message);
    if (/batch_guard/.test(message)) idem.outcome = "unchanged";
    else if (/idempotency\.key_hash/.test(message)) idem.outcome = "taken";
    else throw err;
    return null;
  }
}

/** Decodes the rows a record keeps, as its write returned them at the record's time. */
export function writtenRows(
  op: AnswerOp,
  response: string,
  at: number,
): Room[] | Agent[] | Message[] | StateWrite[] | { id: string }[] {
  const table = ANSWER_TABLES[op];
  const cols = COLS[table].split(", ");
  const rows = (JSON.parse(response) as unknown[][]).map((values) => {
    const r: Record<string, unknown> = {};
    cols.forEach((c, i) => r[c] = values[i]);
    return r;
  });
  switch (table) {
    case "rooms":
      return rows.map(toRoom);
    case "agents":
      return rows.map((r) => toAgent(r));
    case "messages":
      return rows.map((r) => toMessageAt(r, new Date(at).toISOString()));
    case "state":
      return rows.map((r) => ({ entry: toState(r), deleted: Number(r.deleted) === 1 }));
    case "ids":
      return rows.map((r) => ({ id: String(r.id) }));
  }
}

/** The record of an Idempotency-Key, or null when it has none. */
export async function getIdempotencyRecord(
  db: Db,
  keyHash: string,
): Promise<IdempotencyRecord | null> {
  const rs = await db.execute({
    sql: `SELECT request_hash, op, status, response, secret, at, created_at
      FROM idempotency WHERE key_hash = ?`,
    args: [keyHash],
  });
  const r = objects(rs)[0];
  if (!r) return null;
  return {
    requestHash: String(r.request_hash),
    op: r.op === null ? null : String(r.op),
    status: Number(r.status),
    response: r.response === null ? null : String(r.response),
    secret: r.secret === null ? null : String(r.secret),
    at: Number(r.at),
    createdAt: String(r.created_at),
  };
}

/** Forgets the keys recorded before `before`: the oldest rows, in O(expired). */
export async function expireIdempotencyKeys(db: Db, before: string): Promise<void> {
  await db.execute({
    sql: `DELETE FROM idempotency WHERE rowid < coalesce(
      (SELECT rowid FROM idempotency WHERE created_at >= ? ORDER BY rowid LIMIT 1),
      (SELECT max(rowid) + 1 FROM idempotency))`,
    args: [before],
  });
}

/** Where a state listing continues: after this scope and key. */
export interface StateCursor {
  scope: string;
  key: string;
}

/**
 * A page of a room's live keys in (scope, key) order after `cursor`: at most `limit` entries
 * and, past the first, at most `maxBytes` of stored values. `next` is where the next page
 * starts, or null after the last.
 */
export async function listStatePage(
  db: Db,
  roomId: string,
  opts: { scope?: string; after?: StateCursor; limit: number; maxBytes: number },
): Promise<{ entries: StateEntry[]; next: StateCursor | null }> {
  const entries: StateEntry[] = [];
  let bytes = 0;
  let after = opts.after;
  // Read in chunks, so a page of large values stops early without loading the rest.
  const chunk = Math.min(64, opts.limit + 1);
  while (true) {
    const where = ["room_id = ?1", `deleted = 0 AND (expires_at IS NULL OR expires_at > ?2)`];
    const args: Value[] = [roomId, now()];
    if (opts.scope !== undefined) where.push(`scope = ?${args.push(opts.scope)}`);
    if (after) {
      where.push(`(scope, key) > (?${args.push(after.scope)}, ?${args.push(after.key)})`);
    }
    const rs = await db.execute({
      sql: `SELECT ${STATE_COLS}, length(CAST(value AS BLOB)) AS size FROM state
        WHERE ${where.join(" AND ")} ORDER BY scope, key LIMIT ${chunk}`,
      args,
    });
    const rows = objects(rs);
    for (const r of rows) {
      const size = Number(r.size);
      if (entries.length === opts.limit || (entries.length > 0 && bytes + size > opts.maxBytes)) {
        const last = entries[entries.length - 1];
        return { entries, next: { scope: last.scope, key: last.key } };
      }
      entries.push(toState(r));
      bytes += size;
    }
    if (rows.length < chunk) return { entries, next: null };
    const last = entries[entries.length - 1];
    after = { scope: last.scope, key: last.key };
  }
}

/**
 * Counts `count` hits in a window and returns the window's hits; or counts nothing and returns
 * null when `unless` names a window already holding `max` hits.
 */
export async function countHit(
  db: Db,
  bucket: string,
  windowEnd: string,
  count = 1,
  unless: { bucket: string; windowEnd: string; max: number } | null = null,
): Promise<number | null> {
  const rs = await db.execute({
    sql: `INSERT INTO limit_windows (bucket, window_end, hits)
      SELECT ?, ?, ? WHERE (SELECT coalesce(max(o.hits), 0) FROM limit_windows AS o
        WHERE o.bucket = ? AND o.window_end = ?) < ?
      ON CONFLICT (bucket, window_end) DO UPDATE SET hits = hits + excluded.hits
      RETURNING hits`,
    args: [
      bucket,
      windowEnd,
      count,
      unless?.bucket ?? "",
      unless?.windowEnd ?? "",
      unless?.max ?? 1,
    ],
  });
  const row = objects(rs)[0];
  return row ? Number(row.hits) : null;
}

export async function expireLimitWindows(db: Db, before: string): Promise<void> {
  await db.execute({ sql: "DELETE FROM limit_windows WHERE window_end <= ?", args: [before] });
}
