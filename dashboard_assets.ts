// The stylesheets and browser scripts that dashboard.ts embeds in its two pages.

export const BASE_CSS = String.raw`
:root {
  --bg: #f5f6f8; --panel: #fff; --fg: #1c2330; --muted: #687183; --border: #e2e5ea;
  --accent: #2458d6; --soft: #eef1f5; --warn-bg: #fff6db; --warn: #7a5600; --err: #b42318;
  --human: #fbf4ff; --ok: #1a9d4b; --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  --l1: 92%; --l2: 30%; --s: 80%;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0e1116; --panel: #161a21; --fg: #e4e8ee; --muted: #97a0ae; --border: #2a303a;
    --accent: #7aa7ff; --soft: #1e242d; --warn-bg: #3a2f10; --warn: #f3d27a; --err: #ff8a80;
    --human: #231a2c; --ok: #3ccf74; --l1: 24%; --l2: 80%; --s: 45%;
  }
}
* { box-sizing: border-box; }
html, body { margin: 0; }
body { background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color: var(--accent); }
code, pre { font-family: var(--mono); font-size: 12.5px; }
button { font: inherit; cursor: pointer; border: 1px solid var(--border); background: var(--soft); color: var(--fg); border-radius: 6px; padding: 4px 10px; }
button:hover { border-color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
input, select, textarea { font: inherit; color: var(--fg); background: var(--panel); border: 1px solid var(--border); border-radius: 6px; padding: 4px 8px; }
input:focus, select:focus, textarea:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
.muted { color: var(--muted); }
.error { color: var(--err); margin: 6px 0 0; white-space: pre-wrap; }
.row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
[hidden] { display: none !important; }
`;

