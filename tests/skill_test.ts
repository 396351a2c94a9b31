// The skill document cannot drift: a lead and a worker run its blocks literally, as fresh shells.
import assert from "node:assert/strict";
import { DRIVERS, makeApp, ROUTE_FILES } from "./helpers.ts";
import { Shell } from "./skill_shell.ts";
import { freePort, startArgs } from "./servers.ts";
import {
  type Block,
  codeBlocks,
  envOf,
  type Fetch,
  type Flow,
  type FlowOptions,
  runFlow,
} from "./skill_flow.ts";
import { routeTable, SECTIONS, skillDoc, skillFull } from "../skill.ts";
import { loadConfig } from "../config.ts";

/** Deliberately not `http://test`: the document must carry the origin it was fetched from. */
const ORIGIN = "http://skill.example:8123";
const ENV = { SYNC_MAX_WAIT: "1" };
const ADMIN_TOKEN = "an-operator-secret-of-32-chars-or-more";
const MODES: { name: string; env: Record<string, string>; leadFiles?: Record<string, string> }[] = [
  { name: "token mode", env: ENV },
  { name: "open mode", env: { ...ENV, SYNC_AUTH: "open" } },
  {
    name: "admin token mode",
    env: { ...ENV, SYNC_ADMIN_TOKEN: ADMIN_TOKEN },
    leadFiles: { "admin.token": ADMIN_TOKEN + "\n" },
  },
];
const DOCS = [{ name: "short guide", path: "/SKILL.md" }, {
  name: "full document",
  path: "/SKILL.md?full",
}];
const MAX_SHORT_BYTES = 10 * 1024;

function frontMatter(doc: string): Record<string, string> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(doc);
  assert.ok(m, "the document starts with --- front matter ---");
  return Object.fromEntries(
    m[1].split("\n").map((l) => {
      const kv = /^([a-z_]+): (.+)$/.exec(l);
      assert.ok(kv, `front matter line is "key: value": ${l}`);
      // A plain YAML scalar may not hold ": " or " #", nor start with a quote or indicator.
      assert.doesNotMatch(kv[2], /: | #|^["'&*!|>%@`{[]/, `front matter value is plain YAML: ${l}`);
      return [kv[1], kv[2]];
    }),
  );
}

async function getDoc(fetch: Fetch, path = "/SKILL.md", origin = ORIGIN) {
  const res = await fetch(new Request(origin + path, { headers: { accept: "*/*" } }));
  return { res, doc: await res.text() };
}

/** Runs the walkthrough and throws at the first step with a problem. */
function checkDoc(doc: string, fetch: Fetch, leadFiles?: Record<string, string>): Promise<Flow> {
  return runFlow(doc, fetch, { strict: true, leadFiles });
}

async function roomGet(fetch: Fetch, flow: Flow, path: string) {
  const env = envOf(flow.files.lead.get("sync.env"));
  const headers: Record<string, string> = env.TOKEN ? { authorization: `Bearer ${env.TOKEN}` } : {};
  const res = await fetch(new Request(`${env.BASE}/rooms/${env.ROOM}${path}`, { headers }));
  return await res.json();
}

Deno.test("GET /SKILL.md serves the short guide as markdown with this server's base URL", async () => {
  await using t = await makeApp("embedded", ENV);
  const fetch = t.app.service.fetch;
  const { res, doc } = await getDoc(fetch);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/markdown\b/);
  const meta = frontMatter(doc);
  assert.deepEqual(Object.keys(meta).sort(), ["description", "name"]);
  assert.equal(meta.name, "agent-sync");
  assert.ok(meta.description.length <= 1024, "the description fits SKILL.md's 1024 characters");
  assert.match(meta.description, /other AI agents/);
  assert.match(meta.description, /Use it when/);
  assert.ok(meta.description.includes(ORIGIN), "the description names this server");
  assert.ok(doc.includes(`echo "BASE=${ORIGIN}" > sync.env\n`), "BASE is this server's origin");
  assert.ok(!doc.includes("http://test"), "no other origin is baked in");

  const root = await getDoc(fetch, "/");
  assert.equal(root.res.status, 200);
  assert.match(root.res.headers.get("content-type") ?? "", /^text\/markdown\b/);
  assert.equal(root.doc, doc, "a client that does not ask for HTML gets the same document at /");
  assert.equal((await getDoc(fetch, "/?full")).doc, (await getDoc(fetch, "/SKILL.md?full")).doc);
});

