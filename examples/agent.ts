// A complete worker agent on the typed client: join, wait for tasks, claim one, do it, reply with its result.
//
//   BASE=http://localhost:8000 ROOM=<room id> TOKEN=<agent token> \
//     deno run --allow-net --allow-env examples/agent.ts [--max-tasks N] [--idle SECONDS]
//
// The work is deterministic: a task's body (a string, or `{ "text": … }`) comes back reversed.
// It stops after --max-tasks tasks, or when no task came for --idle seconds (default: never).
// Only web APIs and node:process, so Node runs it as well as Deno.
import process from "node:process";
import { createClient, type Message, ok } from "../client/client.ts";

function flag(name: string): number | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : Number(process.argv[i + 1]);
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`Missing ${name}: set BASE, ROOM and TOKEN (an agent token)`);
  return value;
}

/** The task itself: reverse its text. */
function work(task: Message): string {
  const body = task.body as string | { text?: unknown };
  const text = typeof body === "string" ? body : String(body?.text ?? "");
  return [...text].reverse().join("");
}

const room = env("ROOM");
const maxTasks = flag("max-tasks") ?? Infinity;
const idle = flag("idle");
const sync = createClient({ baseUrl: env("BASE"), token: env("TOKEN") });
const path = { id: room };

// Join: registering again with one's own token keeps the id and answers who we are.
const me = ok(
  await sync.api.POST("/rooms/{id}/agents", {
    params: { path },
    body: {
      id: process.env.ME,
      name: process.env.NAME ?? process.env.ME ?? "worker",
      role: "worker",
    },
  }),
);
const self = { path: { id: room, agent_id: me.id } };
ok(
  await sync.api.PATCH("/rooms/{id}/agents/{agent_id}", { params: self, body: { status: "idle" } }),
);

const done: number[] = [];
while (done.length < maxTasks) {
  // A 5-minute lease: if this process dies mid-task, the task reopens for another agent.
  const task = await sync.claimNext(room, { to: me.id, wait: idle ?? 3600, ttl: 300 });
  if (!task) {
    if (idle !== undefined) break;
    continue;
  }
  ok(
    await sync.api.PATCH("/rooms/{id}/agents/{agent_id}", {
      params: self,
      body: { status: "busy", note: `task ${task.id}` },
    }),
  );
  const claim = { path: { id: room, msg_id: task.id } };
  try {
    ok(
      await sync.api.POST("/rooms/{id}/messages", {
        params: { path },
        // One key per task: a retry, even by a restarted agent, posts the result once.
        headers: { "Idempotency-Key": `result-${me.id}-${task.id}` },
        body: {
          kind: "result",
          reply_to: task.id,
          to: task.from_agent,
          body: { task: task.id, output: work(task) },
        },
      }),
    );
  } catch (err) {
    await sync.api.DELETE("/rooms/{id}/messages/{msg_id}/claim", { params: claim });
    throw err;
  }
  // Done: claiming again without a ttl makes the claim permanent, so it never reopens.
  ok(await sync.api.POST("/rooms/{id}/messages/{msg_id}/claim", { params: claim }));
  done.push(task.id);
}
ok(
  await sync.api.PATCH("/rooms/{id}/agents/{agent_id}", {
    params: self,
    body: { status: "done", note: `${done.length} tasks` },
  }),
);
console.log(JSON.stringify({ agent: me.id, done }));
