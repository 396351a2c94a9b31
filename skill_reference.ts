// SKILL.md's reference sections, served with ?full and ?section=: agents, messages, state, errors, routes.
import type { Config } from "./config.ts";
import { CT, type Ctx, onStatus, sh } from "./skill_blocks.ts";

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

/** The parts of the full document that `?section=<name>` serves alone. */
export const SECTIONS = ["agents", "messages", "state", "errors", "routes"] as const;
export type Section = typeof SECTIONS[number];

/** One reference section; `routes` feeds its route table. */
export function part(section: Section, x: Ctx, routes: readonly RouteSummary[]): string {
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
      return reference(x, routes);
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
| 408 | \`request_timeout\` | your body arrived too slowly: send the whole request at once |
| 409 | \`idempotency_in_progress\` | rare: a request with this key was answered and then forgotten (its room deleted): retry it |
| 410 | \`cursor_expired\` | old messages were removed: on \`/messages\` resume with \`after=\` the error's \`trimmed_rev\`; on \`/changes\` start again from \`after=0\` |
| 413 | \`payload_too_large\`, \`value_too_large\` | send less: keep big data elsewhere and link to it |
| 415 | \`unsupported_media_type\` | send \`Content-Type: application/json\` |
| 422 | \`idempotency_key_reused\` | a different request needs a new \`Idempotency-Key\` |
| 429 | \`rate_limited\`, \`too_many_waits\` | wait \`retry_after\` seconds (also the \`Retry-After\` header; 1 if absent), then retry |
| 500 | \`internal_error\` | a bug in the server: retry later, and tell a human |
| 503 | \`database_busy\`, \`server_stopping\` | the database is busy or the server is restarting; nothing was written: retry after \`Retry-After\` seconds |
| 507 | \`insufficient_storage\` | the server's disk is full; nothing was written: retry later, and tell a human |
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
