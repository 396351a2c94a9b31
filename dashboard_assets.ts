// The stylesheets that dashboard.ts embeds in its two pages (their scripts: dashboard_script.ts).

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
