// The room view's elements (an agent, a message, a state entry) built from what the API answers.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import {
  type Agent,
  ago,
  clip,
  fmtTime,
  h,
  headline,
  hue,
  type Kid,
  type Message,
  type StateEntry,
  valueBlock,
} from "./dashboard_browser.ts";

// Embedded in the page like dashboard_browser.ts (see dashboard_script.ts): these functions use
// only DOM globals and the helpers there, never module state.

/** What a message's element shows besides the message itself. */
export interface MessageContext {
  /** The message it replies to, when that one is loaded. */
  parent: Message | null;
  /** The loaded replies to it, in id order. */
  replies: Message[];
  /** An agent's display name from its id. */
  name: (id: string) => string;
  canPost: boolean;
  /** Keys of the long bodies the human expanded. */
  expanded: Set<string>;
}

export function agentItem(a: Agent): HTMLElement {
  const statusHues: Record<string, number> = {
    idle: 220,
    working: 32,
    busy: 32,
    done: 145,
    blocked: 0,
    error: 0,
    waiting: 270,
    reviewing: 300,
  };
  return h(
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
        ? h("span", { class: "status", hue: hue(a.status, statusHues) }, a.status)
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
  );
}

/** A message on one line, for the line that quotes what a reply answers. */
export function snippet(m: Message): string {
  const head = headline(m.body);
  const t = head
    ? head.text
    : (typeof m.body === "string" ? m.body : JSON.stringify(m.body)).replace(/\s+/g, " ");
  return (m.from_agent || "anonymous") + ": " + (t.length > 90 ? t.slice(0, 90) + "…" : t);
}

export function claimBadge(m: Message): HTMLElement | null {
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
export function replyMarks(list: Message[], name: (id: string) => string): HTMLElement[] | null {
  if (!list.length) return null;
  const results = list.filter((r) => r.kind === "result");
  const others = list.filter((r) => r.kind !== "result");
  const by = (r: Message) => r.from_agent ? name(r.from_agent) : "anonymous";
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

/**
 * A JSON object body with a "title" or "summary" string: that string first, then the JSON,
 * unless the string is all there is to it.
 */
export function bodyBlock(m: Message, expanded: Set<string>): HTMLElement[] {
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

export function messageItem(m: Message, cx: MessageContext): HTMLElement {
  const kindHues: Record<string, number> = {
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
  const who = (id: string | null, fallback: string, cls: string): Kid =>
    h("span", { class: cls, hue: id ? hue(id) : null }, id ? cx.name(id) : fallback);
  return h(
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
      h("span", { class: "tag", hue: hue(m.kind, kindHues) }, m.kind),
      claimBadge(m),
      replyMarks(cx.replies, cx.name),
      cx.canPost
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
        cx.parent ? " · " + snippet(cx.parent) : null,
      )
      : null,
    bodyBlock(m, cx.expanded),
  );
}

export function stateItem(s: StateEntry, expanded: Set<string>): HTMLElement {
  return h(
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
    valueBlock(s.value, "body", expanded, "s" + s.scope + "\n" + s.key),
  );
}

/** The heading and list of one state scope: "shared", or an agent's own. */
export function scopeItem(scope: string, title: string): { el: HTMLElement; list: HTMLElement } {
  const shared = scope === "_shared";
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
  return { el, list };
}
