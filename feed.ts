// Blocking waits: held requests wake on a write in this process, on a poll of the room revisions,
// or when a claim lease or key ttl runs out (expiry is recorded as a change, then wakes them).
import type { Db } from "./db.ts";
import { HttpError } from "./http.ts";
import { expireDue, nextExpiry, roomRevs, shareReadsNow } from "./schema.ts";

interface Waiter {
  after: number;
  wake: (rev: number | null) => void;
}

/** Who holds a wait: each cap counts one of these. */
type Keys = { client: string; room: string; address: string };

/**
 * How often held waits check for another process's commit where the driver can tell cheaply
 * (`Db.dataVersion`): a read of one counter, no table; the rooms are read only when it moved.
 */
const CHECK_MS = 10;

/** The revision reported for a room that no longer exists. */
export const ROOM_GONE = Number.MAX_SAFE_INTEGER;

/** Holds waiting requests per room and wakes them when the room's revision passes theirs. */
/** A room's earliest pending expiry, read at revision `rev`; `due` is it in ms (or Infinity). */
interface Expiry {
  rev: number;
  next: string | null;
  due: number;
}

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
  /** Per room, the revision at which its earliest pending expiry was read, and that expiry. */
  #expiries = new Map<string, Expiry>();
  /** When the earliest pending expiry of the database runs out, while requests are held. */
  #expiryAt = Infinity;
  /** Something was written since #expiryAt was read, so an earlier expiry may exist. */
  #expiryStale = true;
  #expiryChecked = 0;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryArmedAt = Infinity;
  #expiring = false;
  #version: number | undefined;
  #lastPoll = 0;

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

  /** True once `close` ran: streams end, and waits answer at once. */
  get closed(): boolean {
    return this.#closed;
  }

  /** A write in this process reached revision `rev` of the room. */
  notify(roomId: string, rev: number) {
    if (this.#latest.size > 10_000) this.#latest.clear();
    // A deleted room's id may be used again: only the waits held now hear that it is gone.
    if (rev === ROOM_GONE) this.#latest.delete(roomId), this.#expiries.delete(roomId);
    else if (rev > (this.#latest.get(roomId) ?? 0)) {
      this.#latest.set(roomId, rev);
      // The write may have set a lease or ttl that runs out before the one known.
      this.#expiryStale = true;
      this.#armExpiry();
    }
    const set = this.#rooms.get(roomId);
    if (!set) return;
    let woken = 0;
    for (const w of set) if (rev > w.after) w.wake(rev), woken++;
    // After the wakes, so that the woken requests' reads come before sharing ends.
    if (woken > 1) shareReadsNow();
  }

  /**
   * Takes one of the client's held-request slots for as long as a stream stays open; throws 429
   * when the client or the server holds too many already. Call the returned function once, when
   * the stream ends.
   */
  reserve(client: string, roomId: string, address = client): () => void {
    const keys = { client, room: roomId, address };
    this.#admit(keys);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#leave(keys);
    };
  }

  /**
   * Resolves with the revision that passed `after`, or with null when `ms` pass or `signal`
   * aborts first. Throws 429 when the client, its address, the room or the server holds too many
   * waits already (so that no one of them can take every slot), unless `reserved` says the
   * caller holds a slot from `reserve`.
   */
  wait(
    roomId: string,
    after: number,
    ms: number,
    client: string,
    signal?: AbortSignal,
    reserved = false,
    address = client,
  ): Promise<number | null> {
    const latest = this.#latest.get(roomId) ?? 0;
    if (latest > after) return Promise.resolve(latest);
    if (this.#closed) return Promise.resolve(null);
    const keys = { client, room: roomId, address };
    if (!reserved) this.#admit(keys);
    return new Promise<number | null>((resolve) => {
      let set = this.#rooms.get(roomId);
      if (!set) this.#rooms.set(roomId, set = new Set());
      const done = (rev: number | null = null) => {
        clearTimeout(timeout);
        signal?.removeEventListener("abort", stop);
        if (!set.delete(waiter)) return;
        if (set.size === 0) this.#rooms.delete(roomId);
        if (!reserved) this.#leave(keys);
        resolve(rev);
      };
      const stop = () => done(null);
      const waiter: Waiter = { after, wake: done };
      const timeout = setTimeout(stop, ms);
      signal?.addEventListener("abort", stop);
      set.add(waiter);
      this.#startPolling();
      this.#armExpiry();
    });
  }

  #admit(keys: Keys) {
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
  }

  #leave(keys: Keys) {
    this.#count(keys, -1);
    if (this.#total === 0) this.#stopPolling();
  }

  /**
   * This process's write took revision `rev` of the room and set no lease or ttl: when the
   * room's next expiry is known at the revision just before, it still holds, and `settle` need
   * not read it again.
   */
  carryExpiry(roomId: string, rev: number) {
    const known = this.#expiries.get(roomId);
    if (known && known.rev === rev - 1) this.#expiries.set(roomId, { ...known, rev });
  }

  /**
   * Records the room's leases and ttls that ran out (see `expireDue`), before a request reads or
   * writes it, and returns the room's revision after that. Reads the room's earliest expiry
   * only when its revision moved since the last look, so a quiet room costs no query.
   */
  async settle(db: Db, roomId: string, rev: number): Promise<number> {
    const known = this.#expiries.get(roomId);
    if (known && known.rev === rev && known.due > Date.now()) return rev;
    const t = new Date().toISOString();
    try {
      let next = known?.rev === rev ? known.next : await nextExpiry(db, roomId);
      if (next !== null && next <= t) {
        const revs = await expireDue(db, roomId, t);
        for (const [id, r] of revs) this.notify(id, r), rev = Math.max(rev, r);
        next = await nextExpiry(db, roomId);
      }
      if (this.#expiries.size > 10_000) this.#expiries.clear();
      this.#expiries.set(roomId, { rev, next, due: next === null ? Infinity : Date.parse(next) });
    } catch (err) {
      // The request goes on without it: a later request or the timer records the expiry.
      console.error("expiry failed:", err);
    }
    return rev;
  }

  #count(keys: Keys, delta: 1 | -1) {
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
    // Waits that start after this (a woken request that finds nothing) run out their time
    // without polling a database that is closing.
    this.#closed = true;
    for (const set of this.#rooms.values()) for (const w of [...set]) w.wake(null);
    this.#stopPolling();
  }

  /**
   * While requests are held, a timer fires when the earliest lease or ttl of the database runs
   * out, records it (waking the rooms it concerns) and looks up the next one. After a write it
   * looks again within a poll interval, since the write may have set an earlier one.
   */
  #armExpiry() {
    if (this.#total === 0 || this.#expiring || this.#closed) return;
    let at = this.#expiryAt;
    if (this.#expiryStale) at = Math.min(at, this.#expiryChecked + (this.pollMs || 250));
    if (at === this.#expiryArmedAt) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryArmedAt = at;
    if (at === Infinity) return;
    const ms = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    this.#expiryTimer = setTimeout(() => this.#runExpiry(), ms);
  }

  async #runExpiry() {
    this.#expiryArmedAt = Infinity;
    this.#expiring = true;
    // Set first: when the database fails, the next try waits a poll interval too.
    this.#expiryChecked = Date.now();
    try {
      const d = await this.db();
      this.#expiryStale = false;
      let next = await nextExpiry(d, null);
      const t = new Date().toISOString();
      if (next !== null && next <= t) {
        const revs = await expireDue(d, null, t);
        for (const [id, rev] of revs) this.notify(id, rev);
        this.#expiryStale = false;
        next = await nextExpiry(d, null);
      }
      this.#expiryAt = next === null ? Infinity : Date.parse(next);
    } catch (err) {
      console.error("expiry failed:", err);
      this.#expiryStale = true;
    } finally {
      this.#expiring = false;
    }
    this.#armExpiry();
  }

  #startPolling() {
    if (this.#timer !== undefined || this.pollMs <= 0 || this.#closed) return;
    this.#timer = setInterval(() => this.#tick(), Math.min(this.pollMs, CHECK_MS));
  }

  #stopPolling() {
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#expiryTimer);
    this.#expiryArmedAt = Infinity;
    this.#expiryStale = true; // writes of other processes go unseen until requests are held again
  }

  /**
   * Reads the rooms' revisions every `pollMs`, and sooner when the database says another
   * connection committed since the last check.
   */
  async #tick() {
    if (this.#polling || this.#rooms.size === 0) return;
    this.#polling = true;
    try {
      const d = await this.db();
      const now = Date.now();
      let due = now - this.#lastPoll >= this.pollMs;
      if (d.dataVersion) {
        const v = d.dataVersion();
        if (v !== this.#version) due = true;
        this.#version = v;
      }
      if (!due) return;
      this.#lastPoll = now;
      await this.#poll(d);
    } catch (err) {
      console.error("wait poll failed:", err);
    } finally {
      this.#polling = false;
    }
  }

  /** Catches writes made by other processes or server instances sharing the database. */
  async #poll(d: Db) {
    const ids = [...this.#rooms.keys()];
    const revs = await roomRevs(d, ids);
    for (const id of ids) this.notify(id, revs.get(id) ?? ROOM_GONE);
  }
}
