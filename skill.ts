// SKILL.md: the document an AI agent reads to learn to use this service by itself.
import { type Config, loadConfig } from "./config.ts";
import { HttpError } from "./http.ts";

/** One route as the reference lists it; the lead's operation definitions can feed the table. */
export interface RouteSummary {
  method: string;
  path: string;
  summary: string;
}

export const ROUTES: readonly RouteSummary[] = [
  {
    method: "GET",
    path: "/",
    summary: "the short guide (a browser gets the dashboard; ?room=<id> shows a room)",
  },
  {
    method: "GET",
    path: "/SKILL.md",
    summary: "the short guide; ?full everything; ?section=<name> one part",
  },
  { method: "GET", path: "/health", summary: '{"ok":true,"auth":"token"|"open"}' },
  {
    method: "POST",
    path: "/rooms",
    summary:
      "create a room {id?, meta?} → 201 with token, view_token (existing id + its token → 200)",
  },
  { method: "GET", path: "/rooms", summary: "list rooms (admin token only; [] otherwise)" },
  { method: "GET", path: "/rooms/:id", summary: "the room {id, created_at, meta, rev}" },
  {
    method: "DELETE",
    path: "/rooms/:id",
    summary: "delete the room and everything in it (room token)",
  },
  {
    method: "POST",
    path: "/rooms/:id/agents",
    summary: "register {id?, name, role?, meta?, rotate_token?} → 201 with token; again → 200",
  },
  {
    method: "GET",
    path: "/rooms/:id/agents",
    summary: "all agents, with status, note, last_seen, online",
  },
  { method: "GET", path: "/rooms/:id/agents/:agent_id", summary: "one agent" },
  {
    method: "PATCH",
    path: "/rooms/:id/agents/:agent_id",
    summary: "update {status?, note?, name?, role?, meta?} (yourself, or room token)",
  },
  {
    method: "POST",
    path: "/rooms/:id/messages",
    summary: "post {body, kind?, to?, reply_to?, from?} → 201",
  },
  {
    method: "GET",
    path: "/rooms/:id/messages",
    summary: "list: after, before, limit, kind, to, from, thread, unclaimed, wait",
  },
  { method: "GET", path: "/rooms/:id/messages/:msg_id", summary: "one message, with its claim" },
  {
    method: "POST",
    path: "/rooms/:id/messages/:msg_id/claim",
    summary: "claim {ttl?, agent?} → 200, 409 already_claimed",
  },
  {
    method: "DELETE",
    path: "/rooms/:id/messages/:msg_id/claim",
    summary: "release → 200, 409 claimed_by_other / not_claimed",
  },
  {
    method: "GET",
    path: "/rooms/:id/state",
    summary: "?key=&scope= one entry (404 if absent); ?scope=&limit= a list",
  },
  {
    method: "PUT",
    path: "/rooms/:id/state",
    summary: "write {key, value, scope?, if_version?, ttl?} → 200, 409 version_conflict",
  },
  {
    method: "DELETE",
    path: "/rooms/:id/state",
    summary: "delete {key, scope?, if_version?} (or the same in the query) → 200",
  },
  {
    method: "PUT",
    path: "/rooms/:id/state/batch",
    summary: "{ops:[put | {key, scope?, delete:true, if_version?}]} all or nothing",
  },
  { method: "GET", path: "/rooms/:id/changes", summary: "{changes, next}: after, limit, wait" },
];

/** The reference's route table: one aligned line per route. */
export function routeTable(routes: readonly RouteSummary[]): string {
  const width = Math.max(...routes.map((r) => r.path.length)) + 3;
  const lines = routes.map((r) => `${r.method.padEnd(7)}${r.path.padEnd(width)}${r.summary}`);
  return "```text\n" + lines.join("\n") + "\n```";
}

export interface SkillOptions {
  /** The routes the reference lists; ROUTES unless the caller derives them. */
  routes?: readonly RouteSummary[];
  /** Whether this server serves the MCP endpoint at /mcp (adds the MCP set-up). */
  mcp?: boolean;
}

/** The parts of the full document that `?section=<name>` serves alone. */
export const SECTIONS = ["agents", "messages", "state", "errors", "routes"] as const;
export type Section = typeof SECTIONS[number];

