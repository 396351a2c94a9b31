// The skill document cannot drift: its curl examples run against the app, its routes match the app's.
import assert from "node:assert/strict";
import { DRIVERS, makeApp, ROUTE_FILES } from "./helpers.ts";
import { type Command, jqFilter, parseBlock, Shell } from "./skill_shell.ts";

/** Deliberately not `http://test`: the document must carry the origin it was fetched from. */
const ORIGIN = "http://skill.example:8123";
const ENV = { SYNC_MAX_WAIT: "1" };

interface Block {
  lang: string;
  text: string;
  /** 1-based line of the opening fence in the document. */
  line: number;
}

function codeBlocks(doc: string): Block[] {
  const blocks: Block[] = [];
  let open: Block | null = null;
  for (const [i, l] of doc.split("\n").entries()) {
    const fence = /^```(\S*)\s*$/.exec(l);
    if (fence && !open) open = { lang: fence[1], text: "", line: i + 1 };
    else if (fence && open) blocks.push(open), open = null;
    else if (open) open.text += l + "\n";
  }
  assert.equal(open, null, "the document ends inside a code block");
  return blocks;
}

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

/**
 * Checks that `actual` has every field of the `sample` response the document shows, with the
 * same JSON type; codes and enums must match exactly, and `"prefix…"` strings by prefix.
 */
function sameShape(sample: unknown, actual: unknown, path = "$"): string[] {
  if (sample === null) return [];
  const type = (v: unknown) => Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
  if (type(sample) !== type(actual)) return [`${path}: ${type(actual)}, not ${type(sample)}`];
  if (Array.isArray(sample)) {
    return sample.flatMap((s, i) =>
      (actual as unknown[]).some((a) => sameShape(s, a).length === 0)
        ? []
        : [`${path}[${i}]: no element of the response has this shape: ${JSON.stringify(s)}`]
    );
  }
  if (typeof sample === "string" && sample.endsWith("…")) {
    const prefix = sample.slice(0, -1);
    return (actual as string).startsWith(prefix) ? [] : [`${path}: does not start with ${prefix}`];
  }
  if (typeof sample !== "object") return [];
  const a = actual as Record<string, unknown>;
  return Object.entries(sample as Record<string, unknown>).flatMap(([k, v]) => {
    if (!(k in a)) return [`${path}.${k}: missing from the response`];
    if (["error", "status", "type", "kind", "scope"].includes(k) && v !== a[k]) {
      return [`${path}.${k}: ${JSON.stringify(a[k])}, not ${JSON.stringify(v)}`];
    }
    return sameShape(v, a[k], `${path}.${k}`);
  });
}

/** Runs every example of the document in order against `fetch`; throws at the first wrong one. */
async function runExamples(doc: string, fetch: (req: Request) => Response | Promise<Response>) {
  const shell = new Shell(fetch);
  let previous: { block: Block; runs: number } | null = null;
  for (const block of codeBlocks(doc)) {
    const where = `example block at line ${block.line}`;
    if (block.lang === "sh") {
      const before = shell.runs.length;
      let cmds: Command[];
      try {
        cmds = parseBlock(block.text);
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
      for (const cmd of cmds) {
        try {
          await shell.run(cmd);
        } catch (err) {
          throw new Error(`${where}, line ${cmd.line}: ${(err as Error).message}`);
        }
      }
      previous = { block, runs: shell.runs.length - before };
    } else if (block.lang === "json") {
      assert.ok(previous && previous.runs > 0, `${where}: a sample response follows no example`);
      const last = shell.runs[shell.runs.length - 1];
      const problems = sameShape(JSON.parse(block.text), JSON.parse(last.text));
      assert.deepEqual(problems, [], `${where}: sample response of ${last.method} ${last.url}`);
      previous = null;
    } else {
      assert.doesNotMatch(block.text, /\bcurl\b/, `${where}: curl outside a \`\`\`sh block`);
      previous = null;
    }
  }
  return shell;
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

async function getDoc(fetch: (req: Request) => Response | Promise<Response>, path = "/SKILL.md") {
  const res = await fetch(new Request(ORIGIN + path, { headers: { accept: "*/*" } }));
  return { res, doc: await res.text() };
}