export const DASHBOARD_CSS = String.raw`
body { height: 100vh; display: flex; flex-direction: column; }
.top { display: flex; align-items: center; gap: 14px; padding: 8px 16px; background: var(--panel); border-bottom: 1px solid var(--border); flex-wrap: wrap; }
.brand { font-weight: 700; text-decoration: none; color: var(--fg); }
.room-info { display: flex; gap: 8px; align-items: baseline; min-width: 0; flex: 1; flex-wrap: wrap; }
.room-info .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
#room-id { font-weight: 600; word-break: break-all; }
.meta { color: var(--muted); max-width: 40ch; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.access { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: var(--soft); color: var(--muted); }
.conn { display: inline-flex; gap: 6px; align-items: center; font-size: 12px; color: var(--muted); }
.conn .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--muted); }
.conn[data-state=live] .dot { background: var(--ok); }
.conn[data-state=reconnecting] { color: var(--warn); }
.conn[data-state=reconnecting] .dot { background: #e0a400; animation: pulse 1s infinite; }
.conn[data-state=error] { color: var(--err); }
.conn[data-state=error] .dot { background: var(--err); }
@keyframes pulse { 50% { opacity: .3; } }
.fatal { max-width: 640px; margin: 40px auto; background: var(--panel); border: 1px solid var(--border); border-radius: 10px; padding: 20px 24px; }
.fatal h2 { margin-top: 0; color: var(--err); }
.fatal input { flex: 1; min-width: 16em; font-family: var(--mono); }
.grid { flex: 1; min-height: 0; display: grid; grid-template-columns: minmax(220px, 270px) minmax(0, 1fr) minmax(260px, 360px); gap: 12px; padding: 12px; }
.panel { background: var(--panel); border: 1px solid var(--border); border-radius: 10px; min-height: 0; display: flex; flex-direction: column; overflow: hidden; position: relative; }
.panel h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0; padding: 10px 14px; }
.count { font-weight: 400; }
.empty { color: var(--muted); padding: 0 14px; margin: 4px 0 12px; }
.agents, #state { overflow-y: auto; flex: 1; margin: 0; padding: 0 0 8px; }
.agents { list-style: none; }
.agent { padding: 7px 14px; border-top: 1px solid var(--border); }
.agent-line { display: flex; align-items: center; gap: 7px; flex-wrap: wrap; }
.presence { width: 9px; height: 9px; border-radius: 50%; background: transparent; border: 1.5px solid var(--muted); flex: none; }
.presence.on { background: var(--ok); border-color: var(--ok); }
.agent-name { font-weight: 600; }
.agent-id { color: var(--muted); font-family: var(--mono); font-size: 11.5px; }
.role { font-size: 11.5px; color: var(--muted); border: 1px solid var(--border); border-radius: 4px; padding: 0 5px; }
.status { font-size: 11.5px; border-radius: 10px; padding: 0 7px; background: hsl(var(--h, 220) var(--s) var(--l1)); color: hsl(var(--h, 220) 60% var(--l2)); }
.agent-note { color: var(--fg); font-size: 13px; margin-top: 2px; word-break: break-word; }
.status.stale { background: none; color: var(--muted); border: 1px dashed var(--border); }
.agent-note.stale { color: var(--muted); }
.agent.offline .agent-name { opacity: .7; }
.seen { color: var(--muted); font-size: 12px; }
.log-head { display: flex; align-items: center; justify-content: space-between; gap: 8px; flex-wrap: wrap; padding-right: 10px; border-bottom: 1px solid var(--border); }
.filters { display: flex; gap: 6px; }
.filters select { font-size: 12.5px; padding: 2px 6px; max-width: 12em; }
.log-wrap { position: relative; flex: 1; min-height: 0; display: flex; flex-direction: column; }
.log { flex: 1; overflow-y: auto; min-height: 0; }
.older { display: block; margin: 8px auto; font-size: 12.5px; }
.msg { padding: 8px 14px; border-bottom: 1px solid var(--border); }
.msg.human { background: var(--human); }
.msg.flash { animation: flash 1.5s; }
@keyframes flash { 0%, 40% { background: var(--warn-bg); } }
.msg-head { display: flex; gap: 6px; align-items: baseline; flex-wrap: wrap; font-size: 13px; }
.msg-id { color: var(--muted); font-variant-numeric: tabular-nums; font-size: 12px; text-decoration: none; }
.who { font-weight: 600; color: hsl(var(--h, 220) 55% var(--l2)); }
.arrow { color: var(--muted); }
.tag { font-size: 11.5px; font-weight: 600; border-radius: 4px; padding: 0 6px; background: hsl(var(--h) var(--s) var(--l1)); color: hsl(var(--h) 65% var(--l2)); }
.claim { font-size: 11.5px; border-radius: 4px; padding: 0 6px; border: 1px solid var(--border); color: var(--muted); }
.claim.held { border-color: var(--ok); color: var(--ok); }
.claim.open { border-style: dashed; }
.mark { font-size: 11.5px; border-radius: 4px; padding: 0 6px; text-decoration: none; border: 1px solid var(--border); color: var(--muted); }
.mark:hover { text-decoration: underline; }
.result-mark { border-color: var(--ok); color: var(--ok); font-weight: 600; }
.msg-title { margin: 3px 0 0; font-weight: 600; font-size: 14.5px; overflow-wrap: anywhere; }
.msg-title + .body { margin-top: 3px; }
.time { margin-left: auto; color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.reply-to { font-size: 12.5px; color: var(--muted); margin-top: 2px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.reply-to a { color: var(--muted); }
.body { margin: 4px 0 0; white-space: pre-wrap; word-break: break-word; }
pre.body { background: var(--soft); border-radius: 6px; padding: 6px 8px; line-height: 1.4; }
.collapsed { max-height: 13em; overflow: hidden; -webkit-mask-image: linear-gradient(#000 60%, transparent); mask-image: linear-gradient(#000 60%, transparent); }
.linkish { background: none; border: 0; padding: 0; color: var(--accent); font-size: 12.5px; }
.msg.is-reply { border-left: 3px solid var(--border); padding-left: 11px; }
.reply-btn { font-size: 12px; }
@media (hover: hover) { .reply-btn { opacity: 0; } .msg:hover .reply-btn, .reply-btn:focus { opacity: 1; } }
.jump { position: absolute; left: 50%; transform: translateX(-50%); bottom: 12px; background: var(--accent); color: #fff; border: 0; border-radius: 16px; padding: 5px 14px; box-shadow: 0 2px 8px rgba(0,0,0,.25); z-index: 2; }
.post { border-top: 1px solid var(--border); padding: 8px 10px; display: flex; flex-direction: column; gap: 6px; }
.post label { font-size: 12.5px; color: var(--muted); display: inline-flex; gap: 5px; align-items: center; }
.post textarea { flex: 1; min-width: 0; resize: vertical; font-family: var(--mono); font-size: 13px; }
.p-reply { font-size: 12.5px; color: var(--muted); }
.readonly { border-top: 1px solid var(--border); margin: 0; padding: 8px 14px; color: var(--muted); font-size: 12.5px; }
.scope h3 { font-size: 12.5px; margin: 0; padding: 8px 14px 4px; display: flex; gap: 6px; align-items: baseline; border-top: 1px solid var(--border); }
.scope h3 .muted { font-weight: 400; font-family: var(--mono); font-size: 11.5px; }
.kv { padding: 3px 14px 6px; }
.kv-head { display: flex; gap: 8px; align-items: baseline; font-size: 12.5px; }
.kv-key { font-family: var(--mono); font-weight: 600; word-break: break-all; }
.kv-ver { color: var(--muted); font-size: 11.5px; }
.kv-time { margin-left: auto; color: var(--muted); font-size: 11.5px; white-space: nowrap; }
.kv .body { margin: 2px 0 0; }
.kv pre.body { padding: 4px 8px; }
@media (max-width: 700px) {
  .room-info { order: 3; flex-basis: 100%; }
  .top { gap: 8px 14px; }
}
@media (max-width: 1000px) {
  body { height: auto; }
  .grid { grid-template-columns: minmax(0, 1fr); }
  .panel { overflow: visible; }
  .agents, #state { overflow: visible; }
  .log { max-height: 70vh; }
}
`;

