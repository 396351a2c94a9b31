// Blocking waits: held requests wake on a write in this process, or on a poll of the room revisions.
import type { Db } from "./db.ts";
import { HttpError } from "./http.ts";
import { roomRevs } from "./schema.ts";

interface Waiter {
  after: number;
  wake: (rev: number | null) => void;
}

/** The revision reported for a room that no longer exists. */
export const ROOM_GONE = Number.MAX_SAFE_INTEGER;

/** Holds waiting requests per room and wakes them when the room's revision passes theirs. */
export class Waiters {
  #rooms = new Map<string, Set<Waiter>>();
  /** The newest revision notified per room, for a wait that starts just after a write. */
  #latest = new Map<string, number>();
  #held = {
    client: new Map<string, number>(),
    room: new Map<string, number>(),
    address: new Map<string, number>(),
  };
  #total = 0;
  #closed = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #polling = false;

  constructor(
    readonly db: () => Promise<Db>,
    readonly pollMs: number,
    readonly maxTotal: number,
    readonly maxPerClient: number,
    readonly maxPerRoom = Infinity,
    readonly maxPerAddress = Infinity,
  ) {}

  get size(): number {
    return this.#total;
  }

  /** True once `close` ran: waits end at once, so a server can stop. */
  get closed(): boolean {
    return this.#closed;
  }

  /** A write in this process reached revision `rev` of the room. */
  notify(roomId: string, rev: number) {
    if (this.#latest.size > 10_000) this.#latest.clear();
    // A deleted room's id may be used again: only the waits held now hear that it is gone.
    if (rev === ROOM_GONE) this.#latest.delete(roomId);
    else if (rev > (this.#latest.get(roomId) ?? 0)) this.#latest.set(roomId, rev);
    const set = this.#rooms.get(roomId);
    if (!set) return;
    for (const w of set) if (rev > w.after) w.wake(rev);
  }

  /**
   * Resolves with the revision that passed `after`, or with null when `ms` pass or `signal`
   * aborts first. Throws 429 when the client, its address, the room or the server holds too many
   * waits already, so that no one of them can take every slot.
   */
  wait(
    roomId: string,
    after: number,
    ms: number,
    client: string,
    signal?: AbortSignal,
    address = client,
  ): Promise<number | null> {
    const latest = this.#latest.get(roomId) ?? 0;
    if (latest > after) return Promise.resolve(latest);
    if (this.#closed) return Promise.resolve(null);
    const keys = { client, room: roomId, address };
    const full = ([
      ["client", "this client", this.maxPerClient, "SYNC_MAX_WAITS_PER_CLIENT"],
      ["room", "this room", this.maxPerRoom, "SYNC_MAX_WAITS_PER_ROOM"],
      ["address", "this address", this.maxPerAddress, "SYNC_MAX_WAITS_PER_ADDRESS"],
    ] as const).find(([kind, , max]) => (this.#held[kind].get(keys[kind]) ?? 0) >= max) ??
      (this.#total >= this.maxTotal
        ? [null, "the server", this.maxTotal, "SYNC_MAX_WAITS"] as const
        : null);
    if (full) {
      const [, who, max, setting] = full;
      throw new HttpError(
        429,
        "too_many_waits",
        `Too many waiting requests for ${who} (at most ${max}, ${setting}): retry without wait, or after one returns`,
        { max_waits: max },
        { "Retry-After": "1" },
      );
    }
    this.#count(keys, 1);
    return new Promise<number | null>((resolve) => {
      let set = this.#rooms.get(roomId);
      if (!set) this.#rooms.set(roomId, set = new Set());
      const done = (rev: number | null = null) => {
        clearTimeout(timeout);
        signal?.removeEventListener("abort", stop);
        if (!set.delete(waiter)) return;
        if (set.size === 0) this.#rooms.delete(roomId);
        this.#count(keys, -1);
        if (this.#total === 0) this.#stopPolling();
        resolve(rev);
      };
      const stop = () => done(null);
      const waiter: Waiter = { after, wake: done };
      const timeout = setTimeout(stop, ms);
      signal?.addEventListener("abort", stop);
      set.add(waiter);
      this.#startPolling();
    });
  }

  #count(keys: { client: string; room: string; address: string }, delta: 1 | -1) {
    this.#total += delta;
    for (const kind of ["client", "room", "address"] as const) {
      const map = this.#held[kind];
      const n = (map.get(keys[kind]) ?? 0) + delta;
      if (n > 0) map.set(keys[kind], n);
      else map.delete(keys[kind]);
    }
  }

  /** Answers every held request now and stops polling, for shutdown. */
  close() {
    this.#closed = true;
    for (const set of this.#rooms.values()) for (const w of [...set]) w.wake(null);
    this.#stopPolling();
  }

  #startPolling() {
    if (this.#timer !== undefined || this.pollMs <= 0) return;
    this.#timer = setInterval(() => this.#poll(), this.pollMs);
  }

  #stopPolling() {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Catches writes made by other processes or server instances sharing the database. */
  async #poll() {
    if (this.#polling || this.#rooms.size === 0) return;
    this.#polling = true;
    try {
      const ids = [...this.#rooms.keys()];
      const revs = await roomRevs(await this.db(), ids);
      for (const id of ids) this.notify(id, revs.get(id) ?? ROOM_GONE);
    } catch (err) {
      console.error("wait poll failed:", err);
    } finally {
      this.#polling = false;
    }
  }
}
