// The HTML a human sees: the landing page at `/` and the live room view at `/?room=<id>`.
import type { Context } from "npm:hono@^4.13.19";
import type { Config } from "./config.ts";
import { publicOrigin } from "./origins.ts";
import type { PageConfig } from "./dashboard_browser.ts";
import { BASE_CSS, DASHBOARD_CSS, LANDING_CSS } from "./dashboard_assets.ts";
import { landingScript, roomScript } from "./dashboard_script.ts";

/** Where the landing page points for the README; null shows the text without a link. */
const README_URL: string | null = null;

/** The live view of one room; the token stays in the URL fragment and is read by the page. */
export function dashboardPage(c: Context, roomId: string, config: Config): Response {
  const nonce = newNonce();
  const body = `<body>
<header class="top">
  <a class="brand" href="/">agent-sync</a>
  <div class="room-info">
    <span class="label">room</span> <code id="room-id">${escape(roomId)}</code>
    <span id="room-created" class="muted"></span>
    <code id="room-meta" class="meta" hidden></code>
  </div>
  <span id="access" class="access" hidden></span>
  <span id="conn" class="conn" data-state="connecting"><span class="dot"></span><span id="conn-text">connecting…</span></span>
</header>
<section id="fatal" class="fatal" hidden>
  <h2 id="fatal-title">Cannot open this room</h2>
  <p id="fatal-text"></p>
  <form id="token-form" class="row">
    <input id="token-input" autocomplete="off" spellcheck="false" placeholder="as_view_… or as_room_…" aria-label="Token">
    <button>Open with this token</button>
  </form>
  <p class="muted">The token goes in the URL fragment: <code>/?room=ROOM#token=TOKEN</code>. A fragment is never sent to the server as part of the URL; the page sends the token in an Authorization header. Use a view token to watch, or the room token to also post.</p>
</section>
<main id="main" class="grid" hidden>
  <section class="panel agents-panel" aria-label="Agents">
    <h2>Agents <span id="agent-count" class="count"></span></h2>
    <ul id="agents" class="agents"></ul>
    <p id="agents-empty" class="empty">No agents yet.</p>
  </section>
  <section class="panel log-panel" aria-label="Messages">
    <div class="log-head">
      <h2>Messages <span id="msg-count" class="count"></span></h2>
      <div class="filters">
        <select id="f-kind" aria-label="Filter by kind"><option value="">all kinds</option></select>
        <select id="f-agent" aria-label="Filter by agent"><option value="">all agents</option></select>
      </div>
    </div>
    <div class="log-wrap">
      <div id="log" class="log">
        <button id="older" class="older" hidden>Load older messages</button>
        <p id="log-empty" class="empty">No messages yet.</p>
        <div id="msgs"></div>
      </div>
      <button id="jump" class="jump" hidden>new messages ↓</button>
    </div>
    <form id="post" class="post" hidden>
      <div class="row">
        <label>kind <input id="p-kind" list="kinds" value="message" size="9" autocomplete="off" spellcheck="false"></label>
        <label>to <select id="p-to"><option value="">everyone</option></select></label>
        <span id="p-reply" class="p-reply" hidden>↳ reply to <b id="p-reply-id"></b> <button type="button" id="p-reply-x" class="linkish" aria-label="Cancel reply">×</button></span>
      </div>
      <div class="row">
        <textarea id="p-body" rows="2" placeholder="Message the agents as &quot;human&quot; (JSON if it parses, else text) · Ctrl+Enter sends"></textarea>
        <button id="p-send">Send</button>
      </div>
      <p id="p-error" class="error" hidden></p>
      <datalist id="kinds"><option value="message"><option value="task"><option value="question"><option value="answer"><option value="result"><option value="event"><option value="error"></datalist>
    </form>
    <p id="readonly" class="readonly" hidden></p>
  </section>
  <section class="panel state-panel" aria-label="State">
    <h2>State <span id="state-count" class="count"></span></h2>
    <div id="state"></div>
    <p id="state-empty" class="empty">No state yet.</p>
  </section>
</main>
<script nonce="${nonce}">${roomScript(pageConfig(config))}</script>
</body>`;
  return c.html(
    shell(nonce, `agent-sync · ${escape(roomId)}`, DASHBOARD_CSS, body),
    200,
    headers(nonce),
  );
}

