// The example shell reads, runs and refuses exactly what bash, curl and jq would.
import assert from "node:assert/strict";
import { globMatch, jqFilter, parseBlock, Shell } from "./skill_shell.ts";

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
  { name: "a default for an unset variable", text: 'echo "${N:-0}"', words: ["echo", "0"] },
  {
    name: "a set variable over its default",
    text: 'echo "${N:-0}"',
    vars: { N: "5" },
    words: ["echo", "5"],
  },
];

for (const { name, text, vars, words } of WORDS) {
  Deno.test(`the example shell reads ${name} as bash does`, () => {
    const shell = new Shell(() => new Response());
    for (const [k, v] of Object.entries(vars ?? {})) shell.vars.set(k, v);
    const [cmd, ...more] = parseBlock(text);
    assert.equal(more.length, 0);
    assert.equal(cmd.kind, "simple");
    if (cmd.kind === "simple") assert.deepEqual(cmd.stages[0].map((w) => shell.expand(w)), words);
  });
}

Deno.test("the example shell splits commands, substitutions, cases and expected statuses", () => {
  const nodes = parseBlock(
    "A=1; B=2\n# → 409\nX=$(curl -s \"u\" | jq -r '.[0].id')\ncurl u > f.json # → 200 or 404\n" +
      "case $X in\n  1|2) echo one ;;\n  *) echo other\n    echo more ;;\nesac\n",
  );
  assert.deepEqual(nodes.map((n) => [n.kind, n.line, n.kind === "simple" ? n.expect : undefined]), [
    ["simple", 1, undefined],
    ["simple", 1, undefined],
    ["simple", 3, [409]],
    ["simple", 4, [200, 404]],
    ["case", 5, undefined],
  ]);
  const c = nodes[4];
  assert.ok(c.kind === "case");
  assert.deepEqual(c.arms.map((a) => [a.patterns.length, a.body.length]), [[2, 1], [1, 2]]);
});

Deno.test("the example shell runs case arms, files, echo, cat and sourcing as bash does", async () => {
  const shell = new Shell(() => Response.json({ id: 7 }, { status: 409 }));
  await shell.runBlock(
    "echo 'BASE=http://x' > s.env\necho N=1 >> s.env\n. ./s.env\n" +
      "CODE=$(curl -s -o r.json -w '%{http_code}' \"$BASE/y\")\n" +
      'case $CODE in\n  2*) echo ok ;;\n  409) echo "conflict on $N"; cat r.json; echo ;;\nesac\n' +
      "jq -r '\"ID=\\(.id)\"' r.json >> s.env\ncat s.env\n",
  );
  assert.equal(shell.stdout, 'conflict on 1\n{"id":7}\nBASE=http://x\nN=1\nID=7\n');
  assert.deepEqual(shell.runs.map((r) => [r.url, r.status, r.captured]), [[
    "http://x/y",
    409,
    true,
  ]]);
});

for (
  const [text, error] of [
    ["curl 'x", /unterminated single quote/],
    ['echo "done!"', /unsupported ! inside double quotes/],
    ["curl x?a=1", /unquoted "\?"/],
    ["a && b", /unquoted "&"/],
    ["X=$(curl x", /unterminated \$\(/],
    ["case $X in\n  1) echo ;;\n", /expected a case pattern/],
    ["case $X in\n  1) echo\n  2) echo ;;\nesac", /unexpected \) here/],
    ['echo "$(jq -r .a f)"', /unsupported \$ inside double quotes/],
  ] as const
) {
  Deno.test(`the example shell refuses ${JSON.stringify(text)}`, () => {
    assert.throws(() => parseBlock(text), error);
  });
}

Deno.test("the example jq evaluates paths, alternatives, iteration and strings as jq does", () => {
  const input = { id: 3, a: [{ id: 1 }, { id: 2 }], n: null };
  assert.deepEqual(jqFilter(".id", input), [3]);
  assert.deepEqual(jqFilter(".a[-1].id", input), [2]);
  assert.deepEqual(jqFilter(".[0].id", input.a), [1]);
  assert.deepEqual(jqFilter('.[0].id // "none"', []), ["none"]);
  assert.deepEqual(jqFilter(".n", input), [null]);
  assert.deepEqual(jqFilter(".a[]", input), input.a);
  assert.deepEqual(jqFilter('"X=\\(.[].id)"', input.a), ["X=1", "X=2"]);
  assert.deepEqual(jqFilter('"X=\\(.[].id)"', []), []);
  assert.deepEqual(jqFilter('"A=\\(.id)", "B=\\(.n)"', input), ["A=3", "B=null"]);
  assert.throws(() => jqFilter(".a[] | .id", input), /unsupported jq/);
  assert.throws(() => jqFilter(".[0]", input), /cannot index/);
});

Deno.test("case patterns glob as in bash", () => {
  assert.ok(globMatch("[0-9]*", "17"));
  assert.ok(!globMatch("[0-9]*", "none"));
  assert.ok(globMatch("2*", "201"));
  assert.ok(globMatch("*", ""));
  assert.ok(!globMatch("409", "4090"));
});
