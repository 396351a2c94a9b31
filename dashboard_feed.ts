// How the room view loads a room and follows its change feed: an event stream, else long polls.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import {
  type Agent,
  type ApiResult,
  type Change,
  type Message,
  request,
  type Room,
  sleep,
  sseParser,
  type StateEntry,
  statePage,
} from "./dashboard_browser.ts";

// Embedded in the page like dashboard_browser.ts (see dashboard_script.ts): these functions use
// only DOM globals and the helpers there, never module state.

/** What the feed needs from the page that shows the room. */
export interface FeedHooks {
  /** The room's path, `/rooms/<id>`. */
  base: string;
  /** How many of the newest messages a load reads. */
  page: number;
  /** The headers that authorize a request. */
  headers(): Record<string, string>;
  /** Shows the room from scratch as it was at `room.rev`, where the feed then follows it. */
  show(room: Room, agents: Agent[], state: StateEntry[], messages: Message[]): void;
  apply(changes: Change[]): void;
  /** "connecting", "live" or "reconnecting". */
  conn(state: string): void;
  transport(how: "stream" | "poll"): void;
  /** The feed is back after trouble: read again what it does not carry (presence). */
  recovered(): void;
  /** A refusal that retrying will not cure: the page stops. */
  fatal(res: ApiResult): void;
}

/** What one attempt to stream the change feed came to, for the follow loop to act on. */
type StreamEnd = "ended" | "failed" | "unsupported" | "reload";

/**
 * Loads the room and follows it. `generation()` changes on every load and stop, so that an
 * answer to an older one can be told apart and dropped.
 */