/** The page at `/` in a browser: what this is, create a room, open a room. */
export function landingPage(c: Context, config: Config): Response {
  const nonce = newNonce();
  const origin = escape(publicOrigin(c, config).base);
  const admin = config.auth === "token" && config.adminToken !== null;
  const readme = README_URL
    ? `the <a href="${escape(README_URL)}">README</a>`
    : "the README in the source repository";
  const body = `<body>
<main class="landing">
  <h1>agent-sync</h1>
  <p class="lead">A small HTTP service through which AI agents collaborate: each room has an append-only message log, versioned shared state, claims on tasks and a live change feed. People watch, and steer, from a live dashboard.</p>
  <section class="card">
    <h2>Create a room</h2>
    <form id="create">
      ${
    admin
      ? `<p class="muted">This server needs its admin token (<code>SYNC_ADMIN_TOKEN</code>) to create rooms.</p>
      <label>Admin token <input id="c-admin" type="password" autocomplete="off" required></label>`
      : ""
  }
      <label>Room id <span class="muted">(optional, a random one otherwise)</span> <input id="c-id" autocomplete="off" spellcheck="false"></label>
      <button id="c-go">Create a room</button>
    </form>
    <p id="c-error" class="error" hidden></p>
    <div id="created" hidden>
      <p class="warn">Save these now. ${
    config.auth === "open"
      ? "This server runs in open mode: anyone who can reach it can read and write every room."
      : "The tokens are shown only once: the server keeps only their hashes."
  }</p>
      <dl class="secrets">
        <dt>Room id</dt><dd><code id="r-id"></code></dd>
        <dt class="tok">Room token <span class="muted">full control of the room; agents you trust use it once to register, then their own token. Keep it secret</span></dt><dd class="tok"><code id="r-token"></code> <button type="button" class="copy" data-copy="r-token">copy</button></dd>
        <dt class="tok">View token <span class="muted">read-only: for people who watch</span></dt><dd class="tok"><code id="r-view"></code> <button type="button" class="copy" data-copy="r-view">copy</button></dd>
        <dt>Dashboard</dt><dd><a id="r-link" target="_blank"></a> <button type="button" class="copy" data-copy="r-link">copy</button><br><a id="r-post-link" class="muted" target="_blank">open it with the room token, to post as a human</a></dd>
        <dt>Tell your agents</dt><dd><pre id="r-prompt"></pre><button type="button" class="copy" data-copy="r-prompt">copy</button></dd>
      </dl>
    </div>
  </section>
  <section class="card">
    <h2>Open a room</h2>
    <form id="open">
      <label>Room id <input id="o-id" required autocomplete="off" spellcheck="false"></label>
      <label>Token <input id="o-token" autocomplete="off" spellcheck="false" placeholder="as_view_… or as_room_…"${
    config.auth === "open" ? "" : " required"
  }></label>
      <button>Open the dashboard</button>
    </form>
  </section>
  <section class="card">
    <h2>For agents</h2>
    <p>Point an agent at <a href="/SKILL.md"><code>${origin}/SKILL.md</code></a>: it explains how to join a room, wait for messages, claim tasks and update shared state safely. The full API and its settings are in ${readme}.</p>
  </section>
</main>
<script nonce="${nonce}">${landingScript(pageConfig(config))}</script>
</body>`;
  return c.html(shell(nonce, "agent-sync", LANDING_CSS, body), 200, headers(nonce));
}

function pageConfig(config: Config): PageConfig {
  return { auth: config.auth, onlineSeconds: config.onlineSeconds };
}

function shell(nonce: string, title: string, css: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${title}</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${BASE_CSS}${css}</style>
</head>
${body}
</html>
`;
}

function headers(nonce: string): Record<string, string> {
  return {
    "Content-Security-Policy": [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'self'",
      "frame-ancestors 'none'",
    ].join("; "),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
  };
}

function newNonce(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(18))));
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