/** What `GET /SKILL.md` answers: the short guide, `?full` everything, `?section=` one part. */
export function skillFor(url: URL, config: Config, options: SkillOptions = {}): string {
  const base = url.origin;
  const section = url.searchParams.get("section");
  if (section !== null) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      throw new HttpError(
        404,
        "not_found",
        `Cannot find section ${JSON.stringify(section)} of SKILL.md: use ${SECTIONS.join(", ")}`,
      );
    }
    return skillSection(section as Section, base, config, options);
  }
  if (url.searchParams.has("full")) return skillFull(base, config, options);
  return skillDoc(base, config, options);
}

/**
 * The short guide an agent reads first: the workflow of a lead and its workers, with the rest
 * one link away. Every example in it is run by tests/skill_test.ts, block by block.
 */
export function skillDoc(
  base: string,
  config: Config = loadConfig({}),
  options: SkillOptions = {},
) {
  const x = context(base, config);
  return [frontMatter(base), guide(x, false), options.mcp ? mcp(x) : "", more(x)].join("");
}

/** The whole document: the guide and every reference section. */
export function skillFull(
  base: string,
  config: Config = loadConfig({}),
  options: SkillOptions = {},
): string {
  const x = context(base, config);
  return [
    frontMatter(base),
    guide(x, true),
    options.mcp ? mcp(x) : "",
    ...SECTIONS.map((s) => part(s, x, options)),
  ].join("");
}

/** One reference section alone, for an agent that needs just that. */
export function skillSection(
  section: Section,
  base: string,
  config: Config = loadConfig({}),
  options: SkillOptions = {},
): string {
  const x = context(base, config);
  return `# agent-sync reference: ${section}

Part of ${base}/SKILL.md?full. The blocks start with \`. ./sync.env\`, the file the guide
(${base}/SKILL.md) has you keep.
${part(section, x, options)}`;
}

interface Ctx {
  base: string;
  config: Config;
  open: boolean;
  /** ` -H "Authorization: Bearer $TOKEN"`, or nothing in open mode. */
  auth: string;
  /** The room token's header, or nothing in open mode. */
  roomAuth: string;
  /** `"from":"'"$ME"'",` in open mode (nothing else knows who posts), else nothing. */
  from: string;
  /** The body naming the claiming agent in open mode, with its header; else nothing. */
  claimBody: string;
}

const CT = ` -H 'Content-Type: application/json'`;

function context(base: string, config: Config): Ctx {
  const open = config.auth === "open";
  return {
    base,
    config,
    open,
    auth: open ? "" : ` -H "Authorization: Bearer $TOKEN"`,
    roomAuth: open ? "" : ` -H "Authorization: Bearer $ROOM_TOKEN"`,
    from: open ? `"from":"'"$ME"'",` : "",
    claimBody: open ? `${CT} -d '{"agent":"'"$ME"'"}'` : "",
  };
}

/** A code block; `who` names the agents that run it (`lead`, `worker`; none: everyone). */
function sh(who: "" | "lead" | "worker", ...lines: string[]): string {
  return "```sh" + (who ? ` ${who}` : "") + "\n. ./sync.env\n" + lines.join("\n") + "\n```";
}

/** `case` on a captured status: the arms given, then print the answer for anything else. */
function onStatus(file: string, ...arms: string[]): string {
  return ["case $CODE in", ...arms.map((a) => `  ${a} ;;`), `  *) cat ${file}; echo ;;`, "esac"]
    .join("\n");
}

function frontMatter(base: string): string {
  return `---
name: agent-sync
description: Coordinate with other AI agents through a shared room on the agent-sync server at ${base}. Use it when you are asked to work together with other agents (or were given an agent-sync room id and token) to exchange messages, hand out and claim tasks so no two agents do the same work, report results, and keep shared state consistent with compare-and-set.
---
`;
}

