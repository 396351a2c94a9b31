// The script of the live room view: loads a room, follows its change feed, posts as a human.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import {
  type Agent,
  ago,
  type Change,
  clip,
  fmtTime,
  h,
  headline,
  hue,
  type Kid,
  type Message,
  type PageConfig,
  type Room,
  sleep,
  sseParser,
  type StateEntry,
  statePage,
  valueBlock,
} from "./dashboard_browser.ts";

interface ApiResult<T = unknown> {
  ok: boolean;
  status: number;
  data: T;
  retryAfter: number;
}

/** What one attempt to stream the change feed came to, for the follow loop to act on. */
type StreamEnd = "ended" | "failed" | "unsupported" | "reload";

/**
 * Runs the room view. Embedded in the page by its source text (see dashboard_script.ts): it may
 * use DOM globals and the functions of dashboard_browser.ts, nothing else from outside.
 */
export function roomPage(config: PageConfig): void {
  const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
  const roomId = new URLSearchParams(location.search).get("room") || "";
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const OPEN = config.auth === "open";
  const ONLINE_MS = config.onlineSeconds * 1000;
  const BASE = "/rooms/" + encodeURIComponent(roomId);
  const TOKEN_KIND = OPEN
    ? "open"
    : token.startsWith("as_room_")
    ? "room"
    : token.startsWith("as_view_")
    ? "view"
    : token.startsWith("as_agent_")
    ? "agent"
    : token
    ? "other"
    : "none";
  const CAN_POST = TOKEN_KIND === "open" || TOKEN_KIND === "room" || TOKEN_KIND === "other";
  const PAGE = 200;
  const KIND_HUES: Record<string, number> = {
    message: 215,
    task: 32,
    result: 145,
    answer: 160,
    question: 190,
    event: 270,
    status: 250,
    review: 300,
    plan: 55,
    error: 0,
    warning: 20,
  };
  const STATUS_HUES: Record<string, number> = {
    idle: 220,
    working: 32,
    busy: 32,
    done: 145,
    blocked: 0,
    error: 0,
    waiting: 270,
    reviewing: 300,
  };

  function authHeaders(): Record<string, string> {
    return token && !OPEN ? { authorization: "Bearer " + token } : {};
  }

  async function api<T = unknown>(method: string, path: string, body?: unknown) {
    const headers = authHeaders();
    if (body !== undefined) headers["content-type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 40000);
    try {
      const res = await fetch(path, {
        method,
        headers,
        cache: "no-store",
        signal: ctl.signal,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let data = null;
      try {
        data = await res.json();
      } catch { /* not JSON */ }
      const retryAfter = Number(res.headers.get("retry-after")) || 0;
      return { ok: res.ok, status: res.status, data: data as T, retryAfter } as ApiResult<T>;
    } finally {
      clearTimeout(timer);
    }
  }

  function errorText(r: ApiResult | null): string | null {
    const data = r && r.data as { message?: unknown } | null;
    return data && typeof data.message === "string" ? data.message : null;
  }

  // -------------------------------------------------------------- state of the page

  const msgs = new Map<number, { m: Message; el: HTMLElement }>();
  const agents = new Map<string, Agent>();
  const entries = new Map<string, { el: HTMLElement }>();
  const scopes = new Map<string, { el: HTMLElement; list: HTMLElement }>();
  const expanded = new Set<string>();
  const kinds = new Set<string>();
  const people = new Set<string>();
  const replies = new Map<number, Set<number>>(); // message id -> ids of loaded replies to it
  const leases = new Map<number, number>(); // message id -> when its claim's lease ends (ms)
  const ttls = new Map<string, { end: number; s: StateEntry }>(); // scope + "\n" + key
  let cursor = 0;
  let oldest = Infinity;
  let newest = 0;
  let moreOlder = false;
  let generation = 0;
  let unseen = 0;
  let replyTo: number | null = null;
  let replyPrevTo: string | null = null; // the recipient chosen before a reply picked one
  let replyAutoTo: string | null = null; // the recipient a reply picked, or null
  let stuck = true;
  let streams = true; // false once the server answered a stream request with something else
  let stopStream: (() => void) | null = null;

  const log = $("log"), msgBox = $("msgs"), jump = $("jump");
  const fKind = $<HTMLSelectElement>("f-kind"), fAgent = $<HTMLSelectElement>("f-agent");

  const CONN_TEXT: Record<string, string> = {
    connecting: "connecting…",
    live: "live",
    reconnecting: "reconnecting…",
    error: "stopped",
  };

  function setConn(state: string, text?: string) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text || CONN_TEXT[state];
  }

  /** Says how the page follows the feed: "stream" (server-sent events) or "poll". */
  function setTransport(how: "stream" | "poll") {
    $("conn").dataset.transport = how;
    $("conn").title = how === "stream"
      ? "Following the room's changes as a stream (server-sent events)"
      : "Following the room's changes by long polling";
  }

  function fatal(res: ApiResult | null, fallback?: string) {
    generation++;
    if (stopStream) stopStream();
    setConn("error");
    $("main").hidden = true;
    $("fatal").hidden = false;
    const msg = errorText(res) || fallback || "Unexpected response";
    let advice = "";
    if (!roomId) advice = "This link has no room id: use /?room=ROOM#token=TOKEN.";
    else if (res && (res.status === 401 || res.status === 403 || res.status === 404)) {
      advice = token
        ? "Check the room id and that the token after #token= in the address is this room's view token or room token."
        : "This room needs a token: add #token=TOKEN (its view token or room token) to the address.";
    }
    $("fatal-text").textContent = msg + (advice ? "\n" + advice : "");
  }

  // -------------------------------------------------------------- room and agents

  function showRoom(room: Room) {
    $("room-id").textContent = room.id;
    $("room-created").textContent = "created " + fmtTime(room.created_at);
    const meta = $("room-meta");
    meta.hidden = room.meta == null;
    if (room.meta != null) {
      meta.textContent = JSON.stringify(room.meta);
      meta.title = JSON.stringify(room.meta, null, 2);
    }
    document.title = "agent-sync · " + room.id;
  }

  function agentName(id: string): string {
    const a = agents.get(id);
    return a ? a.name : id;
  }

  function upsertAgent(a: Agent, fresh?: boolean) {
    const prev = agents.get(a.id);
    if (typeof a.online !== "boolean") {
      a.online = prev && prev.last_seen === a.last_seen
        ? prev.online
        : !!a.last_seen && Date.now() - Date.parse(a.last_seen) < ONLINE_MS;
    }
    agents.set(a.id, a);
    if (fresh !== false) noteAgent(a.id);
    renderAgents();
  }

  function seenAgent(id: string, at: string) {
    const a = agents.get(id);
    if (!a) return;
    if (!a.last_seen || a.last_seen < at) a.last_seen = at;
    a.online = true;
    renderAgents();
  }

  function renderAgents() {
    const list = [...agents.values()].sort((x, y) =>
      (Number(y.online) - Number(x.online)) ||
      (x.joined_at < y.joined_at ? -1 : x.joined_at > y.joined_at ? 1 : 0)
    );
    $("agents").replaceChildren(...list.map((a) =>
      h(
        "li",
        { class: "agent" + (a.online ? "" : " offline"), "data-agent": a.id },
        h(
          "div",
          { class: "agent-line" },
          h("span", {
            class: "presence" + (a.online ? " on" : ""),
            title: a.online ? "online" : "offline",
          }),
          h("span", { class: "agent-name who", hue: hue(a.id) }, a.name),
          a.name !== a.id ? h("span", { class: "agent-id" }, a.id) : null,
          h("span", { class: "role" }, a.role),
          a.online
            ? h("span", { class: "status", hue: hue(a.status, STATUS_HUES) }, a.status)
            : h("span", {
              class: "status stale",
              title: "Offline: the status it last set, which may no longer hold",
            }, "offline (last: " + a.status + ")"),
        ),
        a.note
          ? h("div", {
            class: "agent-note" + (a.online ? "" : " stale"),
            title: a.online ? null : "last note, set while it was online",
          }, a.note)
          : null,
        h(
          "div",
          { class: "seen", title: a.last_seen || "" },
          (a.online ? "online · " : "") + ago(a.last_seen),
        ),
      )
    ));
    $("agents-empty").hidden = agents.size > 0;
    $("agent-count").textContent = agents.size ? "(" + agents.size + ")" : "";
    const to = $<HTMLSelectElement>("p-to"), chosen = to.value;
    to.replaceChildren(
      new Option("everyone", ""),
      ...list.map((a) => new Option(a.name === a.id ? a.id : a.name + " (" + a.id + ")", a.id)),
    );
    to.value = agents.has(chosen) ? chosen : "";
  }

  async function refreshAgents() {
    const gen = generation;
    try {
      const r = await api<Agent[]>("GET", BASE + "/agents");
      if (r.ok && gen === generation) { for (const a of r.data) upsertAgent(a); }
    } catch { /* the change feed reports connection trouble */ }
  }

  // -------------------------------------------------------------- messages

  function noteKind(k: string) {
    if (kinds.has(k)) return;
    kinds.add(k);
    const v = fKind.value;
    fKind.replaceChildren(
      new Option("all kinds", ""),
      ...[...kinds].sort().map((x) => new Option(x, x)),
    );
    fKind.value = v;
  }

  function noteAgent(id: string | null) {
    if (!id || people.has(id)) return;
    people.add(id);
    const v = fAgent.value;
    fAgent.replaceChildren(
      new Option("all agents", ""),
      ...[...people].sort().map((x) => new Option(x, x)),
    );
    fAgent.value = v;
  }

  function visible(m: Message): boolean {
    const k = fKind.value, a = fAgent.value;
    return (!k || m.kind === k) && (!a || m.from_agent === a || m.to_agent === a);
  }

  function snippet(m: Message): string {
    const head = headline(m.body);
    const t = head
      ? head.text
      : (typeof m.body === "string" ? m.body : JSON.stringify(m.body)).replace(/\s+/g, " ");
    return (m.from_agent || "anonymous") + ": " + (t.length > 90 ? t.slice(0, 90) + "…" : t);
  }

  function claimBadge(m: Message): HTMLElement | null {
    const c = m.claim;
    if (c && (!c.expires_at || Date.parse(c.expires_at) > Date.now())) {
      const until = c.expires_at ? " until " + fmtTime(c.expires_at) : "";
      return h(
        "span",
        { class: "claim held", title: "claimed " + c.claimed_at + until },
        "claimed by " + c.agent,
      );
    }
    if (c) {
      return h("span", {
        class: "claim open expired",
        title: "the lease of " + c.agent + " ended " + c.expires_at + ": anyone may claim it",
      }, "unclaimed · lease of " + c.agent + " expired");
    }
    if (m.kind === "task") return h("span", { class: "claim open" }, "unclaimed");
    return null;
  }

  /** Links to a message's replies: results first ("✓ result by X"), then the other replies. */
  function replyMarks(m: Message): HTMLElement[] | null {
    const ids = replies.get(m.id);
    if (!ids || !ids.size) return null;
    const list = [...ids].sort((a, b) => a - b).map((id) => msgs.get(id)!.m);
    const results = list.filter((r) => r.kind === "result");
    const others = list.filter((r) => r.kind !== "result");
    const by = (r: Message) => r.from_agent ? agentName(r.from_agent) : "anonymous";
    const ref = (rs: Message[]) => rs.map((r) => "#" + r.id + " by " + by(r)).join(", ");
    const out: HTMLElement[] = [];
    if (results.length) {
      const last = results[results.length - 1];
      const names = [...new Set(results.map(by))];
      out.push(h(
        "a",
        {
          class: "mark result-mark",
          href: "#m" + last.id,
          "data-goto": last.id,
          title: "results: " + ref(results),
        },
        results.length === 1
          ? "✓ result by " + names[0]
          : "✓ " + results.length + " results by " + clip(names.join(", "), 60),
      ));
    }
    if (others.length) {
      const last = others[others.length - 1];
      out.push(h(
        "a",
        {
          class: "mark replies-mark",
          href: "#m" + last.id,
          "data-goto": last.id,
          title: "replies: " + ref(others),
        },
        (results.length ? "+" : "") + others.length + (others.length === 1 ? " reply" : " replies"),
      ));
    }
    return out;
  }

  // A JSON object body with a "title" or "summary" string: that string first, then the JSON,
  // unless the string is all there is to it.
  function bodyBlock(m: Message): HTMLElement[] {
    const head = headline(m.body);
    const block = valueBlock(m.body, "body", expanded, "m" + m.id);
    if (!head) return block;
    const title = h("p", {
      class: "msg-title",
      title: head.text.length > 200 ? head.text : null,
    }, clip(head.text, 200));
    const only = Object.keys(m.body as object).length === 1 && head.raw === head.text &&
      head.text.length <= 200;
    return only ? [title] : [title, ...block];
  }

  function renderMessage(m: Message): HTMLElement {
    const parent = m.reply_to != null ? msgs.get(m.reply_to) : null;
    const who = (id: string | null, fallback: string, cls: string): Kid =>
      h("span", { class: cls, hue: id ? hue(id) : null }, id ? agentName(id) : fallback);
    const el = h(
      "article",
      {
        class: "msg" + (m.from_agent === "human" ? " human" : "") +
          (m.reply_to != null ? " is-reply" : ""),
        id: "m" + m.id,
        "data-id": m.id,
        "data-kind": m.kind,
      },
      h(
        "div",
        { class: "msg-head" },
        h("a", { class: "msg-id", href: "#m" + m.id, "data-goto": m.id }, "#" + m.id),
        who(m.from_agent, "anonymous", "who"),
        h("span", { class: "arrow" }, "→"),
        who(m.to_agent, "all", "who to"),
        h("span", { class: "tag", hue: hue(m.kind, KIND_HUES) }, m.kind),
        claimBadge(m),
        replyMarks(m),
        CAN_POST
          ? h("button", {
            type: "button",
            class: "linkish reply-btn",
            "data-reply": m.id,
            title: "Reply to #" + m.id,
          }, "reply")
          : null,
        h(
          "time",
          { class: "time", datetime: m.created_at, title: m.created_at },
          fmtTime(m.created_at),
        ),
      ),
      m.reply_to != null
        ? h(
          "div",
          { class: "reply-to" },
          h("a", { href: "#m" + m.reply_to, "data-goto": m.reply_to }, "↳ reply to #" + m.reply_to),
          parent ? " · " + snippet(parent.m) : null,
        )
        : null,
      bodyBlock(m),
    );
    el.hidden = !visible(m);
    return el;
  }

  /** Draws a loaded message again in place, for what changed around it (replies, expiry). */
  function rerender(x: { m: Message; el: HTMLElement }) {
    const el = renderMessage(x.m);
    x.el.replaceWith(el);
    x.el = el;
  }

  function trackLease(m: Message) {
    const c = m.claim;
    const end = c && c.expires_at ? Date.parse(c.expires_at) : NaN;
    if (end > Date.now()) leases.set(m.id, end);
    else leases.delete(m.id);
  }

  // Expiry is not a write, so the feed never reports it: leases and ttls run out here, on time.
  function expire() {
    const now = Date.now();
    let redrawn = false;
    for (const [id, end] of leases) {
      if (end > now) continue;
      leases.delete(id);
      const x = msgs.get(id);
      if (x) {
        rerender(x);
        redrawn = true;
      }
    }
    if (redrawn && stuck) log.scrollTop = log.scrollHeight;
    for (const { end, s } of ttls.values()) if (end <= now) upsertState(s, true);
  }

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function toBottom() {
    log.scrollTop = log.scrollHeight;
    stuck = true;
    unseen = 0;
    jump.hidden = true;
  }

  // Adds or replaces a message in id order; true when it is a new one at the end. The feed's
  // updates to messages older than the loaded window wait for "load older".
  function upsertMessage(m: Message, fromFeed?: boolean): boolean {
    const had = msgs.get(m.id);
    if (fromFeed && !had && m.id < oldest && moreOlder) return false;
    noteKind(m.kind);
    noteAgent(m.from_agent);
    noteAgent(m.to_agent);
    trackLease(m);
    const el = renderMessage(m);
    if (had) {
      had.el.replaceWith(el);
      had.m = m;
      had.el = el;
      return false;
    }
    msgs.set(m.id, { m, el });
    if (m.reply_to != null) {
      if (!replies.has(m.reply_to)) replies.set(m.reply_to, new Set());
      replies.get(m.reply_to)!.add(m.id);
      const parent = msgs.get(m.reply_to);
      if (parent) rerender(parent);
    }
    // Replies loaded before this message (with "load older") now can quote it.
    for (const id of replies.get(m.id) || []) rerender(msgs.get(id)!);
    if (m.id > newest) {
      msgBox.append(el);
      newest = m.id;
    } else {
      let next = null;
      for (const child of msgBox.children) {
        if (Number((child as HTMLElement).dataset.id) > m.id) {
          next = child;
          break;
        }
      }
      msgBox.insertBefore(el, next);
    }
    oldest = Math.min(oldest, m.id);
    return m.id === newest;
  }

  function countMessages() {
    let shown = 0;
    for (const { el } of msgs.values()) if (!el.hidden) shown++;
    $("msg-count").textContent = msgs.size
      ? (shown === msgs.size ? "(" + msgs.size + ")" : "(" + shown + " of " + msgs.size + ")")
      : "";
    $("log-empty").hidden = msgs.size > 0;
  }

  function applyFilters() {
    for (const { m, el } of msgs.values()) el.hidden = !visible(m);
    countMessages();
    toBottom();
  }

  // -------------------------------------------------------------- state entries

  function upsertState(s: StateEntry, deleted: boolean) {
    const k = s.scope + "\n" + s.key;
    const had = entries.get(k);
    const end = !deleted && s.expires_at ? Date.parse(s.expires_at) : NaN;
    if (end <= Date.now()) deleted = true;
    if (end > Date.now()) ttls.set(k, { end, s });
    else ttls.delete(k);
    if (deleted) {
      if (had) {
        had.el.remove();
        entries.delete(k);
        const g = scopes.get(s.scope);
        if (g && !g.list.children.length) {
          g.el.remove();
          scopes.delete(s.scope);
        }
      }
    } else {
      const el = h(
        "div",
        { class: "kv", "data-scope": s.scope, "data-key": s.key },
        h(
          "div",
          { class: "kv-head" },
          h("span", { class: "kv-key" }, s.key),
          h("span", { class: "kv-ver" }, "v" + s.version),
          h("time", {
            class: "kv-time",
            title: s.updated_at + (s.expires_at ? ", expires " + s.expires_at : ""),
          }, fmtTime(s.updated_at) + (s.expires_at ? " · ttl" : "")),
        ),
        valueBlock(s.value, "body", expanded, "s" + k),
      );
      if (had) {
        had.el.replaceWith(el);
        had.el = el;
      } else {
        const g = group(s.scope);
        let next = null;
        for (const child of g.list.children) {
          if ((child as HTMLElement).dataset.key! > s.key) {
            next = child;
            break;
          }
        }
        g.list.insertBefore(el, next);
        entries.set(k, { el });
      }
    }
    $("state-empty").hidden = entries.size > 0;
    $("state-count").textContent = entries.size ? "(" + entries.size + ")" : "";
  }

  function group(scope: string) {
    let g = scopes.get(scope);
    if (g) return g;
    const shared = scope === "_shared";
    const title = shared ? "shared" : agentName(scope);
    const list = h("div", { class: "kv-list" });
    const el = h(
      "section",
      { class: "scope", "data-scope": scope },
      h(
        "h3",
        null,
        shared ? null : h("span", { class: "who", hue: hue(scope) }, title),
        shared ? title : null,
        h("span", { class: "muted" }, shared ? "_shared" : title === scope ? "scope" : scope),
      ),
      list,
    );
    g = { el, list };
    scopes.set(scope, g);
    let next: HTMLElement | null = null;
    if (!shared) {
      for (const [s, other] of scopes) {
        if (s !== "_shared" && s > scope && (!next || s < next.dataset.scope!)) next = other.el;
      }
    }
    const box = $("state");
    if (shared) box.prepend(el);
    else box.insertBefore(el, next);
    return g;
  }

  // -------------------------------------------------------------- loading and following

  function clearAll() {
    msgs.clear();
    agents.clear();
    entries.clear();
    scopes.clear();
    replies.clear();
    leases.clear();
    ttls.clear();
    msgBox.replaceChildren();
    $("state").replaceChildren();
    oldest = Infinity;
    newest = 0;
  }

  /** Every state entry, page by page: a bare array (one answer) or `{ entries, next }` pages. */
  async function loadState(): Promise<ApiResult<StateEntry[]>> {
    const all: StateEntry[] = [];
    const seen = new Set<string>();
    let url = BASE + "/state";
    for (;;) {
      const r = await api("GET", url);
      if (!r.ok) return r as ApiResult<StateEntry[]>;
      const page = statePage(r.data);
      if (!page) return { ...r, ok: false, status: 502, data: [] };
      all.push(...page.entries);
      if (page.next === null || seen.has(page.next)) break;
      seen.add(page.next);
      url = BASE + "/state?cursor=" + encodeURIComponent(page.next);
    }
    return { ok: true, status: 200, data: all, retryAfter: 0 };
  }

  async function load() {
    const gen = ++generation;
    if (stopStream) stopStream();
    setConn("connecting");
    if (!roomId) return fatal(null, "No room id in the address");
    if (token && !/^[\x21-\x7e]+$/.test(token)) {
      return fatal(
        null,
        "Malformed token in the address: a token has no spaces or special characters",
      );
    }
    let delay = 500;
    while (gen === generation) {
      try {
        const room = await api<Room>("GET", BASE);
        if (room.ok) {
          const rev = room.data.rev;
          const [ag, st, ms] = await Promise.all([
            api<Agent[]>("GET", BASE + "/agents"),
            loadState(),
            api<Message[]>("GET", BASE + "/messages?before=" + (rev + 1) + "&limit=" + PAGE),
          ]);
          const bad = [ag, st, ms].find((r) => !r.ok) as ApiResult | undefined;
          if (!bad) {
            if (gen !== generation) return;
            clearAll();
            showRoom(room.data);
            $("fatal").hidden = true;
            $("main").hidden = false;
            for (const a of ag.data) upsertAgent(a);
            for (const s of st.data) upsertState(s, false);
            moreOlder = ms.data.length >= PAGE;
            for (const m of ms.data) upsertMessage(m);
            $("older").hidden = !moreOlder;
            countMessages();
            toBottom();
            cursor = rev;
            setConn("live");
            follow(gen);
            return;
          }
          if (bad.status < 500 && bad.status !== 429) return fatal(bad);
        } else if (room.status < 500 && room.status !== 429) {
          return fatal(room);
        }
      } catch { /* network error: retry below */ }
      setConn("reconnecting");
      await sleep(delay);
      delay = Math.min(5000, delay * 2);
    }
  }

  function applyChanges(changes: Change[]) {
    const stick = stuck;
    let added = 0;
    for (const ch of changes) {
      try {
        if (ch.type === "message") {
          if (upsertMessage(ch.message, true) && !msgs.get(ch.message.id)!.el.hidden) added++;
          if (ch.message.from_agent) seenAgent(ch.message.from_agent, ch.message.created_at);
        } else if (ch.type === "agent") upsertAgent(ch.agent);
        else if (ch.type === "state") upsertState(ch.state, ch.deleted);
      } catch (err) {
        console.error("cannot show change", ch.rev, err);
      }
    }
    countMessages();
    // Updates in place (claims, reply marks) change heights too: keep following the newest.
    if (stick) toBottom();
    else if (added) {
      unseen += added;
      jump.textContent = unseen + " new message" + (unseen === 1 ? "" : "s") + " ↓";
      jump.hidden = false;
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
        r = await api("GET", BASE + "/changes?after=" + cursor + "&wait=25&limit=500");
      } catch { /* network error or timeout */ }
      if (gen !== generation) return;
      if (r && r.ok) {
        if (delay) {
          setConn("live");
          refreshAgents();
        }
        setTransport("poll");
        delay = 0;
        applyChanges(r.data.changes);
        cursor = Math.max(cursor, r.data.next);
        continue;
      }
      if (r && r.status === 410) {
        load();
        return;
      }
      if (r && r.status < 500 && r.status !== 429 && r.status !== 408) {
        fatal(r);
        return;
      }
      setConn("reconnecting");
      delay = Math.min(5000, delay ? delay * 2 : 500);
      const jitter = delay * (0.75 + Math.random() * 0.5);
      await sleep(Math.max(jitter, retry, r && r.retryAfter ? r.retryAfter * 1000 : 0));
    }
  }

  // One stream of the change feed from the cursor, read until the server ends it.
  async function stream(gen: number): Promise<{ end: StreamEnd; retry: number | null }> {
    const ctl = new AbortController();
    const stop = () => ctl.abort();
    stopStream = stop;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(stop, 65000);
    };
    const parser = sseParser();
    let end: StreamEnd = "failed";
    arm();
    try {
      const headers = authHeaders();
      headers.accept = "text/event-stream";
      headers["last-event-id"] = String(cursor);
      const res = await fetch(BASE + "/changes?after=" + cursor, {
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
      const recovered = $("conn").dataset.state !== "live";
      setConn("live");
      setTransport("stream");
      if (recovered) refreshAgents();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (gen !== generation) return { end, retry: null };
        if (done) break;
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
        if (changes.length) applyChanges(changes);
        end = "ended";
      }
    } catch {
      /* network error, or the stream went quiet for too long */
    } finally {
      clearTimeout(idle);
      if (stopStream === stop) stopStream = null;
    }
    return { end, retry: parser.retry() };
  }

  async function loadOlder() {
    const btn = $<HTMLButtonElement>("older");
    btn.disabled = true;
    try {
      const r = await api<Message[]>("GET", BASE + "/messages?before=" + oldest + "&limit=" + PAGE);
      if (!r.ok) return;
      const height = log.scrollHeight, top = log.scrollTop;
      moreOlder = r.data.length >= PAGE;
      for (const m of r.data.reverse()) upsertMessage(m);
      log.scrollTop = top + log.scrollHeight - height;
      btn.hidden = !moreOlder;
      countMessages();
    } catch {
      /* keep the button for another try */
    } finally {
      btn.disabled = false;
    }
  }

  // -------------------------------------------------------------- posting as a human

  // A reply goes to the replied-to sender; leaving the reply gives back the recipient chosen
  // before, unless the human changed it meanwhile.
  function setReply(id: number | null) {
    const to = $<HTMLSelectElement>("p-to");
    if (replyAutoTo == null) replyPrevTo = to.value;
    if (id == null) {
      if (replyAutoTo != null && to.value === replyAutoTo) {
        to.value = replyPrevTo !== null && agents.has(replyPrevTo) ? replyPrevTo : "";
      }
      replyAutoTo = null;
    }
    replyTo = id;
    $("p-reply").hidden = id == null;
    $("p-reply-id").textContent = id == null ? "" : "#" + id;
    if (id != null) {
      const m = msgs.get(id);
      if (m && m.m.from_agent && agents.has(m.m.from_agent)) {
        to.value = replyAutoTo = m.m.from_agent;
      }
      $("p-body").focus();
    }
  }

  async function send(e: SubmitEvent) {
    e.preventDefault();
    const text = $<HTMLTextAreaElement>("p-body").value;
    if (!text.trim()) return;
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    const kind = $<HTMLInputElement>("p-kind").value.trim() || "message";
    const msg: Record<string, unknown> = { from: "human", kind, body };
    const to = $<HTMLSelectElement>("p-to").value;
    if (to) msg.to = to;
    if (replyTo != null) msg.reply_to = replyTo;
    const err = $("p-error");
    err.hidden = true;
    $<HTMLButtonElement>("p-send").disabled = true;
    try {
      const r = await api<Message>("POST", BASE + "/messages", msg);
      if (r.ok) {
        $<HTMLTextAreaElement>("p-body").value = "";
        // The kind is per message: a "task" left in the field would silently go out again.
        $<HTMLInputElement>("p-kind").value = "message";
        setReply(null);
        upsertMessage(r.data);
        countMessages();
        toBottom();
      } else {
        err.textContent = errorText(r) || "Cannot send: HTTP " + r.status;
        err.hidden = false;
      }
    } catch {
      err.textContent = "Cannot reach the server: try again in a moment";
      err.hidden = false;
    } finally {
      $<HTMLButtonElement>("p-send").disabled = false;
    }
  }

  // -------------------------------------------------------------- wiring

  if (CAN_POST) {
    const form = $<HTMLFormElement>("post");
    form.hidden = false;
    form.addEventListener("submit", send);
    $("p-body").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
    });
    $("p-reply-x").addEventListener("click", () => setReply(null));
  } else {
    $("readonly").hidden = false;
    $("readonly").textContent = TOKEN_KIND === "agent"
      ? "Read-only here: this is an agent token. Open the page with the room token to post as a human."
      : "Read-only: this link carries a view token. To post as a human, open /?room=" + roomId +
        "#token=<room token>.";
  }
  $("access").hidden = OPEN || !token;
  $("access").textContent = ({
    room: "room token",
    view: "view only",
    agent: "agent token",
    other: "admin token",
  } as Record<string, string>)[TOKEN_KIND] || "";
  fKind.addEventListener("change", applyFilters);
  fAgent.addEventListener("change", applyFilters);
  jump.addEventListener("click", toBottom);
  log.addEventListener("scroll", () => {
    stuck = atBottom();
    if (stuck) {
      unseen = 0;
      jump.hidden = true;
    }
  });
  new ResizeObserver(() => {
    if (stuck) log.scrollTop = log.scrollHeight;
  }).observe(log);
  $("older").addEventListener("click", loadOlder);
  msgBox.addEventListener("click", (e) => {
    const at = e.target as Element;
    const reply = at.closest<HTMLElement>("[data-reply]");
    if (reply) return setReply(Number(reply.dataset.reply));
    const go = at.closest<HTMLElement>("[data-goto]");
    if (!go) return;
    // Never follow the link itself: a new fragment would replace the token in it.
    e.preventDefault();
    const target = msgs.get(Number(go.dataset.goto));
    if (target) {
      if (target.el.hidden) {
        fKind.value = "";
        fAgent.value = "";
        applyFilters();
      }
      target.el.scrollIntoView({ block: "center" });
      target.el.classList.remove("flash");
      void target.el.offsetWidth;
      target.el.classList.add("flash");
    }
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $<HTMLInputElement>("token-input").value.trim();
    if (t) {
      location.hash = "token=" + encodeURIComponent(t);
      location.reload();
    }
  });
  addEventListener("hashchange", () => location.reload());
  setInterval(() => {
    if (!$("main").hidden) refreshAgents();
  }, 15000);
  setInterval(expire, 1000);
  load();
}