Deno.test("GET /SKILL.md serves the skill document as markdown with this server's base URL", async () => {
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
  assert.ok(doc.includes(`\nBASE=${ORIGIN}\n`), "BASE is set to this server's origin");
  assert.ok(!doc.includes("http://test"), "no other origin is baked in");
  const body = doc.slice(doc.indexOf("\n---\n", 4) + 5);
  assert.ok(body.split("\n").length < 500, "the body is under 500 lines");

  const root = await getDoc(fetch, "/");
  assert.equal(root.res.status, 200);
  assert.match(root.res.headers.get("content-type") ?? "", /^text\/markdown\b/);
  assert.equal(root.doc, doc, "a client that does not ask for HTML gets the same document at /");
});

for (const driver of DRIVERS) {
  Deno.test(`every example in the skill document runs and answers as the document says [${driver}]`, async () => {
    await using t = await makeApp(driver, ENV);
    const fetch = t.app.service.fetch;
    const { doc } = await getDoc(fetch);
    const shell = await runExamples(doc, fetch);

    assert.equal(shell.vars.get("BASE"), ORIGIN);
    for (const name of ["ROOM", "ROOM_TOKEN", "VIEW_TOKEN", "ME", "TOKEN", "TASK", "VERSION"]) {
      assert.ok(shell.vars.has(name), `an example sets $${name}`);
    }
    assert.match(shell.vars.get("ROOM_TOKEN")!, /^as_room_/);
    assert.match(shell.vars.get("VIEW_TOKEN")!, /^as_view_/);
    assert.match(shell.vars.get("TOKEN")!, /^as_agent_/);
    assert.ok(shell.runs.length >= 25, `${shell.runs.length} curl examples ran`);
    assert.ok(shell.runs.every((r) => r.url.startsWith(`${ORIGIN}/`)), "every URL starts at $BASE");
    const expected = shell.runs.filter((r) => r.expect !== undefined).map((r) => r.status);
    assert.deepEqual(expected, [409, 409], "the two examples marked → 409 are the failures");

    // Each listing shows something: an example that waits out its `wait` demonstrates nothing.
    for (const r of shell.runs.filter((r) => r.method === "GET")) {
      const body = JSON.parse(r.text);
      const list = Array.isArray(body) ? body : body.changes;
      if (list) assert.ok(list.length > 0, `GET ${r.url} (line ${r.line}) returned an empty list`);
    }

    // What the examples did is really in the room: the task was claimed, done and answered.
    const room = shell.vars.get("ROOM")!;
    const token = shell.vars.get("ROOM_TOKEN")!;
    const get = async (path: string) => {
      const res = await fetch(
        new Request(`${ORIGIN}/rooms/${room}${path}`, {
          headers: { authorization: `Bearer ${token}` },
        }),
      );
      return await res.json();
    };
    const thread = await get(`/messages?thread=${shell.vars.get("TASK")}`);
    assert.deepEqual(thread.map((m: { kind: string }) => m.kind), ["task", "result"]);
    assert.equal(thread[1].from_agent, "worker-1");
    const plan = await get("/state?key=plan");
    assert.deepEqual(plan.value.done, ["tokenizer", "parser"]);
    assert.equal(plan.version, 3);
    assert.equal((await get("/agents/worker-1")).status, "busy");
  });
}

const HAVE_TOOLS = await new Deno.Command("bash", {
  args: ["-c", "command -v curl && command -v jq"],
  stdout: "null",
  stderr: "null",
}).output().then((r) => r.success, () => false);