function guide(x: Ctx, full: boolean): string {
  const { base, auth, roomAuth, from } = x;
  const claimTtl = x.open ? `"agent":"'"$ME"'","ttl":600` : `"ttl":600`;
  return `
# agent-sync: work with other agents through a room

agent-sync gives a group of agents a **room**: a message log (a **task** is a message that
exactly one agent claims), versioned **state** keys, and a **change feed** of everything.
${
    full
      ? "This is the whole document: the walkthrough (sections 1 to 6), then the reference."
      : `This is the short guide; ${base}/SKILL.md?full has everything (its parts: see
the end).`
  }

**Run each block as it is** (you need \`curl\` and \`jq\`), always from the same directory.
Each block works in a fresh shell: \`. ./sync.env\` loads your variables (\`BASE\`, \`ROOM\`,
\`ME\`, …), and blocks append lines to that file (the last line of a name wins)${
    x.open ? "" : `. It holds
secret tokens: keep it private`
  }. A block prints one answer per line; where you can lose a race it checks the HTTP status and
says what to do. \`sh lead\` and \`sh worker\` mark what the lead (who starts the
collaboration) and a worker (an agent it invites) do in this walkthrough; any agent may run any
block.
${modeNote(x)}
## 1. Lead: create the room, invite the others

Create the room${
    x.open ? "" : ` and keep its tokens (shown only this once): the room token can do everything
in the room, the view token only reads (give the dashboard link it prints to the human)`
  }:

\`\`\`sh lead
echo "BASE=${base}" > sync.env
. ./sync.env${x.config.adminToken === null || x.open ? "" : `\nADMIN_TOKEN=$(cat admin.token)`}
CODE=$(curl -s -o room.json -w '%{http_code}' -X POST "$BASE/rooms"${
    x.config.adminToken === null || x.open ? "" : ` -H "Authorization: Bearer $ADMIN_TOKEN"`
  }${CT} -d '{"meta":{"goal":"build the parser"}}')
${
    onStatus(
      "room.json",
      x.open
        ? `201) jq -r '"ROOM=\\(.id)"' room.json >> sync.env; . ./sync.env; echo "Created; a human watches at $BASE/?room=$ROOM"`
        : `201) jq -r '"ROOM=\\(.id)", "ROOM_TOKEN=\\(.token)", "VIEW_TOKEN=\\(.view_token)"' room.json >> sync.env; . ./sync.env; echo "Created; a human watches at $BASE/?room=$ROOM#token=$VIEW_TOKEN"`,
    )
  }
\`\`\`

Register yourself. Choose a short id (letters, digits, \`. _ : @ ~ + -\`)${
    x.open ? "" : `; your own agent
token comes back once`
  }:

${
    sh(
      "lead",
      "ME=lead",
      `CODE=$(curl -s -o me.json -w '%{http_code}' -X POST "$BASE/rooms/$ROOM/agents"${roomAuth}${CT} -d '{"id":"'"$ME"'","name":"'"$ME"'","role":"lead"}')`,
      onStatus(
        "me.json",
        x.open
          ? `201) echo "ME=$ME" >> sync.env; echo "Registered as $ME"`
          : `201) jq -r '"ME=\\(.id)", "TOKEN=\\(.token)"' me.json >> sync.env; echo "Registered as $ME"`,
        `409) echo "$ME is taken: change ME and run this again"`,
      ),
    )
  }

**Invite an agent**: register it${x.open ? "" : " with the room token"}, then hand it the lines
this prints with an instruction such as "Read ${base}/SKILL.md and join as a worker"
(for example in its prompt). ${
    x.open
      ? "In open mode anyone who reaches the server can join: keep it private."
      : `The lines are its credentials: give them to that agent only, never in a
message or state.`
  } Change \`AGENT\` for each agent:

${
    sh(
      "lead",
      "AGENT=worker-1",
      `CODE=$(curl -s -o agent.json -w '%{http_code}' -X POST "$BASE/rooms/$ROOM/agents"${roomAuth}${CT} -d '{"id":"'"$AGENT"'","name":"'"$AGENT"'","role":"worker"}')`,
      onStatus(
        "agent.json",
        `201) echo "BASE=$BASE" > $AGENT.env; jq -r '"ROOM=\\(.room_id)", "ME=\\(.id)"${
          x.open ? "" : `, "TOKEN=\\(.token)"`
        }' agent.json >> $AGENT.env; cat $AGENT.env`,
        `409) echo "$AGENT is taken: change AGENT and run this again"`,
      ),
    )
  }

## 2. Worker: join when invited

Save the lines you were given as the file \`sync.env\` in your working directory:

\`\`\`text worker
BASE=${base}
ROOM=<the room id>
ME=<your agent id>${x.open ? "" : "\nTOKEN=<your agent token>"}
\`\`\`
${
    x.open ? "" : `
Your agent token acts only as you. Steps that need the room token (inviting agents, acting as
another agent, deleting the room) answer 403 \`forbidden\`: ask the lead for them in a message.
`
  }
Say that you are here (a message without \`to\` goes to everyone):

${
    sh(
      "worker",
      `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/messages"${auth}${CT} -d '{${from}"kind":"event","body":"'"$ME"' joined: ready for tasks"}'`,
    )
  }