export function roomFeed(hooks: FeedHooks): {
  load(): Promise<void>;
  stop(): void;
  generation(): number;
} {
  const { base } = hooks;
  const api = <T>(path: string) => request<T>(hooks.headers(), "GET", path);
  let generation = 0;
  let cursor = 0;
  let live = false;
  let streams = true; // false once the server answered a stream request with something else
  let stopStream: (() => void) | null = null;

  const conn = (state: string) => {
    live = state === "live";
    hooks.conn(state);
  };

  function stop() {
    generation++;
    if (stopStream) stopStream();
  }

  /**
   * Every state entry, page by page: bare arrays whose `X-Next-Cursor` header names the next
   * page, or `{ entries, next }` pages.
   */
  async function loadState(): Promise<ApiResult<StateEntry[]>> {
    const all: StateEntry[] = [];
    const seen = new Set<string>();
    let url = base + "/state";
    for (;;) {
      const r = await api(url);
      if (!r.ok) return r as ApiResult<StateEntry[]>;
      const page = statePage(r.data, r.next ?? null);
      if (!page) return { ...r, ok: false, status: 502, data: [] };
      all.push(...page.entries);
      if (page.next === null || seen.has(page.next)) break;
      seen.add(page.next);
      url = base + "/state?cursor=" + encodeURIComponent(page.next);
    }
    return { ok: true, status: 200, data: all, retryAfter: 0 };
  }

  async function load() {
    stop();
    const gen = generation;
    conn("connecting");
    let delay = 500;
    while (gen === generation) {
      try {
        const room = await api<Room>(base);
        if (room.ok) {
          const rev = room.data.rev;
          const [ag, st, ms] = await Promise.all([
            api<Agent[]>(base + "/agents"),
            loadState(),
            api<Message[]>(base + "/messages?before=" + (rev + 1) + "&limit=" + hooks.page),
          ]);
          const bad = [ag, st, ms].find((r) => !r.ok) as ApiResult | undefined;
          if (!bad) {
            if (gen !== generation) return;
            hooks.show(room.data, ag.data, st.data, ms.data);
            cursor = rev;
            conn("live");
            follow(gen);
            return;
          }
          if (bad.status < 500 && bad.status !== 429) return hooks.fatal(bad);
        } else if (room.status < 500 && room.status !== 429) {
          return hooks.fatal(room);
        }
      } catch { /* network error: retry below */ }
      conn("reconnecting");
      await sleep(delay);
      delay = Math.min(5000, delay * 2);
    }
  }

  // Follows the feed as a stream of server-sent events while the server offers one, else (or for
  // a round after a failed stream) by long polling, which also decides what an error means.
  async function follow(gen: number) {
    let delay = 0;
    let retry = 0;
    while (gen === generation) {
      if (streams) {
        const s = await stream(gen);
        if (gen !== generation) return;
        if (s.retry !== null) retry = Math.min(s.retry, 30000);
        if (s.end === "reload") {
          load();
          return;
        }
        if (s.end === "unsupported") streams = false;
        if (s.end === "ended") {
          delay = 0;
          if (retry) await sleep(retry);
          continue;
        }
      }
      let r: ApiResult<{ changes: Change[]; next: number }> | null = null;
      try {
        r = await api(base + "/changes?after=" + cursor + "&wait=25&limit=500");
      } catch { /* network error or timeout */ }
      if (gen !== generation) return;
      if (r && r.ok) {
        if (delay) {
          conn("live");
          hooks.recovered();
        }
        hooks.transport("poll");
        delay = 0;
        hooks.apply(r.data.changes);
        cursor = Math.max(cursor, r.data.next);
        continue;
      }
      if (r && r.status === 410) {
        load();
        return;
      }
      if (r && r.status < 500 && r.status !== 429 && r.status !== 408) {
        hooks.fatal(r);
        return;
      }
      conn("reconnecting");
      delay = Math.min(5000, delay ? delay * 2 : 500);
      const jitter = delay * (0.75 + Math.random() * 0.5);
      await sleep(Math.max(jitter, retry, r && r.retryAfter ? r.retryAfter * 1000 : 0));
    }
  }

  // One stream of the change feed from the cursor, read until the server ends it. It is a fetch
  // rather than an EventSource, which could not send the token in a header.
  async function stream(gen: number): Promise<{ end: StreamEnd; retry: number | null }> {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    stopStream = abort;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(abort, 65000);
    };
    const parser = sseParser();
    let end: StreamEnd = "failed";
    let heard = false;
    arm();
    try {
      const headers = hooks.headers();
      headers.accept = "text/event-stream";
      headers["last-event-id"] = String(cursor);
      const res = await fetch(base + "/changes?after=" + cursor, {
        headers,
        cache: "no-store",
        signal: ctl.signal,
      });
      const type = res.headers.get("content-type") || "";
      if (res.status !== 200 || !res.body || !/^text\/event-stream\b/i.test(type)) {
        res.body?.cancel().catch(() => {});
        if (res.status === 410) end = "reload";
        else if (res.status === 200 || (res.status < 500 && ![408, 429].includes(res.status))) {
          end = "unsupported";
        }
        return { end, retry: null };
      }
      if (gen !== generation) return { end, retry: null };
      const recovered = !live;
      conn("live");
      hooks.transport("stream");
      if (recovered) hooks.recovered();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (gen !== generation) return { end, retry: null };
        if (done) {
          // A stream that ends having sent nothing is no stream: the long poll takes a turn.
          if (heard) end = "ended";
          break;
        }
        heard = true;
        arm();
        const changes: Change[] = [];
        for (const ev of parser.push(value)) {
          let ch: Change | null = null;
          try {
            ch = JSON.parse(ev.data);
          } catch { /* not a change */ }
          const rev = /^\d+$/.test(ev.id) ? Number(ev.id) : ch && ch.rev;
          if (!ch || typeof ch.type !== "string" || typeof rev !== "number") continue;
          if (rev > cursor) changes.push(ch);
          cursor = Math.max(cursor, rev);
        }
        if (changes.length) hooks.apply(changes);
      }
    } catch {
      /* network error, or the stream went quiet for too long: "failed" */
    } finally {
      clearTimeout(idle);
      if (stopStream === abort) stopStream = null;
    }
    return { end, retry: parser.retry() };
  }

  return { load, stop, generation: () => generation };
}