for (const mode of MODES) {
  Deno.test(`the short guide is at most 10 KB, workflow first, the reference one link away (${mode.name})`, async () => {
    await using t = await makeApp("embedded", mode.env);
    // A long origin, as on a hosted val, counts: it appears in the text several times.
    const origin = "https://someone-agentsync-main.web.val.run";
    const { doc } = await getDoc(t.app.service.fetch, "/SKILL.md", origin);
    const bytes = new TextEncoder().encode(doc).length;
    assert.ok(bytes <= MAX_SHORT_BYTES, `the short guide is ${bytes} bytes`);
    const withMcp = skillDoc(origin, loadConfig(mode.env), { mcp: true });
    const mcpBytes = new TextEncoder().encode(withMcp).length;
    assert.ok(mcpBytes <= MAX_SHORT_BYTES, `with the MCP set-up it is ${mcpBytes} bytes`);
    const headings = [...doc.matchAll(/^## (.*)$/gm)].map((m) => m[1]);
    assert.match(headings[0], /^1\. Lead: create the room/);
    assert.ok(doc.includes(`${origin}/SKILL.md?full`), "it links the full document");
    for (const s of SECTIONS) assert.ok(doc.includes(`\`${s}\``), `it names section ${s}`);
    assert.doesNotMatch(doc, /^## (Errors|Reference)/m, "the reference is not in the short guide");
    const full = (await getDoc(t.app.service.fetch, "/SKILL.md?full", origin)).doc;
    assert.ok(new TextEncoder().encode(full).length > bytes);
    const walkthrough = doc.slice(doc.indexOf("\n## 1. "), doc.indexOf("\n## More"));
    assert.ok(full.includes(walkthrough), "the full document holds the same walkthrough");
  });
}

Deno.test("?section=<name> serves one part of the full document; an unknown one is a 404", async () => {
  await using t = await makeApp("embedded", ENV);
  const fetch = t.app.service.fetch;
  const full = (await getDoc(fetch, "/SKILL.md?full")).doc;
  for (const s of SECTIONS) {
    const { res, doc } = await getDoc(fetch, `/SKILL.md?section=${s}`);
    assert.equal(res.status, 200, s);
    assert.match(res.headers.get("content-type") ?? "", /^text\/markdown\b/);
    const body = doc.slice(doc.indexOf("\n## "));
    assert.ok(body.length > 200, `section ${s} has content`);
    assert.ok(full.includes(body), `section ${s} is part of the full document, word for word`);
  }
  const { res, doc } = await getDoc(fetch, "/SKILL.md?section=nope");
  assert.equal(res.status, 404);
  const err = JSON.parse(doc);
  assert.equal(err.error, "not_found");
  assert.match(err.message, /section "nope".*state/);
});

for (const driver of DRIVERS) {
  for (const mode of MODES) {
    for (const { name, path } of DOCS) {
      Deno.test(`a lead and a worker following the ${name} block by block never hit a hidden failure (${mode.name}) [${driver}]`, async () => {
        await using t = await makeApp(driver, mode.env);
        const fetch = t.app.service.fetch;
        const { doc } = await getDoc(fetch, path);
        const flow = await checkDoc(doc, fetch, mode.leadFiles);
        const open = mode.env.SYNC_AUTH === "open";
        const runs = flow.steps.flatMap((s) => s.runs);
        assert.ok(runs.every((r) => r.url.startsWith(`${ORIGIN}/`)), "every URL starts at $BASE");
        assert.ok(flow.steps.some((s) => s.agent === "worker"), "the worker ran blocks");

        const lead = envOf(flow.files.lead.get("sync.env"));
        const worker = envOf(flow.files.worker.get("sync.env"));
        assert.equal(lead.ME, "lead");
        assert.equal(worker.ME, "worker-1");
        assert.equal(worker.ROOM, lead.ROOM);
        if (open) {
          assert.deepEqual([lead.TOKEN, lead.ROOM_TOKEN, worker.TOKEN], [
            undefined,
            undefined,
            undefined,
          ]);
        } else {
          assert.match(lead.ROOM_TOKEN, /^as_room_/);
          assert.match(lead.VIEW_TOKEN, /^as_view_/);
          assert.match(lead.TOKEN, /^as_agent_/);
          assert.match(worker.TOKEN, /^as_agent_/);
          assert.notEqual(worker.TOKEN, lead.TOKEN);
          assert.equal(worker.ROOM_TOKEN, undefined, "the worker never holds the room token");
        }
        // Every non-2xx answer is one the document announces.
        const unusual = flow.steps.flatMap((s) =>
          s.runs.filter((r) => r.status >= 300).map((r) => `${s.agent} ${r.method} ${r.status}`)
        );
        const expected = ["lead GET 404"]; // the first read of the plan, before anyone wrote it
        if (path.includes("full")) {
          if (!open) expected.push("worker POST 403"); // an agent token inviting someone
          expected.push("worker PUT 409"); // the stale write
        }
        assert.deepEqual(unusual, expected);

        // What the agents did is really in the room: the task was claimed, done and answered.
        assert.match(
          flow.steps.find((s) => s.stdout.includes("Claimed task"))!.stdout,
          /^Claimed task \d+: do it\n$/,
        );
        const thread = await roomGet(fetch, flow, `/messages?thread=${worker.TASK}`);
        assert.deepEqual(thread.map((m: { kind: string }) => m.kind), ["task", "result"]);
        assert.deepEqual(thread.map((m: { from_agent: string }) => m.from_agent), [
          "lead",
          "worker-1",
        ]);
        const plan = await roomGet(fetch, flow, "/state?key=plan");
        if (path.includes("full")) {
          assert.deepEqual(plan.value.done, ["tokenizer", "parser"]);
          assert.equal(plan.version, 3);
          assert.equal(
            (await roomGet(fetch, flow, "/state?scope=worker-1&key=progress")).value,
            "parser done",
          );
        } else {
          assert.equal(plan.version, 2, "both wrote the plan with compare-and-set");
          assert.equal(thread[0].claim.agent, "worker-1");
          assert.equal(thread[0].claim.expires_at, null, "the done task stays claimed");
          assert.equal((await roomGet(fetch, flow, "/agents/worker-1")).status, "busy");
        }
      });
    }
  }
}

/** The walkthrough of the short guide in a fresh app, with options to stage what goes wrong. */
async function walk(mode: typeof MODES[number], options: (fetch: Fetch) => FlowOptions) {
  const t = await makeApp("embedded", mode.env);
  const fetch = t.app.service.fetch;
  const { doc } = await getDoc(fetch);
  const flow = await runFlow(doc, fetch, { leadFiles: mode.leadFiles, ...options(fetch) });
  return { t, fetch, flow, doc };
}

const isClaimBlock = (b: Block) => b.text.includes("unclaimed=true");

/** The request an agent makes as the lead, behind the worker's back. */
function asLead(fetch: Fetch, flow: Flow, method: string, path: string, body: unknown) {
  const env = envOf(flow.files.lead.get("sync.env"));
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (env.TOKEN) headers.authorization = `Bearer ${env.TOKEN}`;
  return fetch(
    new Request(`${env.BASE}/rooms/${env.ROOM}${path}`, {
      method,
      headers,
      body: JSON.stringify(body),
    }),
  );
}

for (const mode of MODES) {
  Deno.test(`with no open task, the worker's claim block says so and claims nothing (${mode.name})`, async () => {
    const { t, flow } = await walk(mode, () => ({
      skip: (b) => b.text.includes('"kind":"task"'),
      stopAfter: (s) => isClaimBlock(s.block),
    }));
    await using _ = t;
    const step = flow.steps[flow.steps.length - 1];
    assert.equal(step.stdout, "No open task: listen (section 3), then run this again\n");
    assert.deepEqual(step.runs.map((r) => r.method), ["GET"], "no claim was attempted");
    assert.doesNotMatch(flow.files.worker.get("sync.env")!, /TASK=/);
  });

  Deno.test(`a worker that loses the race for a task is told so and does not record it (${mode.name})`, async () => {
    const { t, flow } = await walk(mode, (fetch) => ({
      fetchFor: (agent, flow) => async (req) => {
        if (agent === "worker" && req.method === "POST" && req.url.endsWith("/claim")) {
          const path = new URL(req.url).pathname.replace(/^\/rooms\/[^/]+/, "");
          const won = await asLead(fetch, flow, "POST", path, { agent: "lead" });
          assert.equal(won.status, 200);
        }
        return fetch(req);
      },
      stopAfter: (s) => isClaimBlock(s.block),
    }));
    await using _ = t;
    const step = flow.steps[flow.steps.length - 1];
    assert.match(
      step.stdout,
      /^Another agent took task \d+ first: run this again for the next one\n$/,
    );
    assert.deepEqual(step.runs.map((r) => r.status), [200, 409]);
    assert.doesNotMatch(flow.files.worker.get("sync.env")!, /TASK=/);
    // Run again, as it says: the only task is taken, so there is none for the worker.
    const again = new Shell(t.app.service.fetch, flow.files.worker);
    await again.runBlock(step.block.text);
    assert.equal(again.stdout, "No open task: listen (section 3), then run this again\n");
  });

  Deno.test(`a compare-and-set that loses the race writes nothing and says to run it again (${mode.name})`, async () => {
    const isStateBlock = (b: Block) => b.text.includes('"key":"plan"') && b.who.length === 0;
    let raced = false;
    const { t, flow } = await walk(mode, (fetch) => ({
      fetchFor: (agent, flow) => async (req) => {
        if (agent === "worker" && req.method === "PUT" && !raced) {
          raced = true;
          const won = await asLead(fetch, flow, "PUT", "/state", {
            key: "plan",
            value: "the lead's",
          });
          assert.equal(won.status, 200);
        }
        return fetch(req);
      },
      stopAfter: (s) => s.agent === "worker" && isStateBlock(s.block),
    }));
    await using _ = t;
    const step = flow.steps[flow.steps.length - 1];
    assert.equal(
      step.stdout,
      "plan changed since you read it: nothing written; run this again on the new value\n",
    );
    const plan = await roomGet(t.app.service.fetch, flow, "/state?key=plan");
    assert.deepEqual([plan.version, plan.value], [2, "the lead's"]);
    const again = new Shell(t.app.service.fetch, flow.files.worker);
    await again.runBlock(step.block.text);
    assert.equal(again.stdout, "plan is at version 3\n");
  });
}

const HAVE_TOOLS = await new Deno.Command("bash", {
  args: ["-c", "command -v curl && command -v jq"],
  stdout: "null",
  stderr: "null",
}).output().then((r) => r.success, () => false);

/** Replaces what differs between two servers (room ids, tokens, timestamps) in output. */
function normalized(text: string): string {
  return text.split("\n").map((l) => {
    if (/^[{[]/.test(l)) return JSON.stringify(shape(JSON.parse(l)));
    return l.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uuid>")
      .replace(/as_(room|view|agent)_[A-Za-z0-9_-]{43}/g, "as_$1_<token>");
  }).join("\n");
}

function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]));
  }
  return typeof v;
}