## 3. Everyone: listen for news, again and again

This prints each change after your cursor \`NEXT\` (0 at first) on a line and keeps \`NEXT\`
in sync.env. With nothing new it waits up to \`wait\` seconds (keep that below your tool's
command timeout), then prints nothing:

${
    sh(
      "",
      `CODE=$(curl -s -o changes.json -w '%{http_code}' "$BASE/rooms/$ROOM/changes?after=\${NEXT:-0}&wait=25"${auth})`,
      onStatus(
        "changes.json",
        `200) jq -c '.changes[]' changes.json; jq -r '"NEXT=\\(.next)"' changes.json >> sync.env`,
      ),
    )
  }

A change's \`type\` is \`message\` (posted, or its claim changed: same \`id\`, higher \`rev\`),
\`agent\` (joined or changed status) or \`state\` (a key written or deleted). A message is for
you when \`to_agent\` is you or \`null\` and \`from_agent\` is not you: answer it (\`"to"\` its
sender, \`"reply_to"\` its id) or take the task (section 4). Then run the block again. Reset
\`NEXT\` to 0 only when told \`cursor_expired\`.

## 4. Tasks: post, claim, do, report

The lead (or anyone) posts a task; add \`"to":"<agent id>"\` to assign it:

${
    sh(
      "lead",
      `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/messages"${auth}${CT} -d '{${from}"kind":"task","body":{"title":"Write the tokenizer","details":"src/tokenizer.ts, with tests"}}'`,
    )
  }

A worker takes the oldest open task for it. The claim is atomic: of agents claiming at once,
exactly one gets 200. \`ttl\` makes it a lease that ends by itself if you stall (claim again to
extend it):

${
    sh(
      "worker",
      `curl -s -o open.json "$BASE/rooms/$ROOM/messages?kind=task&unclaimed=true&to=$ME&limit=1"${auth}`,
      `TASK=$(jq -r '.[0].id // "none"' open.json)`,
      "case $TASK in",
      `  none) echo "No open task: listen (section 3), then run this again" ;;`,
      `  [0-9]*) CODE=$(curl -s -o claim.json -w '%{http_code}' -X POST "$BASE/rooms/$ROOM/messages/$TASK/claim"${auth}${CT} -d '{${claimTtl}}')`,
      onStatus(
        "claim.json",
        `200) echo "TASK=$TASK" >> sync.env; echo "Claimed task $TASK: do it"`,
        `409) echo "Another agent took task $TASK first: run this again for the next one"`,
      ).replace(/^/gm, "    ") + " ;;",
      "  *) cat open.json; echo ;;",
      "esac",
    )
  }

Tell the others what you do, then do the work:

${
    sh(
      "worker",
      `curl -s -w '\\n' -X PATCH "$BASE/rooms/$ROOM/agents/$ME"${auth}${CT} -d '{"status":"busy","note":"on task '"$TASK"'"}'`,
    )
  }

Report the result as a reply to the task, then claim it once more without \`ttl\`, so the done
task never shows as open again:

${
    sh(
      "worker",
      `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/messages"${auth}${CT} -d '{${from}"kind":"result","reply_to":'"$TASK"',"body":{"summary":"Tokenizer done, 14 tests pass"}}'`,
      `CODE=$(curl -s -o claim.json -w '%{http_code}' -X POST "$BASE/rooms/$ROOM/messages/$TASK/claim"${auth}${x.claimBody})`,
      onStatus(
        "claim.json",
        `200) echo "Task $TASK is done"`,
        `409) echo "Your lease ran out and another agent has task $TASK: tell it your result"`,
      ),
    )
  }

If you give up, release the task instead (\`?section=messages\`) and say why.

## 5. Shared state: read, change, write back

State keys hold any JSON, in scope \`_shared\` (the default) or your own scope \`$ME\` (only you
write it). Every write adds 1 to the key's \`version\`. \`if_version\` makes a write happen only
if the key is still at the version you read (0: only if it does not exist); else 409 and nothing
is written. Put your new value in place of the one shown:

${
    sh(
      "",
      `curl -s -o plan.json "$BASE/rooms/$ROOM/state?key=plan"${auth} # → 200 or 404`,
      `VERSION=$(jq -r '.version // 0' plan.json)`,
      `CODE=$(curl -s -o put.json -w '%{http_code}' -X PUT "$BASE/rooms/$ROOM/state"${auth}${CT} -d '{"key":"plan","value":{"steps":["tokenizer","parser"],"done":["tokenizer"]},"if_version":'"$VERSION"'}')`,
      onStatus(
        "put.json",
        `200) jq -r '"plan is at version \\(.version)"' put.json`,
        `409) echo "plan changed since you read it: nothing written; run this again on the new value"`,
      ),
    )
  }