export const LANDING_CSS = String.raw`
.landing { max-width: 720px; margin: 0 auto; padding: 32px 18px 48px; }
.landing h1 { margin: 0 0 6px; font-size: 28px; }
.lead { font-size: 15.5px; color: var(--muted); margin-top: 0; }
.card { background: var(--panel); border: 1px solid var(--border); border-radius: 10px; padding: 14px 18px 16px; margin-top: 16px; }
.card h2 { font-size: 16px; margin: 0 0 10px; }
.card form { display: flex; flex-direction: column; gap: 10px; align-items: flex-start; }
.card label { display: flex; flex-direction: column; gap: 3px; width: 100%; font-size: 13px; }
.card input { width: 100%; font-family: var(--mono); }
.warn { background: var(--warn-bg); color: var(--warn); border-radius: 6px; padding: 8px 10px; font-weight: 600; }
.secrets dt { font-size: 13px; font-weight: 600; margin-top: 10px; }
.secrets dt .muted { font-weight: 400; }
.secrets dd { margin: 2px 0 0; word-break: break-all; }
.secrets pre { white-space: pre-wrap; background: var(--soft); padding: 6px 8px; border-radius: 6px; margin: 0 0 4px; }
.copy { font-size: 12px; padding: 1px 8px; }
`;

