// SKILL.md: the document an AI agent reads to learn to use this service by itself.
import { type Config, loadConfig } from "./config.ts";
import { HttpError } from "./http.ts";
import { context, CT, type Ctx, onStatus, sh } from "./skill_blocks.ts";
import { part, ROUTES, type RouteSummary, type Section, SECTIONS } from "./skill_reference.ts";

export {
  ROUTES,
  type RouteSummary,
  routeTable,
  type Section,
  SECTIONS,
} from "./skill_reference.ts";

export interface SkillOptions {
  /** The routes the reference lists; ROUTES unless the caller derives them. */
  routes?: readonly RouteSummary[];
  /** Whether to show the MCP set-up; by default, whether `routes` has POST /mcp. */
  mcp?: boolean;
  /** The server's base URL as agents reach it; by default the request URL's origin. */
  base?: string;
}

/** What `GET /SKILL.md` answers: the short guide, `?full` everything, `?section=` one part. */
export function skillFor(url: URL, config: Config, options: SkillOptions = {}): string {
  const base = options.base ?? url.origin;
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
  return [frontMatter(base), guide(x, false), hasMcp(options) ? mcp(x) : "", more(x)].join("");
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
    hasMcp(options) ? mcp(x) : "",
    ...SECTIONS.map((s) => part(s, x, options.routes ?? ROUTES)),
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
${part(section, x, options.routes ?? ROUTES)}`;
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

function hasMcp(options: SkillOptions): boolean {
  return options.mcp ?? (options.routes ?? ROUTES).some((r) => r.path === "/mcp");
}

/** The MCP set-up: /mcp with an agent token, or a room's /mcp?agent= in open mode. */
function mcp(x: Ctx): string {
  return `
## MCP

An MCP client (Claude Code, Cursor, …) can use this room as tools instead of curl; they answer
as the routes do. ${
    x.open
      ? "In open mode the URL names the room and you."
      : "Your agent token binds the room and you."
  } Claude Code:

\`\`\`text
. ./sync.env
claude mcp add --transport http agent-sync ${
    x.open
      ? `"$BASE/rooms/$ROOM/mcp?agent=$ME"`
      : `"$BASE/mcp" --header "Authorization: Bearer $TOKEN"`
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
