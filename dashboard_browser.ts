// Browser helpers the dashboard's page scripts share; each is embedded by its source text.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />

// Every function here is copied into the page as `fn.toString()` (see dashboard_script.ts): it
// may call only DOM globals and the other functions of this file, never imports or module state.

/** What a page script receives from the server that renders it. */
export interface PageConfig {
  auth: "open" | "token";
  onlineSeconds: number;
}

export interface Claim {
  agent: string;
  claimed_at: string;
  expires_at: string | null;
}

export interface Message {
  id: number;
  from_agent: string | null;
  to_agent: string | null;
  kind: string;
  body: unknown;
  reply_to: number | null;
  created_at: string;
  claim: Claim | null;
}

export interface Agent {
  id: string;
  name: string;
  role: string;
  joined_at: string;
  status: string;
  note: string | null;
  last_seen: string | null;
  online?: boolean;
}

export interface StateEntry {
  scope: string;
  key: string;
  value: unknown;
  version: number;
  updated_at: string;
  expires_at: string | null;
}

export interface Room {
  id: string;
  created_at: string;
  meta: unknown;
  rev: number;
}

export type Change =
  | { rev: number; type: "message"; message: Message }
  | { rev: number; type: "agent"; agent: Agent }
  | { rev: number; type: "state"; deleted: boolean; state: StateEntry };

/** An API answer: its status, its JSON body (null when it has none) and its Retry-After. */
export interface ApiResult<T = unknown> {
  ok: boolean;
  status: number;
  data: T;
  retryAfter: number;
  /** Where a paged listing continues: its `X-Next-Cursor` header. */
  next?: string | null;
}

/** One server-sent event as the EventSource standard dispatches it. */
export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

type Child = Node | string | null | undefined | false;
export type Kid = Child | Child[];
export type Props = Record<string, string | number | boolean | null | undefined | EventListener>;

/** A stable hue for a name: the table's when it has one, else one derived from the text. */
export function hue(s: string, table?: Record<string, number>): number {
  if (table && Object.hasOwn(table, s)) return table[s];
  let x = 7;
  for (const ch of s) x = (x * 31 + ch.codePointAt(0)!) >>> 0;
  return x % 360;
}

/** Builds an element; every string child becomes a text node, never markup. */
export function h(tag: string, props: Props | null, ...kids: Kid[]): HTMLElement {
  const el = document.createElement(tag);
  for (const k in props || {}) {
    const v = props![k];
    if (v == null || v === false) continue;
    if (k === "class") el.className = String(v);
    else if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "hue") el.style.setProperty("--h", String(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Calls the API; a network error or a 40 s timeout throws. */
export async function request<T = unknown>(
  auth: Record<string, string>,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiResult<T>> {
  const headers = { ...auth };
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
    const next = res.headers.get("x-next-cursor");
    return { ok: res.ok, status: res.status, data: data as T, retryAfter, next };
  } finally {
    clearTimeout(timer);
  }
}

/** The message of an API error answer, or null. */
export function errorText(r: ApiResult | null): string | null {
  const data = r && r.data as { message?: unknown } | null;
  return data && typeof data.message === "string" ? data.message : null;
}

/** A time of day, with the date in front when it is not today. */
export function fmtTime(iso: string): string {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return t;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + t;
}

export function ago(iso: string | null): string {
  if (!iso) return "never seen";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 10) return "seen just now";
  if (s < 60) return "seen " + Math.floor(s) + "s ago";
  if (s < 3600) return "seen " + Math.floor(s / 60) + "m ago";
  if (s < 86400) return "seen " + Math.floor(s / 3600) + "h ago";
  return "seen " + Math.floor(s / 86400) + "d ago";
}

export function asText(v: unknown): string {
  return typeof v === "string" ? v : pretty(v, "");
}

/** JSON on one line when it fits, otherwise one member per line with short members kept inline. */
export function pretty(v: unknown, pad: string): string {
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

/** The value on one line, or null when that would take more than `room` characters. */
export function inline(v: unknown, room: number): string | null {
  if (room < 2) return null;
  if (v === null || typeof v !== "object") {
    const s = JSON.stringify(v);
    return s.length <= room ? s : null;
  }
  const arr = Array.isArray(v);
  const parts: string[] = [];
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

/** A body or value: text as text, JSON pretty-printed, long ones collapsed behind an expander. */
export function valueBlock(
  v: unknown,
  cls: string,
  expandedSet: Set<string>,
  key: string,
): HTMLElement[] {
  const text = asText(v);
  const el = h(typeof v === "string" ? "p" : "pre", {
    class: cls + (typeof v === "string" ? "" : " json"),
  }, text);
  const lines = text.split("\n").length;
  if (lines <= 12 && text.length <= 1000) return [el];
  const open = expandedSet.has(key);
  if (!open) el.classList.add("collapsed");
  const label = (nowOpen: boolean) =>
    nowOpen ? "show less" : "show all (" + lines + " lines, " + text.length + " chars)";
  const btn = h("button", { type: "button", class: "linkish expander" }, label(open));
  btn.addEventListener("click", () => {
    const nowOpen = el.classList.toggle("collapsed") === false;
    if (nowOpen) expandedSet.add(key);
    else expandedSet.delete(key);
    btn.textContent = label(nowOpen);
  });
  return [el, btn];
}

/** The "title" (or else "summary") string of a JSON object body, or null. */
export function headline(body: unknown): { key: string; raw: string; text: string } | null {
  if (!body || typeof body !== "object" || Array.isArray(body)) return null;
  for (const k of ["title", "summary"]) {
    const v = (body as Record<string, unknown>)[k];
    if (typeof v === "string" && v.trim()) {
      return { key: k, raw: v, text: v.replace(/\s+/g, " ").trim() };
    }
  }
  return null;
}

export function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n) + "…" : s;
}

/**
 * A parser of a `text/event-stream` body fed in pieces: `push` answers the events completed so
 * far; `retry()` is the server's last reconnection hint in milliseconds, or null.
 */
export function sseParser(): { push(text: string): SseEvent[]; retry(): number | null } {
  let buf = "";
  let data: string[] = [];
  let event = "";
  let lastId = "";
  let retry: number | null = null;
  const push = (text: string): SseEvent[] => {
    buf += text;
    const out: SseEvent[] = [];
    for (;;) {
      const end = buf.search(/[\r\n]/);
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next piece.
      if (end < 0 || (buf[end] === "\r" && end === buf.length - 1)) break;
      const line = buf.slice(0, end);
      buf = buf.slice(end + (buf[end] === "\r" && buf[end + 1] === "\n" ? 2 : 1));
      if (line === "") {
        if (data.length) out.push({ id: lastId, event: event || "message", data: data.join("\n") });
        data = [];
        event = "";
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
      else if (field === "id" && !value.includes("\0")) lastId = value;
      else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
    }
    return out;
  };
  return { push, retry: () => retry };
}

/**
 * The entries of one answer of `GET /rooms/:id/state` and the cursor of the next page: a bare
 * array is the whole state; `{ entries, next }` is a page, the last one when `next` is null.
 */
export function statePage(
  data: unknown,
  nextHeader: string | null = null,
): { entries: StateEntry[]; next: string | null } | null {
  if (Array.isArray(data)) return { entries: data, next: nextHeader };
  if (!data || typeof data !== "object") return null;
  const page = data as { entries?: unknown; next?: unknown };
  if (!Array.isArray(page.entries)) return null;
  const next = typeof page.next === "string" || typeof page.next === "number"
    ? String(page.next)
    : null;
  return { entries: page.entries, next };
}