// Admin token mode differs from token mode only in its first block: two server processes suffice.
for (const mode of MODES.filter((m) => !m.leadFiles)) {
  Deno.test({
    name:
      `the walkthrough runs the same in real bash, curl and jq, fresh shells, against a real server (${mode.name})`,
    ignore: !HAVE_TOOLS,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      const dirs = { lead: `${dir}/lead`, worker: `${dir}/worker` };
      await Deno.mkdir(dirs.lead), await Deno.mkdir(dirs.worker);
      const port = freePort();
      const server = new Deno.Command(Deno.execPath(), {
        args: await startArgs(),
        cwd: new URL("..", import.meta.url).pathname,
        env: {
          ...mode.env,
          PORT: String(port),
          SYNC_HOST: "127.0.0.1",
          SYNC_DB: `${dir}/db.sqlite`,
          SYNC_RATE_LIMIT: "off",
        },
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      try {
        const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
        for (let out = ""; !out.includes("listening");) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`server exited before listening: ${out}`);
          out += value;
        }
        const base = `http://127.0.0.1:${port}`;
        const doc = await (await fetch(`${base}/SKILL.md?full`)).text();
        // The same walkthrough in-process, with the same origin, to compare with.
        await using t = await makeApp("embedded", mode.env);
        const inProcess = await runFlow(
          (await getDoc(t.app.service.fetch, "/SKILL.md?full", base)).doc,
          t.app.service.fetch,
          { leadFiles: mode.leadFiles },
        );
        for (const [name, text] of Object.entries(mode.leadFiles ?? {})) {
          await Deno.writeTextFile(`${dirs.lead}/${name}`, text);
        }
        assert.equal(inProcess.steps.length > 20, true);
        // Each curl also reports its status on stderr; the example's own -w output stays.
        const wrapper = `curl() {
  local args=() w=""
  while [ $# -gt 0 ]; do
    if [ "$1" = -w ]; then w=$2; shift 2; else args+=("$1"); shift; fi
  done
  command curl "\${args[@]}" -w "$w%{stderr}%{http_code} %{method}\\n"
}`;
        let i = 0;
        for (const block of codeBlocks(doc)) {
          if (block.lang === "text" && block.who.includes("worker")) {
            const agent = /^AGENT=(\S+)$/m.exec(inProcess.steps[i - 1].block.text)![1];
            await Deno.copyFile(`${dirs.lead}/${agent}.env`, `${dirs.worker}/sync.env`);
          }
          if (block.lang !== "sh") continue;
          for (const agent of block.who.length > 0 ? block.who : ["lead", "worker"] as const) {
            const expected = inProcess.steps[i++];
            assert.equal(expected.agent, agent);
            const bash = await new Deno.Command("bash", {
              args: ["-c", `${wrapper}\n${block.text}`],
              cwd: dirs[agent],
              stdout: "piped",
              stderr: "piped",
            }).output();
            const stderr = new TextDecoder().decode(bash.stderr);
            const where = `${agent}, block at line ${block.line}`;
            assert.ok(bash.success, `${where}: bash failed: ${stderr}`);
            assert.deepEqual(
              stderr.trim().split("\n").filter((l) => l !== "").map((l) =>
                l.split(" ").reverse().join(" ")
              ),
              expected.runs.map((r) => `${r.method} ${r.status}`),
              where,
            );
            assert.equal(
              normalized(new TextDecoder().decode(bash.stdout)),
              normalized(expected.stdout),
              `${where}: the same output`,
            );
          }
        }
        assert.equal(i, inProcess.steps.length);
        await reader.cancel();
      } finally {
        server.kill();
        await server.status;
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Routes named as `METHOD /path` anywhere in `text`, query strings dropped. */
function namedRoutes(text: string): Set<string> {
  return new Set(
    [...text.matchAll(/\b(GET|POST|PUT|PATCH|DELETE)\s+(\/[^\s?`'"|)]*)/g)].map((m) =>
      `${m[1]} ${m[2]}`
    ),
  );
}

/** Compares the reference section and every route the document names with the app's routes. */
function routeProblems(doc: string, appRoutes: Set<string>): string[] {
  const start = doc.search(/^## .*Reference/m);
  assert.ok(start >= 0, "the document has a Reference section");
  const end = doc.slice(start + 3).search(/^## /m);
  const reference = namedRoutes(doc.slice(start, end < 0 ? undefined : start + 3 + end));
  return [
    ...[...appRoutes].filter((r) => !reference.has(r)).map((r) => `missing: ${r}`),
    ...[...namedRoutes(doc)].filter((r) => !appRoutes.has(r)).map((r) => `no such route: ${r}`),
  ];
}

function appRoutes(
  t: { app: { service: { app: { routes: { method: string; path: string }[] } } } },
) {
  // Middleware entries (method ALL, path /*) are not routes; `/`, `/SKILL.md` and `/health` are.
  return new Set(
    t.app.service.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`),
  );
}

Deno.test("the full document's reference lists every route of the app and no other", async () => {
  await using t = await makeApp("embedded", ENV);
  const routes = appRoutes(t);
  assert.ok(routes.size >= 20, `the app has ${routes.size} routes`);
  assert.deepEqual(
    routeProblems((await getDoc(t.app.service.fetch, "/SKILL.md?full")).doc, routes),
    [],
  );
  const short = (await getDoc(t.app.service.fetch)).doc;
  assert.deepEqual([...namedRoutes(short)].filter((r) => !routes.has(r)), []);
});

Deno.test("the route table is made from a list of {method, path, summary}", () => {
  const routes = [
    { method: "GET", path: "/a", summary: "the a" },
    { method: "DELETE", path: "/rooms/:id/b", summary: "delete b" },
  ];
  assert.equal(
    routeTable(routes),
    "```text\nGET    /a             the a\nDELETE /rooms/:id/b   delete b\n```",
  );
  const full = skillFull(ORIGIN, loadConfig({}), { routes });
  assert.ok(full.includes(routeTable(routes)));
  assert.doesNotMatch(full, /state\/batch {3}/);
});

Deno.test("the MCP set-up appears when the routes include POST /mcp, and fits in 10 KB", () => {
  const config = loadConfig({});
  assert.doesNotMatch(skillFull(ORIGIN, config), /\/mcp\b/);
  const routes = [{ method: "POST", path: "/mcp", summary: "MCP" }];
  const doc = skillDoc(ORIGIN, config, { routes });
  assert.ok(
    doc.includes(
      `claude mcp add --transport http agent-sync "$BASE/mcp" --header "Authorization: Bearer $TOKEN"`,
    ),
  );
  assert.ok(skillFull(ORIGIN, config, { routes }).includes("## MCP"));
  assert.doesNotMatch(skillDoc(ORIGIN, config, { routes, mcp: false }), /## MCP/);
  const open = skillDoc(ORIGIN, loadConfig({ SYNC_AUTH: "open" }), { routes });
  assert.ok(open.includes(`agent-sync "$BASE/rooms/$ROOM/mcp?agent=$ME"\n`));
  assert.doesNotMatch(open, /Bearer/);
});

Deno.test("every error code the skill document names is one the server sends, and vice versa", async () => {
  await using t = await makeApp("embedded", ENV);
  const { doc } = await getDoc(t.app.service.fetch, "/SKILL.md?full");
  const sources = await Promise.all(
    [
      "main.ts",
      "context.ts",
      "operation.ts",
      "http.ts",
      "feed.ts",
      "idempotency.ts",
      "skill.ts",
      "serve.ts",
      "origins.ts",
      "stream.ts",
      "digest.ts",
      ...ROUTE_FILES,
    ].map((f) => Deno.readTextFile(new URL(`../${f}`, import.meta.url))),
  );
  const source = sources.join("\n");
  const section = doc.slice(doc.indexOf("\n## Errors"), doc.search(/^## .*Reference/m));
  const rows = [...section.matchAll(/^\| (\d{3}) \| (.+?) \| .+ \|$/gm)];
  const named = new Set(
    rows.flatMap((row) => [...row[2].matchAll(/`([a-z_]+)`/g)].map((m) => m[1])),
  );
  assert.ok(named.size > 15, `the error table names ${named.size} codes`);
  for (const code of named) {
    // `invalid_${what}` in http.ts sends invalid_body and invalid_query.
    const [prefix, suffix] = code.split(/_(.*)/);
    const templated = source.includes(`\`${prefix}_\${`) && source.includes(`"${suffix}"`);
    assert.ok(source.includes(`"${code}"`) || templated, `the server never sends "${code}"`);
  }
  const sent = [...source.matchAll(/HttpError\(\s*\d{3},\s*"([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(sent.length > 15);
  for (const code of sent) assert.ok(named.has(code), `the document does not explain "${code}"`);
});

const SERVER_MODES: { env: Record<string, string>; open: boolean; admin: boolean }[] = [
  { env: { SYNC_AUTH: "open" }, open: true, admin: false },
  { env: { SYNC_ADMIN_TOKEN: "x".repeat(32) }, open: false, admin: true },
  { env: {}, open: false, admin: false },
];

for (const { env, open, admin } of SERVER_MODES) {
  Deno.test(`the skill document says how this server runs (${JSON.stringify(env)})`, async () => {
    await using t = await makeApp("embedded", { ...ENV, ...env });
    for (const path of ["/SKILL.md", "/SKILL.md?full"]) {
      const { doc } = await getDoc(t.app.service.fetch, path);
      assert.equal(doc.includes("This server runs in open mode"), open);
      assert.equal(doc.includes("creating a room needs the operator's admin token"), admin);
      const code = codeBlocks(doc).map((b) => b.text).join("");
      assert.equal(code.includes("Authorization"), !open, "open mode's examples send no token");
    }
  });
}

// The checks above are only worth something if a wrong document fails them.
const BROKEN: { name: string; from: string; to: string; error: RegExp }[] = [
  {
    name: "a misspelled route",
    from: '"$BASE/rooms/$ROOM/state/batch"',
    to: '"$BASE/rooms/$ROOM/state/batches"',
    error: /answered 404/,
  },
  {
    name: "a body field the server does not know",
    from: `"done":["tokenizer"]},"if_version":'"$VERSION"'}`,
    to: `"done":["tokenizer"]},"expected_version":'"$VERSION"'}`,
    error: /answered 400.*did you mean/,
  },
  {
    name: "a POST without its Content-Type header (curl then sends a form)",
    from: `-H 'Content-Type: application/json' -d '{"meta"`,
    to: `-d '{"meta"`,
    error: /answered 415/,
  },
  {
    name: "a failure marked with the wrong status",
    from: "# → 409\ncurl -s -w '\\n' -X PUT",
    to: "# → 412\ncurl -s -w '\\n' -X PUT",
    error: /answered 409, expected 412/,
  },
  {
    name: "a conflict example that succeeds",
    from: '"value":{"steps":[],"done":[]},"if_version":1}',
    to: '"value":{"steps":[],"done":[]}}',
    error: /answered 200, expected 409/,
  },
  {
    name: "a jq path to a field the response lacks",
    from: '"VIEW_TOKEN=\\(.view_token)"',
    to: '"VIEW_TOKEN=\\(.viewToken)"',
    error: /sync\.env holds "VIEW_TOKEN=null"/,
  },
  {
    name: "a compare-and-set that turns a missing key into null",
    from: "VERSION=$(jq -r '.version // 0' plan.json)",
    to: "VERSION=$(jq -r .version plan.json)",
    error: /VERSION=\$\(…\) produced "null"/,
  },
  {
    name: "a variable no example sets",
    from: '$ROOM/messages/$TASK/claim" -H "Authorization: Bearer $TOKEN" -H',
    to: '$ROOM/messages/$TASK_ID/claim" -H "Authorization: Bearer $TOKEN" -H',
    error: /\$TASK_ID is used before any example sets it/,
  },
  {
    name: "an example without its token",
    from: '"$BASE/rooms/$ROOM/changes?after=${NEXT:-0}&wait=25" -H "Authorization: Bearer $TOKEN"',
    to: '"$BASE/rooms/$ROOM/changes?after=${NEXT:-0}&wait=25"',
    error: /answered 401/,
  },
  {
    name: "a write with the read-only view token",
    from:
      `"Authorization: Bearer $ROOM_TOKEN" -H 'Content-Type: application/json' -d '{"id":"'"$ME"'"`,
    to:
      `"Authorization: Bearer $VIEW_TOKEN" -H 'Content-Type: application/json' -d '{"id":"'"$ME"'"`,
    error: /answered 403/,
  },
  {
    name: "an example the lead runs with a worker's id",
    from:
      `agents/$ME" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"status":"idle"`,
    to:
      `agents/worker-1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"status":"idle"`,
    error: /run by the lead: .* PATCH \S+\/agents\/worker-1 answered 403/,
  },
  {
    name: "a URL a real shell would glob",
    from: `curl -s -w '\\n' "$BASE/rooms/$ROOM/state?scope=_shared"`,
    to: `curl -s -w '\\n' $BASE/rooms/$ROOM/state?scope=_shared`,
    error: /unquoted "\?"/,
  },
  {
    name: "two answers printed on one line",
    from: `curl -s -w '\\n' "$BASE/rooms/$ROOM/messages/$TASK"`,
    to: `curl -s "$BASE/rooms/$ROOM/messages/$TASK"`,
    error: /output line is not one JSON answer/,
  },
  {
    name: "a sample response with a field the server does not send",
    from: '{"scope":"worker-1","key":"progress","version":1}',
    to: '{"scope":"worker-1","key":"progress","versions":1}',
    error: /results\[2\]: no element of the response has this shape/,
  },
  {
    name: "a sample response with the wrong error code",
    from: '{"error":"forbidden"',
    to: '{"error":"not_allowed"',
    error: /\$\.error: "forbidden", not "not_allowed"/,
  },
];

for (const { name, from, to, error } of BROKEN) {
  Deno.test(`a skill document with ${name} fails the walkthrough`, async () => {
    await using good = await makeApp("embedded", ENV);
    const { doc } = await getDoc(good.app.service.fetch, "/SKILL.md?full");
    assert.equal(doc.split(from).length, 2, `the document holds ${JSON.stringify(from)} once`);
    await using t = await makeApp("embedded", ENV);
    await assert.rejects(checkDoc(doc.replace(from, to), t.app.service.fetch), error);
  });
}

Deno.test("a skill document missing a route or naming a wrong one fails the route check", async () => {
  await using t = await makeApp("embedded", ENV);
  const { doc } = await getDoc(t.app.service.fetch, "/SKILL.md?full");
  const routes = appRoutes(t);
  const line = /^PUT {4}\/rooms\/:id\/state\/batch .*\n/m;
  assert.match(doc, line);
  assert.deepEqual(routeProblems(doc.replace(line, ""), routes), [
    "missing: PUT /rooms/:id/state/batch",
  ]);
  assert.deepEqual(
    routeProblems(doc.replace("GET    /rooms/:id/changes", "GET    /rooms/:id/events"), routes),
    ["missing: GET /rooms/:id/changes", "no such route: GET /rooms/:id/events"],
  );
});