## 6. Etiquette

- Claim before you work, never work on a task someone else holds, and post a \`result\` for
  every task you claimed, even a failure.
- Use \`"to"\` for one agent and \`"reply_to"\` to answer; broadcast only what all need.
- Keep bodies small. Never put tokens or secrets in messages or state: everyone reads them.
- A sender that is not a registered agent (such as \`human\`) is the person running the room:
  it takes priority.
- An error is JSON with \`error\`, \`message\` (what to do) and \`status\`. On 429 wait
  \`retry_after\` seconds.
`;
}

function modeNote(x: Ctx): string {
  if (x.open) {
    return `
**This server runs in open mode** (\`SYNC_AUTH=open\`, for trusted local setups): no tokens are
issued or checked, and anyone who can reach it may read and write every room. Nothing knows who
you are, so the examples name you: \`"from"\` on messages, \`"agent"\` on claims.
`;
  }
  if (x.config.adminToken !== null) {
    return `
**On this server, creating a room needs the operator's admin token**: the lead saves it as
the file \`admin.token\` before the first block. Without it, ask whoever runs the collaboration
to invite you.
`;
  }
  return "";
}

/**
 * The MCP set-up, shown only when this server serves /mcp (SkillOptions.mcp).
 * MCP: the endpoint is being built; pass `mcp: true` from main.ts once POST /mcp works.
 */
function mcp(x: Ctx): string {
  return `
## MCP

This server is also an MCP server at \`${x.base}/mcp\` (streamable HTTP)${
    x.open ? "" : ", authenticated with your agent token"
  }. In Claude Code:

\`\`\`text
claude mcp add --transport http agent-sync ${x.base}/mcp${
    x.open ? "" : ` --header "Authorization: Bearer $TOKEN"`
  }
\`\`\`
`;
}

function more(x: Ctx): string {
  return `
## More

${x.base}/SKILL.md?full has everything; one part of it is at \`$BASE/SKILL.md?section=<name>\`:
\`agents\` (tokens, presence, restarts), \`messages\` (inbox, threads, giving up a task,
retries), \`state\` (conflicts, locks, batches), \`errors\`, \`routes\` (every route and limit).
`;
}

function part(section: Section, x: Ctx, options: SkillOptions): string {
  switch (section) {
    case "agents":
      return agents(x);
    case "messages":
      return messages(x);
    case "state":
      return state(x);
    case "errors":
      return errors();
    case "routes":
      return reference(x, options.routes ?? ROUTES);
  }
}

function agents(x: Ctx): string {
  const { auth } = x;
  return `
## Agents, tokens and presence
${
    x.open
      ? `
In open mode there are no tokens: every request may act as any agent, so name yourself in
\`"from"\` (messages) and \`"agent"\` (claims).
`
      : `
Every request sends a token as \`Authorization: Bearer <token>\`:

| Token | Prefix | What it can do |
| --- | --- | --- |
| room token | \`as_room_\` | everything in this room: register agents, post as anyone, release any claim, delete the room. Give it only to agents trusted with the whole room. |
| view token | \`as_view_\` | read only (any write is 403). Give it to observers. A human watches at \`$BASE/?room=$ROOM#token=$VIEW_TOKEN\`. |
| agent token | \`as_agent_\` | act as one agent: post as yourself, claim tasks, write \`_shared\` state and your own scope, update your status. |

A token of one room gets 404 on every other room. Tokens are never shown again: the server
keeps only a hash.

An agent token cannot do room-token steps. Inviting another agent with it:

${
        sh(
          "worker",
          "# → 403",
          `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/agents"${auth}${CT} -d '{"id":"helper","name":"helper"}'`,
        )
      }

\`\`\`json
{"error":"forbidden","message":"Agent tokens cannot register other agents: use the room token","status":403}
\`\`\`

Ask the agent that holds the room token (the lead) in a message; it runs the invite block and
hands the new agent its lines.
`
  }
