// Blocking waits: held requests wake on a write in this process, or on a poll of the room revisions.
import type { Db } from "./db.ts";
import { HttpError } from "./http.ts";
import { roomRevs, shareReadsNow } from "./schema.ts";

interface Waiter {
  after: number;
  wake: (rev: number | null) => void;
}

/**
 * How often held waits check for another process's commit where the driver can tell cheaply
 * (`Db.dataVersion`): a read of one counter, no table; the rooms are read only when it moved.
 */
const CHECK_MS = 10;

/** The revision reported for a room that no longer exists. */
export const ROOM_GONE = Number.MAX_SAFE_INTEGER;

/** Holds waiting requests per room and wakes them when the room's revision passes theirs. */
export class Waiters {
  #rooms = new Map<string, Set<Waiter>>();
  /** The newest revision notified per room, for a wait that starts just after a write. */
  #latest = new Map<string, number>();
  #perClient = new Map<string, number>();
  #total = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #polling = false;
  #version: number | undefined;
  #lastPoll = 0;
  #closed = false;

  constructor(
    readonly db: () => Promise<Db>,
    readonly pollMs: number,
    readonly maxTotal: number,
    readonly maxPerClient: number,
  ) {}

  get size(): number {
    return this.#total;
  }

  /** A write in this process reached revision `rev` of the room. */
  notify(roomId: string, rev: number) {
    if (this.#latest.size > 10_000) this.#latest.clear();
    // A deleted room's id may be used again: only the waits held now hear that it is gone.
    if (rev === ROOM_GONE) this.#latest.delete(roomId);
    else if (rev > (this.#latest.get(roomId) ?? 0)) this.#latest.set(roomId, rev);
    const set = this.#rooms.get(roomId);
    if (!set) return;
    let woken = 0;
    for (const w of set) if (rev > w.after) w.wake(rev), woken++;
    // After the wakes, so that the woken requests' reads come before sharing ends.
    if (woken > 1) shareReadsNow();
  }

  /**
   * Resolves with the revision that passed `after`, or with null when `ms` pass or `signal`
   * aborts first. Throws 429 when the client or the server holds too many waits already.
   */
  wait(
    roomId: string,
    after: number,
    ms: number,
    client: string,
    signal?: AbortSignal,
  ): Promise<number | null> {
    const latest = this.#latest.get(roomId) ?? 0;
    if (latest > after) return Promise.resolve(latest);
    const mine = this.#perClient.get(client) ?? 0;
    if (this.#total >= this.maxTotal || mine >= this.maxPerClient) {
      const who = mine >= this.maxPerClient ? "this client" : "the server";
      throw new HttpError(
        429,
        "too_many_waits",
        `Too many waiting requests for ${who}: retry without wait, or after one returns`,
        { max_waits: mine >= this.maxPerClient ? this.maxPerClient : this.maxTotal },
        { "Retry-After": "1" },
      );
    }
    this.#total++;
    this.#perClient.set(client, mine + 1);
    return new Promise<number | null>((resolve) => {
      let set = this.#rooms.get(roomId);
      if (!set) this.#rooms.set(roomId, set = new Set());
      const done = (rev: number | null = null) => {
        clearTimeout(timeout);
        signal?.removeEventListener("abort", stop);
        if (!set.delete(waiter)) return;
        if (set.size === 0) this.#rooms.delete(roomId);
        this.#total--;
        const left = (this.#perClient.get(client) ?? 1) - 1;
        if (left > 0) this.#perClient.set(client, left);
        else this.#perClient.delete(client);
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

  /** Answers every held request now and stops polling, for shutdown. */
  close() {
    // Waits that start after this (a woken request that finds nothing) run out their time
    // without polling a database that is closing.
    this.#closed = true;
    for (const set of this.#rooms.values()) for (const w of [...set]) w.wake(null);
    this.#stopPolling();
  }

  #startPolling() {
    if (this.#timer !== undefined || this.pollMs <= 0 || this.#closed) return;
    this.#timer = setInterval(() => this.#tick(), Math.min(this.pollMs, CHECK_MS));
  }

  #stopPolling() {
    clearInterval(this.#timer);
    this.#timer = undefined;
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