Deno.test({
  name: "the examples run the same in real bash, curl and jq against a real server process",
  ignore: !HAVE_TOOLS,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    const server = new Deno.Command(Deno.execPath(), {
      args: config.tasks.start.split(/\s+/).slice(1),
      cwd: new URL("..", import.meta.url).pathname,
      env: {
        ...ENV,
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
      const res = await fetch(`http://127.0.0.1:${port}/SKILL.md`);
      const doc = await res.text();
      // Each curl also reports its status on stderr; stdout stays what the examples pipe.
      const script = [
        "set -eu",
        `curl() { command curl -w '%{stderr}%{http_code} %{method}\\n' "$@"; }`,
        ...codeBlocks(doc).filter((b) => b.lang === "sh").map((b) => b.text),
      ].join("\n");
      const bash = await new Deno.Command("bash", {
        args: ["-c", script],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(bash.stderr);
      assert.ok(bash.success, `bash failed: ${stderr}`);
      const real = stderr.trim().split("\n").map((l) => l.split(" ").reverse().join(" "));

      await using t = await makeApp("embedded", ENV);
      const shell = await runExamples((await getDoc(t.app.service.fetch)).doc, t.app.service.fetch);
      assert.deepEqual(real, shell.runs.map((r) => `${r.method} ${r.status}`));
      assert.match(await Deno.readTextFile(`${dir}/me.json`), /"token":"as_agent_/);
      await reader.cancel();
    } finally {
      server.kill();
      await server.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the skill document's reference lists every route of the app and no other", async () => {
  await using t = await makeApp("embedded", ENV);
  const { doc } = await getDoc(t.app.service.fetch);
  // Middleware entries (method ALL, path /*) are not routes; `/`, `/SKILL.md` and `/health` are.
  const routes = new Set(
    t.app.service.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`),
  );
  assert.ok(routes.size >= 20, `the app has ${routes.size} routes`);
  assert.deepEqual(routeProblems(doc, routes), []);
});

Deno.test("every error code the skill document names is one the server sends, and vice versa", async () => {
  await using t = await makeApp("embedded", ENV);
  const { doc } = await getDoc(t.app.service.fetch);
  const sources = await Promise.all(
    [
      "main.ts",
      "context.ts",
      "operation.ts",
      "http.ts",
      "feed.ts",
      "idempotency.ts",
      ...ROUTE_FILES,
    ].map((f) => Deno.readTextFile(new URL(`../${f}`, import.meta.url))),
  );
  const source = sources.join("\n");
  const section = doc.slice(
    doc.indexOf("**When things go wrong**"),
    doc.search(/^## .*Reference/m),
  );
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

const MODES: { env: Record<string, string>; open: boolean; admin: boolean }[] = [
  { env: { SYNC_AUTH: "open" }, open: true, admin: false },
  { env: { SYNC_ADMIN_TOKEN: "x".repeat(32) }, open: false, admin: true },
  { env: {}, open: false, admin: false },
];

for (const { env, open, admin } of MODES) {
  Deno.test(`the skill document says how this server runs (${JSON.stringify(env)})`, async () => {
    await using t = await makeApp("embedded", { ...ENV, ...env });
    const { doc } = await getDoc(t.app.service.fetch);
    assert.equal(doc.includes("This server runs in open mode"), open);
    assert.equal(doc.includes("creating a room needs the operator's admin token"), admin);
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
    from: '"done":[]},"if_version":0}',
    to: '"done":[]},"expected_version":0}',
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
    from: "# → 409\ncurl -s -X PUT",
    to: "# → 412\ncurl -s -X PUT",
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
    from: "jq -r .view_token room.json",
    to: "jq -r .viewToken room.json",
    error: /produced "null"/,
  },
  {
    name: "a variable no example sets",
    from: '$ROOM/messages/$TASK/claim" -H "Authorization: Bearer $TOKEN" -H',
    to: '$ROOM/messages/$TASK_ID/claim" -H "Authorization: Bearer $TOKEN" -H',
    error: /\$TASK_ID is used before any example sets it/,
  },
  {
    name: "an example without its token",
    from: '"$BASE/rooms/$ROOM/changes?after=$NEXT&wait=25" -H "Authorization: Bearer $TOKEN"',
    to: '"$BASE/rooms/$ROOM/changes?after=$NEXT&wait=25"',
    error: /answered 401/,
  },
  {
    name: "a write with the read-only view token",
    from: '"$BASE/rooms/$ROOM/agents" -H "Authorization: Bearer $ROOM_TOKEN"',
    to: '"$BASE/rooms/$ROOM/agents" -H "Authorization: Bearer $VIEW_TOKEN"',
    error: /answered 403/,
  },
  {
    name: "a URL a real shell would glob",
    from: 'curl -s "$BASE/rooms/$ROOM/state?scope=_shared"',
    to: "curl -s $BASE/rooms/$ROOM/state?scope=_shared",
    error: /unquoted "\?"/,
  },
  {
    name: "a sample response with a field the server does not send",
    from: '"expires_at":"2025-01-01T12:11:00.000Z"},"rev":8}',
    to: '"expiry":"2025-01-01T12:11:00.000Z"},"rev":8}',
    error: /claim\.expiry: missing from the response/,
  },
  {
    name: "a sample response with the wrong error code",
    from: '{"error":"already_claimed"',
    to: '{"error":"claim_conflict"',
    error: /\$\.error: "already_claimed", not "claim_conflict"/,
  },
];

for (const { name, from, to, error } of BROKEN) {
  Deno.test(`a skill document with ${name} fails the example check`, async () => {
    await using good = await makeApp("embedded", ENV);
    const { doc } = await getDoc(good.app.service.fetch);
    assert.equal(doc.split(from).length, 2, `the document holds ${JSON.stringify(from)} once`);
    await using t = await makeApp("embedded", ENV);
    await assert.rejects(runExamples(doc.replace(from, to), t.app.service.fetch), error);
  });
}

Deno.test("a skill document missing a route or naming a wrong one fails the route check", async () => {
  await using t = await makeApp("embedded", ENV);
  const { doc } = await getDoc(t.app.service.fetch);
  const routes = new Set(
    t.app.service.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`),
  );
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

const WORDS: { name: string; text: string; vars?: Record<string, string>; words: string[] }[] = [
  { name: "plain words", text: "curl -s -X POST", words: ["curl", "-s", "-X", "POST"] },
  { name: "single quotes keep $ and \\", text: `echo '$A \\n'`, words: ["echo", "$A \\n"] },
  { name: "double quotes expand", text: `echo "$A/x"`, vars: { A: "1" }, words: ["echo", "1/x"] },
  { name: "escapes in double quotes", text: `echo "a\\"b\\$A"`, words: ["echo", 'a"b$A'] },
  {
    name: "spliced quotes",
    text: `-d '{"v":'"$V"'}'`,
    vars: { V: "7" },
    words: ["-d", '{"v":7}'],
  },
  { name: "line continuations", text: "curl \\\n  -s \\\n  x", words: ["curl", "-s", "x"] },
  { name: "an empty quoted word", text: "echo '' x", words: ["echo", "", "x"] },
];

for (const { name, text, vars, words } of WORDS) {
  Deno.test(`the example shell reads ${name} as bash does`, () => {
    const shell = new Shell(() => new Response());
    for (const [k, v] of Object.entries(vars ?? {})) shell.vars.set(k, v);
    const [cmd, ...more] = parseBlock(text);
    assert.equal(more.length, 0);
    assert.deepEqual(cmd.tokens.map((t) => "op" in t ? t.op : shell.expand(t.segs)), words);
  });
}

Deno.test("the example shell splits commands, substitutions and expected statuses", () => {
  const cmds = parseBlock("A=1\n# → 409\nX=$(curl -s \"u\" | jq -r '.[0].id')\ncurl u > f.json\n");
  assert.deepEqual(cmds.map((c) => [c.line, c.expect, c.tokens.length]), [
    [1, undefined, 1],
    [3, 409, 10],
    [4, undefined, 4],
  ]);
});

for (
  const [text, error] of [
    ["curl 'x", /unterminated single quote/],
    ['echo "done!"', /unsupported ! inside double quotes/],
    ["curl x?a=1", /unquoted "\?"/],
    ["a && b", /unquoted "&"/],
    ["X=$(curl x", /unterminated \$\(/],
  ] as const
) {
  Deno.test(`the example shell refuses ${JSON.stringify(text)}`, () => {
    assert.throws(() => parseBlock(text), error);
  });
}

Deno.test("the example jq evaluates paths and alternatives as jq -r does", () => {
  const input = { id: 3, a: [{ id: 1 }, { id: 2 }], n: null };
  assert.equal(jqFilter(".id", input), 3);
  assert.equal(jqFilter(".a[-1].id", input), 2);
  assert.equal(jqFilter(".[0].id", input.a), 1);
  assert.equal(jqFilter(".[-1].id // 5", []), 5);
  assert.equal(jqFilter(".n", input), null);
  assert.throws(() => jqFilter(".a[] | .id", input), /unsupported jq/);
});
