// examples/agent.ts against a real server process: two workers share the tasks, each done once.
import assert from "node:assert/strict";
import { createClient, type Message, ok } from "../client/client.ts";
import { startServer } from "./servers.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** A room with a lead (the room token) and registered workers, each with its agent token. */
async function setUp(base: string, workers: string[]) {
  const created = ok(await createClient({ baseUrl: base }).api.POST("/rooms", { body: {} }));
  assert.ok("token" in created && created.token);
  const lead = createClient({ baseUrl: base, token: created.token });
  const tokens: string[] = [];
  for (const id of workers) {
    const a = ok(
      await lead.api.POST("/rooms/{id}/agents", {
        params: { path: { id: created.id } },
        body: { id, name: id, role: "worker" },
      }),
    );
    tokens.push(a.token!);
  }
  const post = async (body: unknown) =>
    ok(
      await lead.api.POST("/rooms/{id}/messages", {
        params: { path: { id: created.id } },
        body: { from: "lead", kind: "task", body },
      }),
    );
  return { room: created.id, lead, tokens, post };
}

interface Run {
  code: number;
  report: { agent: string; done: number[] };
  stderr: string;
}

/** Runs one worker to its end: `cmd` and `args` start it, the environment names the room. */
async function runWorker(cmd: string, args: string[], env: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `the worker failed:\n${stdout}\n${stderr}`);
  return { code: out.code, report: JSON.parse(stdout.split("\n").at(-1)!), stderr };
}

/** Every task has exactly one result, from the agent that claimed it, with the right output. */
async function checkResults(
  lead: ReturnType<typeof createClient>,
  room: string,
  tasks: Message[],
  runs: Run[],
) {
  const all = ok(
    await lead.api.GET("/rooms/{id}/messages", {
      params: { path: { id: room }, query: { limit: 1000 } },
    }),
  );
  const doneBy = new Map<number, string>();
  for (const { report } of runs) {
    for (const id of report.done) {
      assert.ok(!doneBy.has(id), `task ${id} was done twice`);
      doneBy.set(id, report.agent);
    }
  }
  assert.deepEqual([...doneBy.keys()].sort((a, b) => a - b), tasks.map((t) => t.id));
  for (const task of tasks) {
    const results = all.filter((m) => m.kind === "result" && m.reply_to === task.id);
    assert.equal(results.length, 1, `task ${task.id} has ${results.length} results`);
    const text = typeof task.body === "string" ? task.body : (task.body as { text: string }).text;
    assert.deepEqual(results[0].body, { task: task.id, output: [...text].reverse().join("") });
    assert.equal(results[0].from_agent, doneBy.get(task.id));
    assert.equal(results[0].to_agent, "lead", "the result went to the task's author");
    const now = all.find((m) => m.id === task.id)!;
    assert.equal(now.claim?.agent, doneBy.get(task.id));
    assert.equal(now.claim?.expires_at, null, "a finished task's claim is permanent");
  }
  const agents = ok(await lead.api.GET("/rooms/{id}/agents", { params: { path: { id: room } } }));
  for (const { report } of runs) {
    const agent = agents.find((a) => a.id === report.agent)!;
    assert.equal(agent.status, "done");
    assert.equal(agent.note, `${report.done.length} tasks`);
  }
}

function serverTest(name: string, fn: (base: string) => Promise<void>, ignore = false) {
  Deno.test({
    name,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      const server = await startServer(`${dir}/sync.db`);
      try {
        await fn(server.url);
      } finally {
        await server.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

const AGENT = ["run", "--allow-net", "--allow-env", "examples/agent.ts"];

serverTest(
  "two example agents on a real server do every task exactly once, then exit",
  async (base) => {
    const { room, lead, tokens, post } = await setUp(base, ["w1", "w2"]);
    const tasks: Message[] = [];
    for (let i = 0; i < 6; i++) {
      tasks.push(
        await post(i % 2 ? `task ${i}: héllo` : { text: `t${i}` }),
      );
    }
    const agentsNow = async () =>
      ok(await lead.api.GET("/rooms/{id}/agents", { params: { path: { id: room } } }));
    const registered = new Map((await agentsNow()).map((a) => [a.id, a.rev]));
    const runs = tokens.map((token) =>
      runWorker(Deno.execPath(), [...AGENT, "--idle", "3"], {
        BASE: base,
        ROOM: room,
        TOKEN: token,
      })
    );
    // More tasks once both have joined (their join moves their rev): most reach them in a wait.
    while ((await agentsNow()).filter((a) => a.rev > registered.get(a.id)!).length < 2) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let i = 6; i < 12; i++) tasks.push(await post({ text: `late ${i}` }));
    await checkResults(lead, room, tasks, await Promise.all(runs));
  },
);

serverTest(
  "the example agent stops after --max-tasks tasks and leaves the rest open",
  async (base) => {
    const { room, lead, tokens, post } = await setUp(base, ["w1"]);
    const tasks: Message[] = [];
    for (let i = 0; i < 3; i++) tasks.push(await post(`task ${i}`));
    const run = await runWorker(Deno.execPath(), [...AGENT, "--max-tasks", "2"], {
      BASE: base,
      ROOM: room,
      TOKEN: tokens[0],
    });
    assert.deepEqual(run.report.done, [tasks[0].id, tasks[1].id]);
    await checkResults(lead, room, tasks.slice(0, 2), [run]);
    const open = ok(
      await lead.api.GET("/rooms/{id}/messages", {
        params: { path: { id: room }, query: { kind: "task", unclaimed: true } },
      }),
    );
    assert.deepEqual(open.map((m) => m.id), [tasks[2].id]);
  },
);

const node = await new Deno.Command("node", { args: ["--version"], stdout: "piped" }).output()
  .then((o) => o.success, () => false);

serverTest(
  "the example agent, bundled to JavaScript, runs under Node against the real server",
  async (base) => {
    const dir = await Deno.makeTempDir();
    try {
      const bundle = await new Deno.Command(Deno.execPath(), {
        args: ["bundle", "--platform", "browser", "--external", "node:process"].concat(
          ["--outdir", dir, "examples/agent.ts"],
        ),
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(bundle.code, 0, new TextDecoder().decode(bundle.stderr));
      await Deno.rename(`${dir}/agent.js`, `${dir}/agent.mjs`);
      const js = await Deno.readTextFile(`${dir}/agent.mjs`);
      assert.ok(!js.includes("Deno."), "the bundle uses no Deno API");
      const { room, lead, tokens, post } = await setUp(base, ["node-1"]);
      const tasks: Message[] = [];
      for (let i = 0; i < 3; i++) tasks.push(await post({ text: `node ${i}` }));
      const run = await runWorker("node", [`${dir}/agent.mjs`, "--max-tasks", "3"], {
        BASE: base,
        ROOM: room,
        TOKEN: tokens[0],
      });
      await checkResults(lead, room, tasks, [run]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  !node,
);
