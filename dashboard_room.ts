// The script of the live room view: loads a room, follows its change feed, posts as a human.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import {
  type Agent,
  type ApiResult,
  type Change,
  errorText,
  fmtTime,
  type Message,
  type PageConfig,
  request,
  type Room,
  type StateEntry,
} from "./dashboard_browser.ts";
import { roomFeed } from "./dashboard_feed.ts";
import { agentItem, messageItem, scopeItem, stateItem } from "./dashboard_render.ts";

/**
 * Runs the room view. Embedded in the page by its source text (see dashboard_script.ts): it may
 * use DOM globals and the functions of the dashboard_*.ts modules it imports, nothing else.
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

  function authHeaders(): Record<string, string> {
    return token && !OPEN ? { authorization: "Bearer " + token } : {};
  }

  const api = <T>(method: string, path: string, body?: unknown) =>
    request<T>(authHeaders(), method, path, body);

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
  let oldest = Infinity;
  let newest = 0;
  let moreOlder = false;
  let unseen = 0;
  let replyTo: number | null = null;
  let replyPrevTo: string | null = null; // the recipient chosen before a reply picked one
  let replyAutoTo: string | null = null; // the recipient a reply picked, or null
  let stuck = true;

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
    feed.stop();
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
    $("agents").replaceChildren(...list.map(agentItem));
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
    const gen = feed.generation();
    try {
      const r = await api<Agent[]>("GET", BASE + "/agents");
      if (r.ok && gen === feed.generation()) { for (const a of r.data) upsertAgent(a); }
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

  function renderMessage(m: Message): HTMLElement {
    const parent = m.reply_to != null ? msgs.get(m.reply_to) : null;
    const ids = [...replies.get(m.id) || []].sort((a, b) => a - b);
    const el = messageItem(m, {
      parent: parent ? parent.m : null,
      replies: ids.map((id) => msgs.get(id)!.m),
      name: agentName,
      canPost: CAN_POST,
      expanded,
    });
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
      const el = stateItem(s, expanded);
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
    g = scopeItem(scope, shared ? "shared" : agentName(scope));
    const el = g.el;
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

  function show(room: Room, ag: Agent[], st: StateEntry[], ms: Message[]) {
    clearAll();
    showRoom(room);
    $("fatal").hidden = true;
    $("main").hidden = false;
    for (const a of ag) upsertAgent(a);
    for (const s of st) upsertState(s, false);
    moreOlder = ms.length >= PAGE;
    for (const m of ms) upsertMessage(m);
    $("older").hidden = !moreOlder;
    countMessages();
    toBottom();
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

  const feed = roomFeed({
    base: BASE,
    page: PAGE,
    headers: authHeaders,
    show,
    apply: applyChanges,
    conn: setConn,
    transport: setTransport,
    recovered: refreshAgents,
    fatal,
  });

  function load() {
    if (!roomId) return fatal(null, "No room id in the address");
    if (token && !/^[\x21-\x7e]+$/.test(token)) {
      return fatal(
        null,
        "Malformed token in the address: a token has no spaces or special characters",
      );
    }
    feed.load();
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