// The page scripts are plain strings: no backticks or template placeholders inside them.
export const DASHBOARD_JS = String.raw`
"use strict";
const $ = (id) => document.getElementById(id);
const roomId = new URLSearchParams(location.search).get("room") || "";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const OPEN = document.body.dataset.auth === "open";
const ONLINE_MS = Number(document.body.dataset.onlineSeconds || 60) * 1000;
const BASE = "/rooms/" + encodeURIComponent(roomId);
const TOKEN_KIND = OPEN ? "open" : token.startsWith("as_room_") ? "room" : token.startsWith("as_view_") ? "view" : token.startsWith("as_agent_") ? "agent" : token ? "other" : "none";
const CAN_POST = TOKEN_KIND === "open" || TOKEN_KIND === "room" || TOKEN_KIND === "other";
const PAGE = 200;
const KIND_HUES = { message: 215, task: 32, result: 145, answer: 160, question: 190, event: 270, status: 250, review: 300, plan: 55, error: 0, warning: 20 };
const STATUS_HUES = { idle: 220, working: 32, busy: 32, done: 145, blocked: 0, error: 0, waiting: 270, reviewing: 300 };

function hue(s, table) {
  if (table && Object.hasOwn(table, s)) return table[s];
  let x = 7;
  for (const ch of s) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

// Builds an element; every string child becomes a text node, never markup.
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const k in props || {}) {
    const v = props[k];
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "hue") el.style.setProperty("--h", String(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function api(method, path, body) {
  const headers = {};
  if (token && !OPEN) headers.authorization = "Bearer " + token;
  if (body !== undefined) headers["content-type"] = "application/json";
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 40000);
  try {
    const res = await fetch(path, { method, headers, cache: "no-store", signal: ctl.signal, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    return { ok: res.ok, status: res.status, data, retryAfter: Number(res.headers.get("retry-after")) || 0 };
  } finally {
    clearTimeout(timer);
  }
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return t;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + t;
}

function ago(iso) {
  if (!iso) return "never seen";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 10) return "seen just now";
  if (s < 60) return "seen " + Math.floor(s) + "s ago";
  if (s < 3600) return "seen " + Math.floor(s / 60) + "m ago";
  if (s < 86400) return "seen " + Math.floor(s / 3600) + "h ago";
  return "seen " + Math.floor(s / 86400) + "d ago";
}

function asText(v) { return typeof v === "string" ? v : pretty(v, ""); }

// JSON on one line when it fits, otherwise one member per line with short members kept inline.
function pretty(v, pad) {
  const flat = inline(v, 72 - pad.length);
  if (flat !== null) return flat;
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  const inner = pad + "  ";
  const items = Array.isArray(v)
    ? v.map((x) => inner + pretty(x, inner))
    : Object.entries(v).map(([k, x]) => inner + JSON.stringify(k) + ": " + pretty(x, inner));
  const [open, close] = Array.isArray(v) ? ["[", "]"] : ["{", "}"];
  return items.length ? open + "\n" + items.join(",\n") + "\n" + pad + close : open + close;
}

// The value on one line, or null when that would take more than "room" characters.
function inline(v, room) {
  if (room < 2) return null;
  if (v === null || typeof v !== "object") {
    const s = JSON.stringify(v);
    return s.length <= room ? s : null;
  }
  const arr = Array.isArray(v);
  const parts = [];
  let used = 4;
  for (const [k, x] of arr ? v.entries() : Object.entries(v)) {
    const key = arr ? "" : JSON.stringify(k) + ": ";
    const s = inline(x, room - used - key.length);
    if (s === null) return null;
    parts.push(key + s);
    used += key.length + s.length + 2;
  }
  if (!parts.length) return arr ? "[]" : "{}";
  return arr ? "[" + parts.join(", ") + "]" : "{ " + parts.join(", ") + " }";
}

// A body or value: text as text, JSON pretty-printed, long ones collapsed behind an expander.
function valueBlock(v, cls, expandedSet, key) {
  const text = asText(v);
  const el = h(typeof v === "string" ? "p" : "pre", { class: cls + (typeof v === "string" ? "" : " json") }, text);
  const lines = text.split("\n").length;
  if (lines <= 12 && text.length <= 1000) return [el];
  const open = expandedSet.has(key);
  if (!open) el.classList.add("collapsed");
  const btn = h("button", { type: "button", class: "linkish expander" }, open ? "show less" : "show all (" + lines + " lines, " + text.length + " chars)");
  btn.addEventListener("click", () => {
    const nowOpen = el.classList.toggle("collapsed") === false;
    if (nowOpen) expandedSet.add(key); else expandedSet.delete(key);
    btn.textContent = nowOpen ? "show less" : "show all (" + lines + " lines, " + text.length + " chars)";
  });
  return [el, btn];
}

// ---------------------------------------------------------------- state of the page

const msgs = new Map();
const agents = new Map();
const entries = new Map();
const scopes = new Map();
const expanded = new Set();
const kinds = new Set();
const people = new Set();
const replies = new Map(); // message id -> ids of the loaded messages that reply to it
const leases = new Map(); // message id -> when its claim's lease ends (ms), while it holds
const ttls = new Map(); // scope + "\n" + key -> { end, s }: state entries that expire
let cursor = 0;
let oldest = Infinity;
let newest = 0;
let moreOlder = false;
let generation = 0;
let unseen = 0;
let replyTo = null;
let replyPrevTo = null; // the recipient chosen before a reply picked the replied-to sender
let replyAutoTo = null; // the recipient a reply picked, or null
let stuck = true;

const log = $("log"), msgBox = $("msgs"), jump = $("jump");
const fKind = $("f-kind"), fAgent = $("f-agent");

function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text || { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", error: "stopped" }[state];
}

function fatal(res, fallback) {
  generation++;
  setConn("error");
  $("main").hidden = true;
  $("fatal").hidden = false;
  const msg = res && res.data && typeof res.data.message === "string" ? res.data.message : fallback || "Unexpected response";
  let advice = "";
  if (!roomId) advice = "This link has no room id: use /?room=ROOM#token=TOKEN.";
  else if (res && (res.status === 401 || res.status === 403 || res.status === 404)) {
    advice = token ? "Check the room id and that the token after #token= in the address is this room's view token or room token." : "This room needs a token: add #token=TOKEN (its view token or room token) to the address.";
  }
  $("fatal-text").textContent = msg + (advice ? "\n" + advice : "");
}

// ---------------------------------------------------------------- room and agents

function showRoom(room) {
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

function agentName(id) {
  const a = agents.get(id);
  return a ? a.name : id;
}

function upsertAgent(a, fresh) {
  const prev = agents.get(a.id);
  if (typeof a.online !== "boolean") {
    a.online = prev && prev.last_seen === a.last_seen ? prev.online : !!a.last_seen && Date.now() - Date.parse(a.last_seen) < ONLINE_MS;
  }
  agents.set(a.id, a);
  if (fresh !== false) noteAgent(a.id);
  renderAgents();
}

function seenAgent(id, at) {
  const a = agents.get(id);
  if (!a) return;
  if (!a.last_seen || a.last_seen < at) a.last_seen = at;
  a.online = true;
  renderAgents();
}

function renderAgents() {
  const list = [...agents.values()].sort((x, y) => (y.online - x.online) || (x.joined_at < y.joined_at ? -1 : x.joined_at > y.joined_at ? 1 : 0));
  $("agents").replaceChildren(...list.map((a) => h("li", { class: "agent" + (a.online ? "" : " offline"), "data-agent": a.id },
    h("div", { class: "agent-line" },
      h("span", { class: "presence" + (a.online ? " on" : ""), title: a.online ? "online" : "offline" }),
      h("span", { class: "agent-name who", hue: hue(a.id) }, a.name),
      a.name !== a.id ? h("span", { class: "agent-id" }, a.id) : null,
      h("span", { class: "role" }, a.role),
      a.online
        ? h("span", { class: "status", hue: hue(a.status, STATUS_HUES) }, a.status)
        : h("span", { class: "status stale", title: "Offline: the status it last set, which may no longer hold" }, "offline (last: " + a.status + ")")),
    a.note ? h("div", { class: "agent-note" + (a.online ? "" : " stale"), title: a.online ? null : "last note, set while it was online" }, a.note) : null,
    h("div", { class: "seen", title: a.last_seen || "" }, (a.online ? "online · " : "") + ago(a.last_seen)))));
  $("agents-empty").hidden = agents.size > 0;
  $("agent-count").textContent = agents.size ? "(" + agents.size + ")" : "";
  const to = $("p-to"), chosen = to.value;
  to.replaceChildren(new Option("everyone", ""), ...list.map((a) => new Option(a.name === a.id ? a.id : a.name + " (" + a.id + ")", a.id)));
  to.value = agents.has(chosen) ? chosen : "";
}

async function refreshAgents() {
  const gen = generation;
  try {
    const r = await api("GET", BASE + "/agents");
    if (r.ok && gen === generation) for (const a of r.data) upsertAgent(a);
  } catch { /* the change feed reports connection trouble */ }
}

// ---------------------------------------------------------------- messages

function noteKind(k) {
  if (kinds.has(k)) return;
  kinds.add(k);
  const v = fKind.value;
  fKind.replaceChildren(new Option("all kinds", ""), ...[...kinds].sort().map((x) => new Option(x, x)));
  fKind.value = v;
}

function noteAgent(id) {
  if (!id || people.has(id)) return;
  people.add(id);
  const v = fAgent.value;
  fAgent.replaceChildren(new Option("all agents", ""), ...[...people].sort().map((x) => new Option(x, x)));
  fAgent.value = v;
}

function visible(m) {
  const k = fKind.value, a = fAgent.value;
  return (!k || m.kind === k) && (!a || m.from_agent === a || m.to_agent === a);
}

// The "title" (or else "summary") string of a JSON object body, or null.
function headline(body) {
  if (!body || typeof body !== "object" || Array.isArray(body)) return null;
  for (const k of ["title", "summary"]) {
    const v = body[k];
    if (typeof v === "string" && v.trim()) return { key: k, raw: v, text: v.replace(/\s+/g, " ").trim() };
  }
  return null;
}

function clip(s, n) { return s.length > n ? s.slice(0, n) + "…" : s; }

function snippet(m) {
  const head = headline(m.body);
  const t = head ? head.text : (typeof m.body === "string" ? m.body : JSON.stringify(m.body)).replace(/\s+/g, " ");
  return (m.from_agent || "anonymous") + ": " + (t.length > 90 ? t.slice(0, 90) + "…" : t);
}

function claimBadge(m) {
  const c = m.claim;
  if (c && (!c.expires_at || Date.parse(c.expires_at) > Date.now())) {
    const until = c.expires_at ? " until " + fmtTime(c.expires_at) : "";
    return h("span", { class: "claim held", title: "claimed " + c.claimed_at + until }, "claimed by " + c.agent);
  }
  if (c) return h("span", { class: "claim open expired", title: "the lease of " + c.agent + " ended " + c.expires_at + ": anyone may claim it" }, "unclaimed · lease of " + c.agent + " expired");
  if (m.kind === "task") return h("span", { class: "claim open" }, "unclaimed");
  return null;
}

// Links to a message's replies: its results first ("✓ result by X"), then how many other replies.
function replyMarks(m) {
  const ids = replies.get(m.id);
  if (!ids || !ids.size) return null;
  const list = [...ids].sort((a, b) => a - b).map((id) => msgs.get(id).m);
  const results = list.filter((r) => r.kind === "result");
  const others = list.filter((r) => r.kind !== "result");
  const by = (r) => r.from_agent ? agentName(r.from_agent) : "anonymous";
  const ref = (rs) => rs.map((r) => "#" + r.id + " by " + by(r)).join(", ");
  const out = [];
  if (results.length) {
    const last = results[results.length - 1];
    const names = [...new Set(results.map(by))];
    out.push(h("a", { class: "mark result-mark", href: "#m" + last.id, "data-goto": last.id, title: "results: " + ref(results) },
      results.length === 1 ? "✓ result by " + names[0] : "✓ " + results.length + " results by " + clip(names.join(", "), 60)));
  }
  if (others.length) {
    const last = others[others.length - 1];
    out.push(h("a", { class: "mark replies-mark", href: "#m" + last.id, "data-goto": last.id, title: "replies: " + ref(others) },
      (results.length ? "+" : "") + others.length + (others.length === 1 ? " reply" : " replies")));
  }
  return out;
}

// A JSON object body with a "title" or "summary" string: that string first, then the JSON, unless
// the string is all there is to it.
function bodyBlock(m) {
  const head = headline(m.body);
  const block = valueBlock(m.body, "body", expanded, "m" + m.id);
  if (!head) return block;
  const title = h("p", { class: "msg-title", title: head.text.length > 200 ? head.text : null }, clip(head.text, 200));
  if (Object.keys(m.body).length === 1 && head.raw === head.text && head.text.length <= 200) return [title];
  return [title, ...block];
}

function renderMessage(m) {
  const parent = m.reply_to != null ? msgs.get(m.reply_to) : null;
  const el = h("article", { class: "msg" + (m.from_agent === "human" ? " human" : "") + (m.reply_to != null ? " is-reply" : ""), id: "m" + m.id, "data-id": m.id, "data-kind": m.kind },
    h("div", { class: "msg-head" },
      h("a", { class: "msg-id", href: "#m" + m.id, "data-goto": m.id }, "#" + m.id),
      h("span", { class: "who", hue: m.from_agent ? hue(m.from_agent) : null }, m.from_agent ? agentName(m.from_agent) : "anonymous"),
      h("span", { class: "arrow" }, "→"),
      h("span", { class: "who to", hue: m.to_agent ? hue(m.to_agent) : null }, m.to_agent ? agentName(m.to_agent) : "all"),
      h("span", { class: "tag", hue: hue(m.kind, KIND_HUES) }, m.kind),
      claimBadge(m),
      replyMarks(m),
      CAN_POST ? h("button", { type: "button", class: "linkish reply-btn", "data-reply": m.id, title: "Reply to #" + m.id }, "reply") : null,
      h("time", { class: "time", datetime: m.created_at, title: m.created_at }, fmtTime(m.created_at))),
    m.reply_to != null ? h("div", { class: "reply-to" },
      h("a", { href: "#m" + m.reply_to, "data-goto": m.reply_to }, "↳ reply to #" + m.reply_to),
      parent ? " · " + snippet(parent.m) : null) : null,
    bodyBlock(m));
  el.hidden = !visible(m);
  return el;
}

// Draws a loaded message again in place, for what changed around it (replies, expiry).
function rerender(x) {
  const el = renderMessage(x.m);
  x.el.replaceWith(el);
  x.el = el;
}

function trackLease(m) {
  const c = m.claim;
  const end = c && c.expires_at ? Date.parse(c.expires_at) : NaN;
  if (end > Date.now()) leases.set(m.id, end); else leases.delete(m.id);
}

// Expiry is not a write, so the feed never reports it: leases and ttls run out here, on the clock.
function expire() {
  const now = Date.now();
  let redrawn = false;
  for (const [id, end] of leases) {
    if (end > now) continue;
    leases.delete(id);
    const x = msgs.get(id);
    if (x) { rerender(x); redrawn = true; }
  }
  if (redrawn && stuck) log.scrollTop = log.scrollHeight;
  for (const { end, s } of ttls.values()) if (end <= now) upsertState(s, true);
}

function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
function toBottom() { log.scrollTop = log.scrollHeight; stuck = true; unseen = 0; jump.hidden = true; }

// Adds or replaces a message in id order; returns true when it is a new one at the end.
// The feed's updates to messages older than the loaded window wait for "load older".
function upsertMessage(m, fromFeed) {
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
    replies.get(m.reply_to).add(m.id);
    const parent = msgs.get(m.reply_to);
    if (parent) rerender(parent);
  }
  // Replies loaded before this message (with "load older") now can quote it.
  for (const id of replies.get(m.id) || []) rerender(msgs.get(id));
  if (m.id > newest) {
    msgBox.append(el);
    newest = m.id;
  } else {
    let next = null;
    for (const child of msgBox.children) if (Number(child.dataset.id) > m.id) { next = child; break; }
    msgBox.insertBefore(el, next);
  }
  oldest = Math.min(oldest, m.id);
  return m.id === newest;
}

function countMessages() {
  let shown = 0;
  for (const { el } of msgs.values()) if (!el.hidden) shown++;
  $("msg-count").textContent = msgs.size ? (shown === msgs.size ? "(" + msgs.size + ")" : "(" + shown + " of " + msgs.size + ")") : "";
  $("log-empty").hidden = msgs.size > 0;
}

function applyFilters() {
  for (const { m, el } of msgs.values()) el.hidden = !visible(m);
  countMessages();
  toBottom();
}

// ---------------------------------------------------------------- state entries

function upsertState(s, deleted) {
  const k = s.scope + "\n" + s.key;
  const had = entries.get(k);
  const end = !deleted && s.expires_at ? Date.parse(s.expires_at) : NaN;
  if (end <= Date.now()) deleted = true;
  if (end > Date.now()) ttls.set(k, { end, s }); else ttls.delete(k);
  if (deleted) {
    if (had) {
      had.el.remove();
      entries.delete(k);
      const g = scopes.get(s.scope);
      if (g && !g.list.children.length) { g.el.remove(); scopes.delete(s.scope); }
    }
  } else {
    const el = h("div", { class: "kv", "data-scope": s.scope, "data-key": s.key },
      h("div", { class: "kv-head" },
        h("span", { class: "kv-key" }, s.key),
        h("span", { class: "kv-ver" }, "v" + s.version),
        h("time", { class: "kv-time", title: s.updated_at + (s.expires_at ? ", expires " + s.expires_at : "") }, fmtTime(s.updated_at) + (s.expires_at ? " · ttl" : ""))),
      valueBlock(s.value, "body", expanded, "s" + k));
    if (had) {
      had.el.replaceWith(el);
      had.el = el;
    } else {
      const g = group(s.scope);
      let next = null;
      for (const child of g.list.children) if (child.dataset.key > s.key) { next = child; break; }
      g.list.insertBefore(el, next);
      entries.set(k, { el });
    }
  }
  $("state-empty").hidden = entries.size > 0;
  $("state-count").textContent = entries.size ? "(" + entries.size + ")" : "";
}

function group(scope) {
  let g = scopes.get(scope);
  if (g) return g;
  const shared = scope === "_shared";
  const title = shared ? "shared" : agentName(scope);
  const list = h("div", { class: "kv-list" });
  const el = h("section", { class: "scope", "data-scope": scope },
    h("h3", null, shared ? null : h("span", { class: "who", hue: hue(scope) }, title), shared ? title : null,
      h("span", { class: "muted" }, shared ? "_shared" : title === scope ? "scope" : scope)),
    list);
  g = { el, list };
  scopes.set(scope, g);
  let next = null;
  if (!shared) for (const [s, other] of scopes) if (s !== "_shared" && s > scope) { if (!next || s < next.dataset.scope) next = other.el; }
  const box = $("state");
  if (shared) box.prepend(el); else box.insertBefore(el, next);
  return g;
}

// ---------------------------------------------------------------- loading and following

function clearAll() {
  msgs.clear(); agents.clear(); entries.clear(); scopes.clear();
  replies.clear(); leases.clear(); ttls.clear();
  msgBox.replaceChildren(); $("state").replaceChildren();
  oldest = Infinity; newest = 0;
}

async function load() {
  const gen = ++generation;
  setConn("connecting");
  if (!roomId) return fatal(null, "No room id in the address");
  if (token && !/^[\x21-\x7e]+$/.test(token)) return fatal(null, "Malformed token in the address: a token has no spaces or special characters");
  let delay = 500;
  while (gen === generation) {
    try {
      const room = await api("GET", BASE);
      if (room.ok) {
        const rev = room.data.rev;
        const [ag, st, ms] = await Promise.all([
          api("GET", BASE + "/agents"),
          api("GET", BASE + "/state"),
          api("GET", BASE + "/messages?before=" + (rev + 1) + "&limit=" + PAGE),
        ]);
        const bad = [ag, st, ms].find((r) => !r.ok);
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

function applyChanges(changes) {
  const stick = stuck;
  let added = 0;
  for (const ch of changes) {
    try {
      if (ch.type === "message") {
        if (upsertMessage(ch.message, true) && !msgs.get(ch.message.id).el.hidden) added++;
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

async function follow(gen) {
  let delay = 0;
  while (gen === generation) {
    let r = null;
    try {
      r = await api("GET", BASE + "/changes?after=" + cursor + "&wait=25&limit=500");
    } catch { /* network error or timeout */ }
    if (gen !== generation) return;
    if (r && r.ok) {
      if (delay) { setConn("live"); refreshAgents(); }
      delay = 0;
      applyChanges(r.data.changes);
      cursor = Math.max(cursor, r.data.next);
      continue;
    }
    if (r && r.status === 410) { load(); return; }
    if (r && r.status < 500 && r.status !== 429 && r.status !== 408) { fatal(r); return; }
    setConn("reconnecting");
    delay = Math.min(5000, delay ? delay * 2 : 500);
    await sleep(Math.max(delay * (0.75 + Math.random() * 0.5), r && r.retryAfter ? r.retryAfter * 1000 : 0));
  }
}

async function loadOlder() {
  const btn = $("older");
  btn.disabled = true;
  try {
    const r = await api("GET", BASE + "/messages?before=" + oldest + "&limit=" + PAGE);
    if (!r.ok) return;
    const height = log.scrollHeight, top = log.scrollTop;
    moreOlder = r.data.length >= PAGE;
    for (const m of r.data.reverse()) upsertMessage(m);
    log.scrollTop = top + log.scrollHeight - height;
    btn.hidden = !moreOlder;
    countMessages();
  } catch { /* keep the button for another try */ } finally {
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------- posting as a human

// A reply goes to the replied-to sender; leaving the reply gives back the recipient chosen before,
// unless the human changed it meanwhile.
function setReply(id) {
  const to = $("p-to");
  if (replyAutoTo == null) replyPrevTo = to.value;
  if (id == null) {
    if (replyAutoTo != null && to.value === replyAutoTo) to.value = agents.has(replyPrevTo) ? replyPrevTo : "";
    replyAutoTo = null;
  }
  replyTo = id;
  $("p-reply").hidden = id == null;
  $("p-reply-id").textContent = id == null ? "" : "#" + id;
  if (id != null) {
    const m = msgs.get(id);
    if (m && m.m.from_agent && agents.has(m.m.from_agent)) to.value = replyAutoTo = m.m.from_agent;
    $("p-body").focus();
  }
}

async function send(e) {
  e.preventDefault();
  const text = $("p-body").value;
  if (!text.trim()) return;
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  const msg = { from: "human", kind: $("p-kind").value.trim() || "message", body };
  if ($("p-to").value) msg.to = $("p-to").value;
  if (replyTo != null) msg.reply_to = replyTo;
  const err = $("p-error");
  err.hidden = true;
  $("p-send").disabled = true;
  try {
    const r = await api("POST", BASE + "/messages", msg);
    if (r.ok) {
      $("p-body").value = "";
      // The kind is per message: a "task" left in the field would silently go out again.
      $("p-kind").value = "message";
      setReply(null);
      upsertMessage(r.data);
      countMessages();
      toBottom();
    } else {
      err.textContent = r.data && r.data.message ? r.data.message : "Cannot send: HTTP " + r.status;
      err.hidden = false;
    }
  } catch {
    err.textContent = "Cannot reach the server: try again in a moment";
    err.hidden = false;
  } finally {
    $("p-send").disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

if (CAN_POST) {
  $("post").hidden = false;
  $("post").addEventListener("submit", send);
  $("p-body").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("post").requestSubmit(); });
  $("p-reply-x").addEventListener("click", () => setReply(null));
} else {
  $("readonly").hidden = false;
  $("readonly").textContent = TOKEN_KIND === "agent"
    ? "Read-only here: this is an agent token. Open the page with the room token to post as a human."
    : "Read-only: this link carries a view token. To post as a human, open /?room=" + roomId + "#token=<room token>.";
}
$("access").hidden = OPEN || !token;
$("access").textContent = { room: "room token", view: "view only", agent: "agent token", other: "admin token" }[TOKEN_KIND] || "";
fKind.addEventListener("change", applyFilters);
fAgent.addEventListener("change", applyFilters);
jump.addEventListener("click", toBottom);
log.addEventListener("scroll", () => {
  stuck = atBottom();
  if (stuck) { unseen = 0; jump.hidden = true; }
});
new ResizeObserver(() => { if (stuck) log.scrollTop = log.scrollHeight; }).observe(log);
$("older").addEventListener("click", loadOlder);
msgBox.addEventListener("click", (e) => {
  const reply = e.target.closest("[data-reply]");
  if (reply) return setReply(Number(reply.dataset.reply));
  const go = e.target.closest("[data-goto]");
  if (!go) return;
  // Never follow the link itself: a new fragment would replace the token in it.
  e.preventDefault();
  const target = msgs.get(Number(go.dataset.goto));
  if (target) {
    if (target.el.hidden) { fKind.value = ""; fAgent.value = ""; applyFilters(); }
    target.el.scrollIntoView({ block: "center" });
    target.el.classList.remove("flash");
    void target.el.offsetWidth;
    target.el.classList.add("flash");
  }
});
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim();
  if (t) { location.hash = "token=" + encodeURIComponent(t); location.reload(); }
});
window.addEventListener("hashchange", () => location.reload());
setInterval(() => { if (!$("main").hidden) refreshAgents(); }, 15000);
setInterval(expire, 1000);
load();
`;

