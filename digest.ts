// The catch-up digest: what one agent needs after a reset or a long sleep, in one bounded answer.
import type { Db } from "./db.ts";
import { HttpError } from "./http.ts";
import { isOnline } from "./models.ts";
import { type Agent, type Message, readDigest, type StateEntry } from "./schema.ts";

export const DIGEST_DEFAULT_BYTES = 16 * 1024;
export const DIGEST_MIN_BYTES = 2048;
export const DIGEST_MAX_BYTES = 256 * 1024;

export interface DigestOptions {
  /** The revision the agent has caught up to (0: it knows nothing). */
  after: number;
  /** Whose inbox and tasks; null reads no inbox, and the tasks open to anyone. */
  agent: string | null;
  /** The whole JSON answer stays within this many bytes. */
  maxBytes: number;
  /** An agent seen within this many seconds is online. */
  onlineSeconds: number;
}

type Section = "inbox" | "tasks" | "agents" | "state";
/** In priority order: when the budget is short, later sections give way first. */
const SECTIONS: Section[] = ["inbox", "tasks", "agents", "state"];
const MAX_KINDS = 20;
/** A body or value longer than this (or an eighth of max_bytes) is cut to a preview. */
const VALUE_BYTES = 1024;

export interface Cut {
  shown: number;
  omitted: number;
  /** A request that lists what was left out (and possibly more). */
  more: string;
}

export interface Digest {
  room: string;
  agent: string | null;
  after: number;
  /** The cursor to pass as `after` next time: the room's revision when this was read. */
  next: number;
  /** New messages since the cursor, per kind. */
  counts: Record<string, number>;
  inbox: Record<string, unknown>[];
  tasks: Record<string, unknown>[];
  agents: Record<string, unknown>[];
  state: Record<string, unknown>[];
  truncated: boolean;
  /** Per section cut to fit `max_bytes`: how much is missing and where to read it. */
  cut?: Partial<Record<Section, Cut>>;
  /** The max_bytes that would have held everything, when known. */
  needed_bytes?: number;
  /** Retention removed messages after the cursor, up to this id: they are not counted. */
  trimmed_rev?: number;
}

/** The UTF-8 length of a string, without encoding it. */
function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return n;
}
const size = (value: unknown) => utf8Length(JSON.stringify(value));

/** `value` as it is, or, past `budget` bytes of JSON, a `<field>_cut` marker with a preview. */
function fit(field: string, value: unknown, budget: number): Record<string, unknown> {
  const text = JSON.stringify(value);
  const bytes = utf8Length(text);
  if (bytes <= budget) return { [field]: value };
  let preview = text.slice(0, Math.floor(budget / 2));
  while (preview.length > 0 && size(preview) > budget / 2) {
    preview = preview.slice(0, Math.floor(preview.length * 0.75));
  }
  if (/[\ud800-\udbff]$/.test(preview)) preview = preview.slice(0, -1);
  return { [`${field}_cut`]: { bytes, preview: preview + "…" } };
}

function inboxItem(m: Message, budget: number) {
  return {
    id: m.id,
    from_agent: m.from_agent,
    kind: m.kind,
    ...fit("body", m.body, budget),
    reply_to: m.reply_to,
    created_at: m.created_at,
  };
}

function taskItem(m: Message, agent: string | null, budget: number) {
  const status = m.claim ? "claimed_by_you" : m.expired_claim ? "lease_expired" : "unclaimed";
  return {
    id: m.id,
    status,
    from_agent: m.from_agent,
    to_agent: m.to_agent,
    ...fit("body", m.body, budget),
    created_at: m.created_at,
    ...(m.claim && m.claim.agent === agent ? { claim: m.claim } : {}),
    ...(m.expired_claim && !m.claim ? { expired_claim: m.expired_claim } : {}),
  };
}

function stateItem(s: StateEntry & { deleted: boolean }, budget: number) {
  const head = { scope: s.scope, key: s.key, version: s.version, rev: s.rev };
  if (s.deleted) {
    return { ...head, deleted: true, ...(s.expires_at !== null ? { expired: true } : {}) };
  }
  return {
    ...head,
    ...fit("value", s.value, budget),
    updated_at: s.updated_at,
    expires_at: s.expires_at,
  };
}

/** How an agent changed since the cursor: joined, updated (status, note, …), or left (offline). */
function agentChange(
  a: Agent,
  after: number,
  cursorTime: string | null,
  online: boolean,
): string | null {
  if (a.rev > after) {
    return cursorTime === null || a.joined_at > cursorTime ? "joined" : "updated";
  }
  if (!online && cursorTime !== null && a.last_seen !== null && a.last_seen > cursorTime) {
    return "left";
  }
  return null;
}

/**
 * The digest of a room for one agent since `after`: its unanswered messages, the open tasks,
 * the keys that changed (latest versions, values cut to a budget), the agents that joined,
 * changed or left, counts per kind, and the next cursor, all within `maxBytes` of JSON.
 * Null when the room does not exist.
 */