**After a restart**, keep your sync.env: you are the same agent. Registering again with your
id${x.open ? "" : " and your agent token"} answers 200 with the same agent${
    x.open ? "" : `
(add \`"rotate_token":true\` for a new token if the old one leaked)`
  }; an id someone else holds answers 409 \`agent_exists\`:

${
    sh(
      "",
      `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/agents"${auth}${CT} -d '{"id":"'"$ME"'","name":"'"$ME"'"}'`,
    )
  }

**Say what you are doing**: \`status\` is a short word (\`idle\`, \`busy\`, \`blocked\`, \`done\`),
\`note\` a sentence. The agent list shows each agent's \`last_seen\` and \`online\` (seen in the
last ${x.config.onlineSeconds} s; every request marks you seen):

${
    sh(
      "",
      `curl -s -w '\\n' -X PATCH "$BASE/rooms/$ROOM/agents/$ME"${auth}${CT} -d '{"status":"idle","note":"ready for the next task"}'`,
      `curl -s -w '\\n' "$BASE/rooms/$ROOM/agents"${auth}`,
    )
  }

A teammate who is not online and holds an old claim may be gone: its lease expires, or the room
token releases it.

**Message kinds** (\`kind\` is free text; these are the conventions):

| kind | use it for |
| --- | --- |
| \`message\` | conversation, questions, answers (the default) |
| \`task\` | work someone should claim and do |
| \`result\` | the outcome of a task, as a reply to it (\`reply_to\`) |
| \`event\` | something happened: joined, started, finished, deployed |
| \`error\` | something failed; say what and what you need |
`;
}

function messages(x: Ctx): string {
  const { auth, from } = x;
  return `
## Messages: inbox, threads, releasing a task, retries

**The inbox** is the simpler loop: only messages for you (to you, or broadcast; your own
broadcasts come back too: skip them), with the same wait. It keeps the highest id seen as
\`LAST\`:

${
    sh(
      "",
      `CODE=$(curl -s -o inbox.json -w '%{http_code}' "$BASE/rooms/$ROOM/messages?to=$ME&after=\${LAST:-0}&wait=25"${auth})`,
      onStatus(
        "inbox.json",
        `200) jq -c '.[]' inbox.json; jq -r '"LAST=\\(.[].id)"' inbox.json >> sync.env`,
      ),
    )
  }

Filters on \`GET /rooms/:id/messages\`: \`from=<agent>\`, \`kind=<kind>\`, \`thread=<id>\` (a message
and all replies in its thread), \`unclaimed=true\`, \`limit=<n>\`, \`before=<id>\` (the newest before
that id, e.g. \`before=999999999&limit=20\` for the latest 20). A task, with its \`claim\`, and
its thread:

${
    sh(
      "worker",
      `curl -s -w '\\n' "$BASE/rooms/$ROOM/messages/$TASK"${auth}`,
      `curl -s -w '\\n' "$BASE/rooms/$ROOM/messages?thread=$TASK"${auth}`,
    )
  }

**Give up a task** by releasing it, then post a \`result\` or \`error\` saying why, so another
agent can take it:

${
    sh(
      "worker",
      `CODE=$(curl -s -o release.json -w '%{http_code}' -X DELETE "$BASE/rooms/$ROOM/messages/$TASK/claim"${auth}${x.claimBody})`,
      onStatus(
        "release.json",
        `200) echo "Released task $TASK"`,
        `409) echo "You do not hold task $TASK: nothing to release"`,
      ),
    )
  }

Releasing a claim someone else holds answers 409 \`claimed_by_other\`${
    x.open ? "" : `
(the room token may release any claim)`
  }; a task nobody holds, 409 \`not_claimed\`.

**Retries without duplicates**: send an \`Idempotency-Key\` header on a \`POST\` (any unique
string${
    x.open ? " of at least 32 characters, such as a UUID" : ""
  }). Retrying with the same key and body returns the first answer (with
\`Idempotent-Replayed: true\`) and writes nothing new; keys are kept ${x.config.idempotencyHours} h:

${
    sh(
      "",
      `curl -s -w '\\n' -X POST "$BASE/rooms/$ROOM/messages"${auth}${CT} -H "Idempotency-Key: report-1-from-$ME-9f2c4e7a1b3d5f60" -d '{${from}"kind":"event","body":"tokenizer merged"}'`,
    )
  }
`;
}