export const LANDING_JS = String.raw`
"use strict";
const $ = (id) => document.getElementById(id);
const OPEN = document.body.dataset.auth === "open";

function dashboardLink(id, token) {
  return location.origin + "/?room=" + encodeURIComponent(id) + (token ? "#token=" + encodeURIComponent(token) : "");
}

$("create").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("c-error");
  err.hidden = true;
  const headers = { "content-type": "application/json" };
  const admin = $("c-admin");
  if (admin && admin.value) headers.authorization = "Bearer " + admin.value.trim();
  const id = $("c-id").value.trim();
  $("c-go").disabled = true;
  try {
    const res = await fetch("/rooms", { method: "POST", headers, body: JSON.stringify(id ? { id } : {}) });
    const data = await res.json().catch(() => null);
    if (res.status !== 201) {
      err.textContent = data && data.message ? data.message : "Cannot create the room: HTTP " + res.status;
      err.hidden = false;
      return;
    }
    $("r-id").textContent = data.id;
    for (const el of document.querySelectorAll(".tok")) el.hidden = OPEN;
    $("r-token").textContent = data.token || "";
    $("r-view").textContent = data.view_token || "";
    const view = dashboardLink(data.id, data.view_token);
    $("r-link").href = view;
    $("r-link").textContent = view;
    $("r-post-link").href = dashboardLink(data.id, data.token);
    $("r-post-link").hidden = OPEN;
    $("r-prompt").textContent = "Join the agent-sync room " + data.id + " at " + location.origin + ".\n" +
      "Read " + location.origin + "/SKILL.md first" + (OPEN ? "." : ", and use the room token " + data.token + " to register.");
    $("created").hidden = false;
    $("create").hidden = true;
  } catch {
    err.textContent = "Cannot reach the server: try again in a moment";
    err.hidden = false;
  } finally {
    $("c-go").disabled = false;
  }
});

$("open").addEventListener("submit", (e) => {
  e.preventDefault();
  location.assign(dashboardLink($("o-id").value.trim(), $("o-token").value.trim()));
});

for (const btn of document.querySelectorAll("[data-copy]")) {
  btn.addEventListener("click", async () => {
    const text = $(btn.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "copied";
    } catch {
      getSelection().selectAllChildren($(btn.dataset.copy));
      btn.textContent = "selected: press Ctrl+C";
    }
    setTimeout(() => { btn.textContent = "copy"; }, 2000);
  });
}
`;