export async function digest(db: Db, roomId: string, opts: DigestOptions): Promise<Digest | null> {
  const maxBytes = Math.max(DIGEST_MIN_BYTES, Math.min(DIGEST_MAX_BYTES, opts.maxBytes));
  // No item is smaller than 64 bytes, so no more rows than this can be shown.
  const limit = Math.ceil(maxBytes / 64);
  const rows = await readDigest(db, roomId, { after: opts.after, agent: opts.agent, limit });
  if (!rows) return null;
  if (opts.after > rows.rev) {
    throw new HttpError(
      400,
      "invalid_query",
      `Invalid query: after=${opts.after} is ahead of the room's revision ${rows.rev} (a cursor from a deleted room of the same id?): start again from after=0`,
      { rev: rows.rev },
    );
  }
  const valueBudget = Math.min(VALUE_BYTES, Math.floor(maxBytes / 8));
  const now = Date.now();
  const agents = rows.agents.flatMap((a) => {
    const online = isOnline(a.last_seen, opts.onlineSeconds, now);
    const change = agentChange(a, opts.after, rows.cursorTime, online);
    if (change === null) return [];
    const { id, name, role, status, note, last_seen, joined_at } = a;
    return [{ id, name, role, change, status, note, online, last_seen, joined_at }];
  });
  const items: Record<Section, Record<string, unknown>[]> = {
    inbox: rows.inbox.map((m) => inboxItem(m, valueBudget)),
    tasks: rows.tasks.map((m) => taskItem(m, opts.agent, valueBudget)),
    agents,
    state: rows.state.map((s) => stateItem(s, valueBudget)),
  };
  const totals: Record<Section, number> = {
    inbox: rows.inboxTotal,
    tasks: rows.tasksTotal,
    agents: agents.length,
    state: rows.stateTotal,
  };
  const counts: Record<string, number> = {};
  for (const [i, { kind, n }] of rows.counts.entries()) {
    if (i < MAX_KINDS) counts[kind] = n;
    else counts["(other)"] = (counts["(other)"] ?? 0) + n;
  }
  const base: Digest = {
    room: roomId,
    agent: opts.agent,
    after: opts.after,
    next: rows.rev,
    counts,
    inbox: [],
    tasks: [],
    agents: [],
    state: [],
    truncated: false,
    ...(opts.after > 0 && opts.after < rows.trimmedRev ? { trimmed_rev: rows.trimmedRev } : {}),
  };
  // Each item's size with its comma; the whole is the empty digest plus every item.
  const sizes = Object.fromEntries(
    SECTIONS.map((s) => [s, items[s].map((item) => size(item) + 1)]),
  ) as Record<Section, number[]>;
  const fullBytes = size(base) +
    SECTIONS.reduce(
      (sum, s) => sum + sizes[s].reduce((a, b) => a + b, 0) - Math.min(1, sizes[s].length),
      0,
    );
  const complete = SECTIONS.every((s) => items[s].length === totals[s]);
  if (fullBytes <= maxBytes && complete) return { ...base, ...items };

  // Too big: keep a prefix of each section, sharing the budget, and say what was cut.
  const needed = complete ? fullBytes : undefined;
  const reserve = size(withCuts(base, items, totals, null, needed));
  const shown = allocate(sizes, maxBytes - reserve);
  let result = withCuts(base, items, totals, shown, needed);
  // Estimates aside, the bound holds: drop items from the lowest-priority sections until it fits.
  while (size(result) > maxBytes) {
    const s = [...SECTIONS].reverse().find((s) => shown[s] > 0);
    if (!s) break;
    shown[s]--;
    result = withCuts(base, items, totals, shown, needed);
  }
  return result;
}

/** How many items of each section fit in `budget` bytes: an equal share each, then the rest in order. */
function allocate(sizes: Record<Section, number[]>, budget: number): Record<Section, number> {
  const shown: Record<Section, number> = { inbox: 0, tasks: 0, agents: 0, state: 0 };
  let left = Math.max(0, budget);
  const active = SECTIONS.filter((s) => sizes[s].length > 0);
  const share = Math.floor(left / Math.max(1, active.length));
  for (const s of active) {
    let used = 0;
    while (shown[s] < sizes[s].length && used + sizes[s][shown[s]] <= share) {
      used += sizes[s][shown[s]++];
    }
    left -= used;
  }
  for (const s of SECTIONS) {
    while (shown[s] < sizes[s].length && sizes[s][shown[s]] <= left) left -= sizes[s][shown[s]++];
  }
  return shown;
}

/**
 * The digest with the first `shown` items of each section and a `cut` entry for each section
 * left incomplete. With `shown` null: no items and every section cut with the largest numbers,
 * the most the cut entries can take, which is what the budget reserves for them.
 */
function withCuts(
  base: Digest,
  items: Record<Section, Record<string, unknown>[]>,
  totals: Record<Section, number>,
  shown: Record<Section, number> | null,
  neededBytes: number | undefined,
): Digest {
  const result: Digest = { ...base, truncated: true, cut: {} };
  const worst = Number.MAX_SAFE_INTEGER;
  for (const s of SECTIONS) {
    const n = shown ? shown[s] : 0;
    result[s] = items[s].slice(0, n);
    if (shown && n >= totals[s]) continue;
    const last = n > 0 ? items[s][n - 1] : null;
    result.cut![s] = {
      shown: n,
      omitted: shown ? totals[s] - n : worst,
      more: moreRequest(s, base, shown ? Number(last?.id ?? last?.rev ?? -1) : worst),
    };
  }
  if (neededBytes !== undefined) result.needed_bytes = shown ? neededBytes : worst;
  return result;
}

/** The request that reads on after `last` (a message id, or a key's rev; -1 for none shown). */
function moreRequest(s: Section, base: Digest, last: number): string {
  const room = `/rooms/${encodeURIComponent(base.room)}`;
  switch (s) {
    case "inbox":
      return `GET ${room}/messages?to=${encodeURIComponent(base.agent ?? "")}&after=${
        last >= 0 ? last : base.after
      }`;
    case "tasks":
      return `GET ${room}/messages?kind=task&unclaimed=true&after=${last >= 0 ? last : 0}`;
    case "agents":
      return `GET ${room}/agents`;
    case "state":
      return `GET ${room}/changes?after=${last >= 0 ? last : base.after}`;
  }
}