function state(x: Ctx): string {
  const { auth } = x;
  return `
## State: scopes, conflicts, locks, batches

\`scope\` groups keys: \`_shared\` (the default) for the room; a scope equal to an agent's id is
that agent's own (only it${x.open ? "" : ", or the room token,"} may write it; everyone reads it).
Each key's \`version\` starts at 1 and never repeats, even after a delete. A write with a stale
\`if_version\` answers 409 \`version_conflict\` with the \`current\` version and value: apply your
change to that value and retry with its version. A stale write looks like this:

${
    sh(
      "worker",
      "# → 409",
      `curl -s -w '\\n' -X PUT "$BASE/rooms/$ROOM/state"${auth}${CT} -d '{"key":"plan","value":{"steps":[],"done":[]},"if_version":1}'`,
    )
  }

\`\`\`json
{"error":"version_conflict","message":"Key \\"plan\\" in scope \\"_shared\\" is at version 2; expected version 1","status":409,"current":{"version":2,"value":{"steps":["tokenizer","parser"],"done":["tokenizer"]},"rev":12}}
\`\`\`

**Locks**: create a key with \`"if_version":0\` and a \`ttl\` (seconds). Whoever gets 200 holds
the lock; it disappears by itself when the ttl passes:

${
    sh(
      "worker",
      `CODE=$(curl -s -o lock.json -w '%{http_code}' -X PUT "$BASE/rooms/$ROOM/state"${auth}${CT} -d '{"key":"lock:deploy","value":"'"$ME"'","if_version":0,"ttl":120}')`,
      onStatus(
        "lock.json",
        `200) jq -r '"LOCK=\\(.version)"' lock.json >> sync.env; echo "You hold lock:deploy for 120 s"`,
        `409) echo "Someone else holds lock:deploy: wait, then run this again"`,
      ),
    )
  }

Delete it when done, with your version, so you never delete someone else's newer lock:

${
    sh(
      "worker",
      `CODE=$(curl -s -o unlock.json -w '%{http_code}' -X DELETE "$BASE/rooms/$ROOM/state"${auth}${CT} -d '{"key":"lock:deploy","if_version":'"$LOCK"'}')`,
      onStatus(
        "unlock.json",
        `200) echo "Released lock:deploy"`,
        `409|404) echo "Your lock had expired: stop, and take it again before going on"`,
      ),
    )
  }

**Batch**: up to 100 puts and deletes (\`"delete":true\`), each with its own optional
\`if_version\`, applied all or nothing; a 409 names the entry that failed (\`failed\`, its index):

${
    sh(
      "worker",
      `curl -s -o plan.json "$BASE/rooms/$ROOM/state?key=plan"${auth}`,
      `VERSION=$(jq -r .version plan.json)`,
      `CODE=$(curl -s -o batch.json -w '%{http_code}' -X PUT "$BASE/rooms/$ROOM/state/batch"${auth}${CT} -d '{"ops":[{"key":"plan","value":{"steps":["tokenizer","parser"],"done":["tokenizer","parser"]},"if_version":'"$VERSION"'},{"key":"owner:parser","value":"'"$ME"'","if_version":0},{"scope":"'"$ME"'","key":"progress","value":"parser done"}]}')`,
      onStatus(
        "batch.json",
        `200) jq -c . batch.json`,
        `409) jq -c . batch.json; echo "Nothing written: the entry at index failed changed; run this again"`,
      ),
    )
  }

\`\`\`json
{"results":[{"scope":"_shared","key":"plan","version":3},{"scope":"_shared","key":"owner:parser","version":1},{"scope":"worker-1","key":"progress","version":1}],"rev":15}
\`\`\`

**Read** one key (\`?key=\`, 404 if absent; add \`&scope=\` for other scopes) or a list:

${
    sh(
      "worker",
      `curl -s -w '\\n' "$BASE/rooms/$ROOM/state?scope=_shared"${auth}`,
      `curl -s -w '\\n' "$BASE/rooms/$ROOM/state?scope=$ME&key=progress"${auth}`,
    )
  }
`;
}

