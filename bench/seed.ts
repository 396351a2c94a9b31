// Bench fixtures: a database migrated by the service's own code, one room, one agent, N messages.
import { DatabaseSync } from "node:sqlite";
import { mintToken, sha256 } from "../auth.ts";
import { openDb } from "../db.ts";
import { createRoom, insertAgent, migrate } from "../schema.ts";

export interface Fixture {
  path: string;
  roomId: string;
  roomToken: string;
  agentId: string;
  agentToken: string;
  /** Messages stored in the room. */
  messages: number;
  /** The room's revision (== the newest message id when messages were seeded). */
  rev: number;
}

export const ROOM_ID = "bench";
export const AGENT_ID = "bench-agent";

/**
 * Creates a database at `path` with the service's migrations, a room with an agent (tokens
 * minted and hashed as the service does), and `messages` messages written straight to the file
 * in one transaction: ids == revs, the room's rev at the newest id (the schema's trigger sets it).
 */
export async function createFixture(
  path: string,
  messages: number,
  synchronous: "NORMAL" | "FULL",
): Promise<Fixture> {
  for (const suffix of ["", "-wal", "-shm"]) {
    await Deno.remove(path + suffix).catch(() => {});
  }
  const db = await openDb({ url: path, synchronous });
  await migrate(db);
  const roomToken = mintToken("room");
  const agentToken = mintToken("agent");
  await createRoom(db, {
    id: ROOM_ID,
    meta: { bench: true },
    tokenHash: sha256(roomToken),
    viewTokenHash: sha256(mintToken("view")),
  });
  const r = await insertAgent(db, {
    roomId: ROOM_ID,
    id: AGENT_ID,
    name: "Bench agent",
    role: "agent",
    meta: null,
    tokenHash: sha256(agentToken),
  }, 1000);
  if (r.result !== "created") throw new Error(`Cannot create the bench agent: ${r.result}`);
  db.close();
  let rev = r.agent!.rev;

  const sqlite = new DatabaseSync(path);
  // A bench file, written once: no journal while seeding, WAL again for the server.
  sqlite.exec(
    "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY",
  );
  if (messages > 0) {
    const insert = sqlite.prepare(
      `INSERT INTO messages (room_id, id, rev, from_agent, to_agent, kind, body, reply_to,
        thread_id, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?, NULL, NULL, ?)`,
    );
    const start = Date.now() - messages * 10;
    sqlite.exec("BEGIN");
    for (let i = 1; i <= messages; i++) {
      const id = rev + i;
      const body = JSON.stringify({ text: `Progress note ${i}: step done, moving on`, n: i });
      const at = new Date(start + i * 10).toISOString();
      insert.run(ROOM_ID, id, id, AGENT_ID, i % 10 === 0 ? "task" : "message", body, at);
    }
    sqlite.exec("COMMIT");
    rev += messages;
  }
  const stored = sqlite.prepare("SELECT rev FROM rooms WHERE id = ?").all(ROOM_ID) as {
    rev: number;
  }[];
  if (Number(stored[0].rev) !== rev) {
    throw new Error(`Seeded room is at rev ${stored[0].rev}, expected ${rev}`);
  }
  sqlite.exec("PRAGMA journal_mode = WAL");
  sqlite.close();
  return { path, roomId: ROOM_ID, roomToken, agentId: AGENT_ID, agentToken, messages, rev };
}

/**
 * Adds `keys` shared state keys to the fixture's room, each a JSON string of about
 * `valueBytes` bytes, written straight to the file (the schema's triggers keep the counters).
 */
export function seedState(f: Fixture, keys: number, valueBytes: number) {
  const sqlite = new DatabaseSync(f.path);
  sqlite.exec("PRAGMA synchronous = OFF");
  const insert = sqlite.prepare(
    `INSERT INTO state (room_id, scope, key, value, version, rev, updated_at)
      SELECT id, '_shared', ?, ?, 1, rev + 1, ? FROM rooms WHERE id = ?`,
  );
  const filler = "x".repeat(Math.max(0, valueBytes - 20));
  const at = new Date().toISOString();
  sqlite.exec("BEGIN");
  for (let i = 0; i < keys; i++) {
    insert.run(`key-${i}`, JSON.stringify(`${i} ${filler}`), at, f.roomId);
  }
  sqlite.exec("COMMIT");
  sqlite.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite.close();
}