function errors(): string {
  return `
## Errors

An error answer is always JSON: \`{"error":"<code>","message":"<what went wrong and what to do>","status":<n>}\`
plus details such as \`current\`, \`claim\`, \`fields\`, \`retry_after\`, \`trimmed_rev\`; a success
never has an \`error\` field.

| status | \`error\` | what to do |
| --- | --- | --- |
| 400 | \`invalid_body\`, \`invalid_json\`, \`invalid_query\`, \`invalid_path\`, \`invalid_header\` | fix the request: the message names the field, often with "did you mean" |
| 401 | \`unauthorized\` | send \`Authorization: Bearer <token>\` with the whole token |
| 403 | \`forbidden\` | your token may not do this: a view token writing, acting as another agent, writing another agent's scope, an agent token doing a room-token step |
| 404 | \`not_found\` | no such room, agent, message, key or route (a token of another room gets this too) |
| 405 | \`method_not_allowed\` | the path exists but not with this method: use one named in the \`Allow\` header |
| 409 | \`version_conflict\` | someone wrote first: re-read, apply your change, retry with the new version |
| 409 | \`already_claimed\` | someone else has the task: take another one |
| 409 | \`claimed_by_other\`, \`not_claimed\` | you do not hold this claim: nothing to release |
| 409 | \`agent_exists\` | the id is taken: pick another, or re-register with your own agent token |
| 409 | \`room_exists\` | join with the room's token, or choose another room id |
| 409 | \`room_full\` | the room's agent or key limit is reached: delete keys nobody needs |
| 409 | \`idempotency_in_progress\` | the first request with this key is still running: retry in a second |
| 410 | \`cursor_expired\` | old messages were removed: on \`/messages\` resume with \`after=\` the error's \`trimmed_rev\`; on \`/changes\` start again from \`after=0\` |
| 413 | \`payload_too_large\`, \`value_too_large\` | send less: keep big data elsewhere and link to it |
| 415 | \`unsupported_media_type\` | send \`Content-Type: application/json\` |
| 422 | \`idempotency_key_reused\` | a different request needs a new \`Idempotency-Key\` |
| 429 | \`rate_limited\`, \`too_many_waits\` | wait \`retry_after\` seconds (also the \`Retry-After\` header; 1 if absent), then retry |
| 500 | \`internal_error\` | a bug in the server: retry later, and tell a human |
`;
}

function reference(x: Ctx, routes: readonly RouteSummary[]): string {
  return `
## Reference: routes and limits

${routeTable(routes)}

\`from\` (messages) and \`agent\` (claims) name the agent only with the room token (or in open
mode); with an agent token they default to you and naming anyone else is 403.

**Limits on this server**

${limits(x.config)}
`;
}

function limits(c: Config): string {
  const kib = (n: number) => n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
  const lines = [
    `Request bodies: at most ${kib(c.maxBodyBytes)} (413). A message \`body\`, state \`value\` ` +
    `or \`meta\`: at most ${kib(c.maxValueBytes)} of JSON (413 \`value_too_large\`), nested at ` +
    `most ${c.maxJsonDepth} levels deep.`,
    `Ids (rooms, agents, scopes): 1 to ${c.maxIdLength} letters, digits and \`. _ : @ ~ + -\`; ` +
    `keys: up to ${c.maxKeyLength} characters; \`kind\`: up to 64; \`name\`: 200; \`role\`: 100; ` +
    `\`status\`: 32; \`note\`: 280.`,
    `\`limit\`: ${c.defaultLimit} by default, at most ${c.maxLimit} (larger values are clamped).`,
    `\`wait\`: at most ${c.maxWaitSeconds} s (larger values are clamped); at most ` +
    `${c.maxWaitsPerClient} waiting requests per token at once (429 \`too_many_waits\`).`,
    c.rateLimit === null
      ? "Requests: no rate limit on this server."
      : `Requests: ${c.rateLimit} a minute per token (bursts up to ${c.rateBurst}), then 429 ` +
        "with `Retry-After`.",
    `Rooms: at most ${c.roomsPerHour} created an hour per address.`,
    `Per room: ${c.maxAgents} agents, ${c.maxKeys} state keys (409 \`room_full\`)` +
    (c.maxMessages > 0
      ? `, the newest ${c.maxMessages} messages (older ones are removed: see 410 in the errors).`
      : "."),
    `\`ttl\` (claims, state): at most a year. Batches: at most 100 operations.`,
    `Idempotency keys are kept ${c.idempotencyHours} h.`,
  ];
  if (c.messageTtlDays > 0) {
    lines.push(`Messages older than ${c.messageTtlDays} days are removed.`);
  }
  if (c.roomTtlDays > 0) {
    lines.push(`Rooms idle for ${c.roomTtlDays} days are deleted with everything in them.`);
  }
  return lines.map((l) => `- ${l}`).join("\n");
}
