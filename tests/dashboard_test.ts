// The dashboard and landing page in headless Chromium against a real server, plus their headers.
import assert from "node:assert/strict";
import { createService } from "../main.ts";
import { appTest, testConfig } from "./helpers.ts";
import { browserTest, type Json, Server, text, WAIT } from "./dashboard_helpers.ts";

// ---------------------------------------------------------------- live updates

browserTest("the dashboard shows a message posted over the API without a reload", async (t) => {
  const { server, page } = t;
  const room = await server.room({ meta: { project: "demo" } });
  const first = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, {
    from: "planner",
    kind: "task",
    body: "write the parser",
  });
  const requests: string[] = [];
  page.on("request", (r) => requests.push(new URL(r.url()).pathname + new URL(r.url()).search));
  await t.open(room, room.view_token);
  assert.equal(await text(page, `#m${first.id} .body`), "write the parser");
  assert.match(await text(page, "#room-meta"), /"project":"demo"/);
  await page.evaluate(() => Object.assign(globalThis, { __sameDocument: true }));

  const second = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, {
    from: "coder",
    to: "planner",
    kind: "result",
    body: { parser: "done", tests: [1, 2] },
    reply_to: first.id,
  });
  await page.locator(`#m${second.id}`).waitFor(WAIT);
  assert.equal(
    await text(page, `#m${second.id} pre.body`),
    `{ "parser": "done", "tests": [1, 2] }`,
  );
  assert.match(await text(page, `#m${second.id} .msg-head`), /coder\s*→\s*planner\s*result/);
  assert.match(await text(page, `#m${second.id} .reply-to`), /↳ reply to #1 · planner: write/);
  assert.equal(await page.evaluate(() => "__sameDocument" in globalThis), true, "no reload");
  assert.equal(await page.locator(".msg").count(), 2);

  const messageLoads = requests.filter((r) => r.includes("/messages"));
  assert.deepEqual(messageLoads, [`/rooms/${room.id}/messages?before=2&limit=200`]);
  const cursors = requests.filter((r) => r.includes("/changes"))
    .map((r) => Number(new URL(r, server.base).searchParams.get("after")));
  // One event stream carries every change; a long poll would ask again after each.
  assert.ok(cursors.length >= 1, `follows the change feed: ${cursors}`);
  assert.equal(cursors[0], 1, "starts from the room's revision at load");
  assert.deepEqual([...cursors].sort((a, b) => a - b), cursors, "the cursor never goes back");
});

browserTest(
  "the dashboard shows agents joining, their status and state changes live",
  async (t) => {
    const { server, page } = t;
    const room = await server.room();
    await t.open(room, room.view_token);
    assert.equal(await page.locator("#agents-empty").isVisible(), true);

    const coder = await server.agent(room, "coder", { name: "Coder", role: "developer" });
    const agent = page.locator('[data-agent="coder"]');
    await agent.waitFor(WAIT);
    assert.match(await agent.innerText(), /Coder\s*coder\s*developer\s*idle/);
    await server.ok("PATCH", `/rooms/${room.id}/agents/coder`, coder.token, {
      status: "working",
      note: "refactoring the lexer",
    });
    await page.getByText("refactoring the lexer").waitFor(WAIT);
    assert.match(await agent.locator(".status").innerText(), /working/);

    const plan = page.locator('[data-scope="_shared"] [data-key="plan"]');
    await server.ok("PUT", `/rooms/${room.id}/state`, room.token, { key: "plan", value: ["lex"] });
    await plan.waitFor(WAIT);
    assert.match(await plan.locator(".kv-ver").innerText(), /^v1$/);
    await server.ok("PUT", `/rooms/${room.id}/state`, room.token, {
      key: "plan",
      value: ["lex", "parse"],
      if_version: 1,
    });
    await page.locator('[data-key="plan"] .kv-ver', { hasText: "v2" }).waitFor(WAIT);
    assert.equal(
      await plan.locator(".body").innerText(),
      `["lex", "parse"]`,
    );

    await server.ok("PUT", `/rooms/${room.id}/state`, coder.token, {
      scope: "coder",
      key: "scratch",
      value: "half done",
    });
    const mine = page.locator('section.scope[data-scope="coder"]');
    await mine.waitFor(WAIT);
    assert.match(await mine.locator("h3").innerText(), /Coder/, "per-agent scopes are grouped");

    await server.ok("DELETE", `/rooms/${room.id}/state`, room.token, { key: "plan" });
    await plan.waitFor({ state: "detached", ...WAIT });
    assert.equal(await page.locator('section.scope[data-scope="_shared"]').count(), 0);
    assert.equal(await page.locator(".kv").count(), 1);
  },
);

browserTest("the dashboard refreshes agents' presence every 15 seconds", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const quiet = await server.agent(room, "quiet");
  const joined = (await server.ok("GET", `/rooms/${room.id}/agents/quiet`, room.token)).last_seen;
  await page.clock.install();
  await t.open(room, room.view_token);
  const seen = page.locator('[data-agent="quiet"] .seen');
  assert.equal(await seen.getAttribute("title"), joined);
  // Reading with its own token marks the agent seen, which the change feed does not carry.
  await server.ok("GET", `/rooms/${room.id}/messages`, quiet.token);
  let lastSeen = joined;
  for (let i = 0; i < 50 && lastSeen === joined; i++) {
    await new Promise((r) => setTimeout(r, 20));
    lastSeen = (await server.ok("GET", `/rooms/${room.id}/agents/quiet`, room.token)).last_seen;
  }
  assert.ok(lastSeen > joined, "the server recorded the agent's activity");
  await page.clock.runFor(16_000);
  await page.locator(`[data-agent="quiet"] .seen[title="${lastSeen}"]`).waitFor(WAIT);
  assert.match(await seen.innerText(), /^online · seen/);
});

browserTest("the dashboard updates a claimed task in place to show its holder", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const coder = await server.agent(room, "coder");
  const task = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, {
    kind: "task",
    body: "fix the build",
  });
  await t.open(room, room.view_token);
  assert.equal(await text(page, `#m${task.id} .claim`), "unclaimed");
  await server.ok("POST", `/rooms/${room.id}/messages/${task.id}/claim`, coder.token);
  await page.locator(`#m${task.id} .claim.held`).waitFor(WAIT);
  assert.equal(await text(page, `#m${task.id} .claim`), "claimed by coder");
  assert.equal(await page.locator(".msg").count(), 1, "a claim updates the message in place");
  await server.ok("DELETE", `/rooms/${room.id}/messages/${task.id}/claim`, room.token);
  await page.locator(`#m${task.id} .claim.open`).waitFor(WAIT);
});

browserTest("a claim whose lease runs out shows as unclaimed without a reload", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const coder = await server.agent(room, "coder");
  const post = (body: unknown) =>
    server.ok("POST", `/rooms/${room.id}/messages`, room.token, { kind: "task", body });
  const [leased, held] = [await post("leased"), await post("held")];
  await server.ok("POST", `/rooms/${room.id}/messages/${leased.id}/claim`, coder.token, {
    ttl: 30,
  });
  await server.ok("POST", `/rooms/${room.id}/messages/${held.id}/claim`, coder.token);
  await page.clock.install();
  await t.open(room, room.view_token);
  assert.equal(await text(page, `#m${leased.id} .claim`), "claimed by coder");
  // Expiry is not a write: nothing comes over the change feed, the page has to see it itself.
  await page.clock.fastForward(31_000);
  await page.locator(`#m${leased.id} .claim.open`).waitFor(WAIT);
  assert.equal(await text(page, `#m${leased.id} .claim`), "unclaimed · lease of coder expired");
  assert.equal(await text(page, `#m${held.id} .claim`), "claimed by coder", "no lease, no expiry");
  // A new claim over the feed holds again, with its own lease.
  // (The server's clock did not move: only the holder may claim it again there.)
  await server.ok("POST", `/rooms/${room.id}/messages/${leased.id}/claim`, coder.token, {
    ttl: 3600,
  });
  await page.locator(`#m${leased.id} .claim.held`).waitFor(WAIT);
  assert.equal(await text(page, `#m${leased.id} .claim`), "claimed by coder");
});

browserTest("a state entry disappears when its ttl runs out, without a reload", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const put = (body: Record<string, unknown>) =>
    server.ok("PUT", `/rooms/${room.id}/state`, room.token, body);
  await put({ key: "lock:deploy", value: "coder", ttl: 20 });
  await put({ key: "plan", value: "ship" });
  await page.clock.install();
  await t.open(room, room.view_token);
  const lock = page.locator('[data-key="lock:deploy"]');
  assert.match(await lock.locator(".kv-time").innerText(), /ttl/);
  // One that comes over the change feed expires as well. (The page's clock runs ahead of the
  // server's from here on: both entries got their expiry from the server's.)
  await put({ scope: "coder", key: "lease", value: 1, ttl: 35 });
  const lease = page.locator('[data-key="lease"]');
  await lease.waitFor(WAIT);
  assert.equal(await text(page, "#state-count"), "(3)");
  await page.clock.fastForward(10_000);
  assert.equal(await lock.count(), 1, "not before its time");
  await page.clock.fastForward(11_000);
  await lock.waitFor({ state: "detached", ...WAIT });
  assert.equal(await lease.count(), 1, "the other one has 14 s to go");
  assert.equal(await text(page, "#state-count"), "(2)");
  await page.clock.fastForward(15_000);
  await page.locator('section.scope[data-scope="coder"]').waitFor({ state: "detached", ...WAIT });
  assert.deepEqual(await page.locator(".kv .kv-key").allInnerTexts(), ["plan"]);
  assert.equal(await text(page, "#state-count"), "(1)");
});

browserTest("an offline agent's status shows as its last one, not as current", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const ghost = await server.agent(room, "ghost");
  await server.ok("PATCH", `/rooms/${room.id}/agents/ghost`, ghost.token, {
    status: "busy",
    note: "migrating the schema",
  });
  await t.open(room, room.view_token);
  const agent = page.locator('[data-agent="ghost"]');
  const status = agent.locator(".status");
  assert.equal(await status.innerText(), "offline (last: busy)");
  assert.match((await status.getAttribute("class"))!, /\bstale\b/);
  assert.match((await agent.locator(".agent-note").getAttribute("class"))!, /\bstale\b/);
  assert.equal(await agent.locator(".presence.on").count(), 0);
  // Back online (it posts): its status is current again.
  await server.ok("POST", `/rooms/${room.id}/messages`, ghost.token, { body: "back" });
  await agent.locator(".presence.on").waitFor(WAIT);
  assert.equal(await status.innerText(), "busy");
  assert.doesNotMatch((await status.getAttribute("class"))!, /\bstale\b/);
}, { SYNC_ONLINE_SECONDS: "0" });

browserTest("a task shows its result and replies, and links to them", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const coder = await server.agent(room, "coder", { name: "Coder" });
  const say = (body: Record<string, unknown>) =>
    server.ok("POST", `/rooms/${room.id}/messages`, room.token, body);
  const task = await say({ from: "planner", kind: "task", body: "fix the build" });
  const filler = [];
  for (let i = 0; i < 30; i++) filler.push(await say({ body: `chatter ${i}` }));
  const question = await say({ from: "coder", kind: "question", reply_to: task.id, body: "CI?" });
  await page.setViewportSize({ width: 1280, height: 600 });
  await t.open(room, room.view_token);
  const marks = page.locator(`#m${task.id} .mark`);
  assert.deepEqual(await marks.allInnerTexts(), ["1 reply"]);

  const result = await server.ok("POST", `/rooms/${room.id}/messages`, coder.token, {
    kind: "result",
    reply_to: task.id,
    body: { ok: true },
  });
  await page.locator(`#m${task.id} .result-mark`).waitFor(WAIT);
  assert.deepEqual(await marks.allInnerTexts(), ["✓ result by Coder", "+1 reply"]);
  assert.equal(await page.locator(`#m${question.id} .mark`).count(), 0);

  // The mark scrolls to the result, even when a filter hides it, and keeps the token.
  await page.selectOption("#f-kind", "task");
  // Whether a message is in the visible part of the log.
  const inView = (id: number) =>
    `(() => { const r = document.getElementById("m${id}").getBoundingClientRect(), ` +
    `l = document.getElementById("log").getBoundingClientRect(); ` +
    `return r.height > 0 && r.top >= l.top - 1 && r.bottom <= l.bottom + 1; })()`;
  const toTop = "document.getElementById('log').scrollTop = 0";
  await page.evaluate(toTop);
  assert.equal(await page.evaluate(inView(task.id)), true);
  await page.click(`#m${task.id} .result-mark`);
  await page.locator(`#m${result.id}.flash`).waitFor(WAIT);
  assert.equal(await page.evaluate(inView(result.id)), true, "scrolled to the result");
  assert.equal(await page.inputValue("#f-kind"), "", "the filter that hid it is cleared");
  await page.evaluate(toTop);
  assert.equal(await page.evaluate(inView(question.id)), false);
  await page.click(`#m${task.id} .replies-mark`);
  await page.waitForFunction(inView(question.id), null, WAIT);
  // A message's own "#id" link scrolls too, instead of replacing the token in the address.
  await page.click(`#m${result.id} .msg-id`);
  assert.equal(new URL(page.url()).hash, `#token=${room.view_token}`);
  await page.waitForTimeout(300);
  assert.equal(await page.locator("#conn").getAttribute("data-state"), "live", "no reload");
  assert.equal(await page.locator("#fatal").isVisible(), false);
});

browserTest("a JSON body's title or summary shows first, the JSON below it", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const say = (body: unknown, kind = "task", extra: Record<string, unknown> = {}) =>
    server.ok("POST", `/rooms/${room.id}/messages`, room.token, {
      from: "p",
      kind,
      body,
      ...extra,
    });
  const task = { title: "Rewrite the lexer", files: ["src/lexer.ts"] };
  const a = await say(task);
  const b = await say({ title: "Document the syntax" });
  const steps = Array.from({ length: 30 }, (_, i) => `step ${i}`);
  const c = await say({ summary: "Lexer done", steps }, "result", { reply_to: a.id });
  const d = await say({ title: 42, note: "not a string" });
  const e = await say(["title"]);
  await t.open(room, room.view_token);
  assert.equal(await text(page, `#m${a.id} .msg-title`), "Rewrite the lexer");
  assert.deepEqual(JSON.parse(await text(page, `#m${a.id} pre.body`)), task, "JSON below");
  const first = await page.locator(`#m${a.id} .msg-title`).boundingBox();
  const json = await page.locator(`#m${a.id} pre.body`).boundingBox();
  assert.ok(first!.y < json!.y, "the title comes first");
  assert.equal(await text(page, `#m${b.id} .msg-title`), "Document the syntax");
  assert.equal(await page.locator(`#m${b.id} .body`).count(), 0, "nothing more to show");
  assert.equal(await text(page, `#m${c.id} .msg-title`), "Lexer done");
  assert.match((await page.locator(`#m${c.id} pre.body`).getAttribute("class"))!, /collapsed/);
  assert.match(await text(page, `#m${c.id} .reply-to`), /p: Rewrite the lexer$/);
  assert.equal(await page.locator(`#m${d.id} .msg-title`).count(), 0, "only a string title");
  assert.equal(await page.locator(`#m${e.id} .msg-title`).count(), 0);
});

browserTest("filters by kind and agent hide other messages", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const posts = [
    { from: "planner", kind: "task", body: "t1" },
    { from: "coder", to: "planner", kind: "result", body: "r1" },
    { from: "reviewer", kind: "message", body: "m1" },
    { from: "planner", to: "coder", kind: "message", body: "m2" },
  ];
  for (const p of posts) await server.ok("POST", `/rooms/${room.id}/messages`, room.token, p);
  await t.open(room, room.view_token);
  const shown = () => page.locator(".msg:visible .body").allInnerTexts();
  assert.deepEqual(await shown(), ["t1", "r1", "m1", "m2"]);
  await page.selectOption("#f-kind", "message");
  assert.deepEqual(await shown(), ["m1", "m2"]);
  await page.selectOption("#f-agent", "coder");
  assert.deepEqual(await shown(), ["m2"]);
  await page.selectOption("#f-kind", "");
  assert.deepEqual(await shown(), ["r1", "m2"]);
  assert.equal(await page.locator("#msg-count").textContent(), "(2 of 4)");
  await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { kind: "task", body: "t2" });
  await page.locator(".msg", { hasText: "t2" }).waitFor({ state: "attached", ...WAIT });
  assert.deepEqual(await shown(), ["r1", "m2"], "a new message outside the filter stays hidden");
});

browserTest("the dashboard follows new messages unless the human scrolled up", async (t) => {
  const { server, page } = t;
  await page.setViewportSize({ width: 1280, height: 600 });
  const room = await server.room();
  for (let i = 1; i <= 40; i++) {
    await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: `line ${i}` });
  }
  await t.open(room, room.view_token);
  const AT_BOTTOM =
    "(l => l.scrollHeight - l.scrollTop - l.clientHeight < 40)(document.getElementById('log'))";
  const atBottom = () => page.evaluate(AT_BOTTOM);
  assert.equal(await atBottom(), true, "opens at the newest message");
  const m41 = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: "41" });
  await page.locator(`#m${m41.id}`).waitFor(WAIT);
  await page.waitForFunction(AT_BOTTOM, null, WAIT);
  assert.equal(await page.locator("#jump").isVisible(), false);

  await page.evaluate("document.getElementById('log').scrollTop = 0");
  const m42 = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: "42" });
  await page.locator(`#m${m42.id}`).waitFor(WAIT);
  await page.locator("#jump").waitFor(WAIT);
  assert.equal(await text(page, "#jump"), "1 new message ↓");
  assert.equal(await page.evaluate("document.getElementById('log').scrollTop"), 0);
  await page.click("#jump");
  assert.equal(await atBottom(), true);
  assert.equal(await page.locator("#jump").isVisible(), false);
});

browserTest("the dashboard loads the newest 200 messages and older ones on request", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  for (let i = 1; i <= 230; i++) {
    await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: `n${i}` });
  }
  await t.open(room, room.view_token);
  const bodies = () => page.locator(".msg .body").allInnerTexts();
  const first = await bodies();
  assert.equal(first.length, 200);
  assert.equal(first[0], "n31");
  assert.equal(first.at(-1), "n230");
  await page.click("#older");
  await page.locator("#older").waitFor({ state: "hidden", ...WAIT });
  const all = await bodies();
  assert.deepEqual(all, Array.from({ length: 230 }, (_, i) => `n${i + 1}`));
});

browserTest("long bodies are collapsed behind an expander and JSON stays valid", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const long = Array.from({ length: 40 }, (_, i) => `line ${i + 1}`).join("\n");
  const steps = { steps: Array.from({ length: 30 }, (_, i) => ({ n: i, title: `step ${i}` })) };
  const a = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: long });
  const b = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: steps });
  await t.open(room, room.view_token);

  const body = page.locator(`#m${a.id} .body`);
  assert.match((await body.getAttribute("class"))!, /collapsed/);
  assert.equal(
    await text(page, `#m${a.id} .expander`),
    `show all (40 lines, ${long.length} chars)`,
  );
  const closed = (await body.boundingBox())!.height;
  await page.click(`#m${a.id} .expander`);
  assert.doesNotMatch((await body.getAttribute("class"))!, /collapsed/);
  assert.ok((await body.boundingBox())!.height > closed * 2);
  assert.equal(await body.textContent(), long);
  assert.equal(await text(page, `#m${a.id} .expander`), "show less");

  const json = (await page.locator(`#m${b.id} pre.body`).textContent())!;
  assert.ok(json.startsWith('{\n  "steps": [\n    { "n": 0, "title": "step 0" },\n'), json);
  assert.deepEqual(JSON.parse(json), steps);
});

// ---------------------------------------------------------------- safety

const HOSTILE = [
  `<img src=x onerror="globalThis.__pwned='img';alert(1)">`,
  `</script><script>globalThis.__pwned='script';alert(2)</script>`,
  `<svg onload="globalThis.__pwned='svg'"></svg><b>bold?</b>`,
];

browserTest("hostile bodies, names and state show as literal text and run no script", async (t) => {
  const { server, page } = t;
  const room = await server.room({ meta: { title: HOSTILE[0] } });
  const evil = await server.agent(room, "evil", { name: HOSTILE[0], role: HOSTILE[2] });
  await server.ok("PATCH", `/rooms/${room.id}/agents/evil`, evil.token, { note: HOSTILE[1] });
  const ids: number[] = [];
  for (const body of HOSTILE) {
    ids.push((await server.ok("POST", `/rooms/${room.id}/messages`, evil.token, { body })).id);
  }
  await server.ok("PUT", `/rooms/${room.id}/state`, evil.token, {
    key: HOSTILE[2],
    value: { html: HOSTILE[1] },
  });
  await t.open(room, room.view_token);
  // The same again over the live change feed, which renders through a different path.
  for (const body of HOSTILE) {
    ids.push((await server.ok("POST", `/rooms/${room.id}/messages`, evil.token, { body })).id);
  }
  await page.locator(`#m${ids.at(-1)}`).waitFor(WAIT);

  for (const [i, id] of ids.entries()) {
    assert.equal(await text(page, `#m${id} .body`), HOSTILE[i % HOSTILE.length]);
  }
  assert.match(await text(page, '[data-agent="evil"]'), /<img src=x onerror=/);
  assert.equal(await text(page, '[data-agent="evil"] .agent-note'), HOSTILE[1]);
  assert.equal(await text(page, ".kv-key"), HOSTILE[2]);
  assert.match(await text(page, "#room-meta"), /<img src=x/);
  assert.equal(
    await page.locator(":is(#msgs, #agents, #state, header) :is(img, script, svg, b)").count(),
    0,
    "no element was made from data",
  );
  assert.equal(await page.evaluate(() => "__pwned" in globalThis), false);
});

browserTest("a hostile room id in the address is escaped and runs nothing", async (t) => {
  const { server, page } = t;
  const id = `<script>globalThis.__pwned=1</script><img src=x onerror=alert(1)>`;
  await page.goto(`${server.base}/?room=${encodeURIComponent(id)}#token=as_view_x`);
  await page.locator("#fatal").waitFor(WAIT);
  assert.equal(await text(page, "#room-id"), id);
  assert.equal(await page.title(), `agent-sync · ${id}`);
  assert.match(await text(page, "#fatal-text"), /Invalid id/);
  assert.equal(await page.evaluate(() => "__pwned" in globalThis), false);
});

// ---------------------------------------------------------------- posting and access

browserTest("a human with the room token posts from the page as from_agent human", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  await server.agent(room, "coder");
  const task = await server.ok("POST", `/rooms/${room.id}/messages`, room.token, {
    from: "coder",
    kind: "question",
    body: "which database?",
  });
  await t.open(room, room.token);
  assert.equal(await page.locator("#readonly").isVisible(), false);

  await page.fill("#p-kind", "task");
  await page.selectOption("#p-to", "coder");
  await page.fill("#p-body", '{"do": "stop", "why": ["tests fail"]}');
  await page.click("#p-send");
  await page.locator(".msg.human").waitFor(WAIT);
  // The kind belongs to one message: the next one must not go out as a task again. The recipient
  // is the human's choice of whom to talk to, shown next to the box, so it stays.
  assert.equal(await page.inputValue("#p-kind"), "message", "the kind is reset after a send");
  assert.equal(await page.inputValue("#p-to"), "coder", "the chosen recipient stays");

  await page.hover(`#m${task.id}`);
  await page.click(`#m${task.id} [data-reply]`);
  assert.equal(await text(page, "#p-reply-id"), `#${task.id}`);
  await page.fill("#p-body", "use SQLite");
  await page.press("#p-body", "Control+Enter");
  await page.locator(".msg.human").nth(1).waitFor(WAIT);
  assert.equal(await page.inputValue("#p-body"), "");
  assert.equal(await page.locator("#p-error").isVisible(), false);

  // A reply goes to the replied-to sender only for that reply; then the earlier choice is back.
  await page.selectOption("#p-to", "");
  await page.hover(`#m${task.id}`);
  await page.click(`#m${task.id} [data-reply]`);
  assert.equal(await page.inputValue("#p-to"), "coder");
  await page.fill("#p-body", "and keep WAL on");
  await page.click("#p-send");
  await page.locator(".msg.human").nth(2).waitFor(WAIT);
  assert.equal(await page.inputValue("#p-to"), "", "back to everyone, as before the reply");
  await page.fill("#p-body", "thanks all");
  await page.click("#p-send");
  await page.locator(".msg.human").nth(3).waitFor(WAIT);

  const list = await server.ok("GET", `/rooms/${room.id}/messages?after=${task.id}`, room.token);
  assert.deepEqual(
    list.map((m: Json) => [m.from_agent, m.to_agent, m.kind, m.body, m.reply_to]),
    [
      ["human", "coder", "task", { do: "stop", why: ["tests fail"] }, null],
      ["human", "coder", "message", "use SQLite", task.id],
      ["human", "coder", "message", "and keep WAL on", task.id],
      ["human", null, "message", "thanks all", null],
    ],
  );
  assert.equal(await page.locator(".msg").count(), 5, "each posted message is shown once");
  assert.match(await text(page, `#m${list[1].id} .reply-to`), new RegExp(`reply to #${task.id}`));
});

browserTest("the page shows the server's error when a post is refused", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  await t.open(room, room.token);
  await page.fill("#p-kind", "bad kind!");
  await page.fill("#p-body", "hello");
  await page.click("#p-send");
  await page.locator("#p-error").waitFor(WAIT);
  assert.match(await text(page, "#p-error"), /kind/);
  assert.equal(await page.inputValue("#p-body"), "hello", "the draft is kept");
  assert.deepEqual(await server.ok("GET", `/rooms/${room.id}/messages`, room.token), []);
});

browserTest("with a view token the page cannot post and says why", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  await server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body: "hi" });
  await t.open(room, room.view_token);
  assert.equal(await page.locator("#post").isVisible(), false);
  assert.equal(await page.locator("textarea").isVisible(), false);
  assert.equal(await page.locator("[data-reply]").count(), 0);
  assert.match(await text(page, "#readonly"), /view token/);
  assert.match(await text(page, "#access"), /view only/);
  const refused = await server.request("POST", `/rooms/${room.id}/messages`, room.view_token, {
    body: "x",
  });
  assert.equal(refused.status, 403);
});

browserTest(
  "a missing, malformed or wrong token shows an error asking for a valid one",
  async (t) => {
    const { server } = t;
    const room = await server.room();
    const other = await server.room();
    const cases = [
      { name: "no token", id: room.id, token: "", expect: /Missing token[\s\S]*add #token=/ },
      { name: "malformed", id: room.id, token: "nope", expect: /Malformed token/ },
      {
        name: "another room's token",
        id: room.id,
        token: other.view_token,
        expect: /Cannot find room[\s\S]*#token=/,
      },
      { name: "unknown room", id: "no-such-room", token: room.token, expect: /Cannot find room/ },
    ];
    for (const c of cases) {
      const page = await t.newPage();
      await page.goto(`${server.base}/?room=${c.id}${c.token ? `#token=${c.token}` : ""}`);
      await page.locator("#fatal").waitFor(WAIT);
      assert.match(await text(page, "#fatal-text"), c.expect, c.name);
      assert.equal(await page.locator("#main").isVisible(), false, c.name);
      assert.equal(await page.locator("#conn").getAttribute("data-state"), "error", c.name);
      await page.close();
    }
    // The token form puts a good token in the fragment and loads the room.
    const page = await t.newPage();
    await page.goto(`${server.base}/?room=${room.id}#token=nope`);
    await page.fill("#token-input", room.view_token);
    await page.click("#token-form button");
    await page.locator("#conn[data-state=live]").waitFor(WAIT);
    assert.equal(new URL(page.url()).hash, `#token=${room.view_token}`);
  },
);

browserTest("the dashboard works without tokens in open mode", async (t) => {
  const { server, page } = t;
  const room = await server.ok("POST", "/rooms", undefined, {});
  await t.open(room);
  await page.fill("#p-body", "open hello");
  await page.click("#p-send");
  await page.locator(".msg.human").waitFor(WAIT);
  const list = await server.ok("GET", `/rooms/${room.id}/messages`);
  assert.deepEqual(list.map((m: Json) => [m.from_agent, m.body]), [["human", "open hello"]]);
}, { SYNC_AUTH: "open" });

// ---------------------------------------------------------------- resilience

browserTest(
  "the dashboard reconnects after a server restart and resumes from its cursor",
  async (t) => {
    const { page } = t;
    const dir = await Deno.makeTempDir();
    const config = testConfig();
    config.db = { ...config.db, url: `${dir}/sync.db`, driver: "embedded" };
    const first = new Server(createService(config));
    let second: Server | undefined;
    try {
      const room = await first.room();
      const before = await first.ok("POST", `/rooms/${room.id}/messages`, room.token, {
        body: "before the restart",
      });
      await page.goto(`${first.base}/?room=${room.id}#token=${room.view_token}`);
      await page.locator(`#m${before.id}`).waitFor(WAIT);
      await page.locator("#conn[data-state=live]").waitFor(WAIT);

      await first.stop();
      await first.service.close();
      await page.locator("#conn[data-state=reconnecting]").waitFor(WAIT);

      second = new Server(createService(config), first.port);
      const after = await second.ok("POST", `/rooms/${room.id}/messages`, room.token, {
        body: "after the restart",
      });
      await page.locator(`#m${after.id}`).waitFor({ timeout: 12_000 });
      await page.locator("#conn[data-state=live]").waitFor(WAIT);
      assert.deepEqual(await page.locator(".msg .body").allInnerTexts(), [
        "before the restart",
        "after the restart",
      ]);
    } finally {
      await t.browser.close();
      if (second) {
        await second.stop();
        await second.service.close();
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
);

browserTest("an expired cursor makes the dashboard reload the room", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  const post = (body: string) =>
    server.ok("POST", `/rooms/${room.id}/messages`, room.token, { body });
  const m1 = await post("one");
  await t.open(room, room.view_token);
  const changes = (url: URL) => url.pathname.endsWith("/changes");
  await page.route(changes, (route) => route.abort());
  // The open event stream ends within SYNC_STREAM_SECONDS; reconnecting is then refused.
  await post("two");
  await page.locator("#conn[data-state=reconnecting]").waitFor(WAIT);
  const later = [];
  for (const body of ["three", "four", "five", "six", "seven"]) later.push(await post(body));
  await page.unroute(changes);
  await page.locator(`#m${later.at(-1).id}`).waitFor({ timeout: 10_000 });
  await page.locator("#conn[data-state=live]").waitFor(WAIT);
  assert.deepEqual(await page.locator(".msg .body").allInnerTexts(), ["five", "six", "seven"]);
  assert.equal(await page.locator(`#m${m1.id}`).count(), 0);
}, { SYNC_MAX_MESSAGES: "3", SYNC_STREAM_SECONDS: "1" });

// ---------------------------------------------------------------- landing page

browserTest(
  "the landing page creates a room and shows its tokens and dashboard link",
  async (t) => {
    const { server, page } = t;
    await page.goto(server.base + "/");
    assert.equal(await page.title(), "agent-sync");
    assert.equal(await page.locator('a[href="/SKILL.md"]').count(), 1);
    assert.equal(await page.locator("#c-admin").count(), 0, "no admin token needed here");
    await page.click("#c-go");
    await page.locator("#created").waitFor(WAIT);
    const id = await text(page, "#r-id");
    const token = await text(page, "#r-token");
    const view = await text(page, "#r-view");
    assert.match(token, /^as_room_/);
    assert.match(view, /^as_view_/);
    assert.match(await text(page, ".warn"), /shown only once/);
    const link = await page.locator("#r-link").getAttribute("href");
    assert.equal(link, `${server.base}/?room=${id}#token=${view}`);
    assert.match(await text(page, "#r-prompt"), new RegExp(`${server.base}/SKILL\\.md`));

    assert.equal((await server.request("GET", `/rooms/${id}`, view)).status, 200);
    assert.equal(
      (await server.request("POST", `/rooms/${id}/messages`, token, { body: "hi" })).status,
      201,
    );
    await page.goto(link!);
    await page.locator("#conn[data-state=live]").waitFor(WAIT);
    assert.equal(await text(page, ".msg .body"), "hi");
  },
);

browserTest("in open mode the landing page creates a room without tokens", async (t) => {
  const { server, page } = t;
  await page.goto(server.base + "/");
  assert.equal(await page.getAttribute("#o-token", "required"), null, "a token is optional");
  await page.click("#c-go");
  await page.locator("#created").waitFor(WAIT);
  const id = await text(page, "#r-id");
  assert.match(await text(page, ".warn"), /open mode/);
  assert.equal(await page.locator("#r-token").isVisible(), false);
  assert.equal(await page.locator("#r-link").getAttribute("href"), `${server.base}/?room=${id}`);
  assert.equal((await server.request("GET", `/rooms/${id}`)).status, 200);
}, { SYNC_AUTH: "open" });

browserTest("the landing page opens an existing room by id and token", async (t) => {
  const { server, page } = t;
  const room = await server.room();
  await page.goto(server.base + "/");
  await page.fill("#o-id", room.id);
  await page.fill("#o-token", room.view_token);
  await page.click("#open button");
  await page.locator("#conn[data-state=live]").waitFor(WAIT);
  assert.equal(new URL(page.url()).searchParams.get("room"), room.id);
  assert.equal(await text(page, "#room-id"), room.id);
});

browserTest("the landing page asks for the admin token when the server needs one", async (t) => {
  const { server, page } = t;
  await page.goto(server.base + "/");
  await page.fill("#c-admin", "wrong");
  await page.click("#c-go");
  await page.locator("#c-error").waitFor(WAIT);
  assert.match(await text(page, "#c-error"), /admin token/);
  assert.equal(await page.locator("#created").isVisible(), false);
  await page.fill("#c-admin", "s3cret-admin");
  await page.click("#c-go");
  await page.locator("#created").waitFor(WAIT);
  assert.match(await text(page, "#r-token"), /^as_room_/);
}, { SYNC_ADMIN_TOKEN: "s3cret-admin" });

// ---------------------------------------------------------------- headers (in-process)

for (const [name, path] of [["dashboard", "/?room=abc"], ["landing page", "/"]]) {
  appTest(`the ${name} sends a strict Content-Security-Policy with a fresh nonce`, async (app) => {
    const get = () => app.request("GET", path, { headers: { accept: "text/html" } });
    const [a, b] = [await get(), await get()];
    assert.equal(a.status, 200);
    assert.match(a.headers.get("content-type")!, /^text\/html/);
    const csp = a.headers.get("content-security-policy")!;
    const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
    assert.ok(nonce, csp);
    for (
      const part of [
        "default-src 'none'",
        `style-src 'nonce-${nonce}'`,
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
      ]
    ) assert.ok(csp.includes(part), `${part} in ${csp}`);
    assert.ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"));
    assert.equal(a.headers.get("x-content-type-options"), "nosniff");
    assert.equal(a.headers.get("referrer-policy"), "no-referrer");
    const scripts = [...a.text.matchAll(/<(script|style)\b([^>]*)>/g)];
    assert.ok(scripts.length >= 2);
    for (const s of scripts) assert.equal(s[2], ` nonce="${nonce}"`);
    assert.doesNotMatch(a.text, /<[^>]+\son[a-z]+=/i, "no inline event handlers");
    assert.notEqual(b.headers.get("content-security-policy"), csp, "a fresh nonce per response");
  });
}

appTest("the dashboard escapes the room id from the query string", async (app) => {
  const res = await app.request("GET", `/?room=${encodeURIComponent('"><script>x()</script>')}`);
  assert.equal(res.status, 200);
  assert.ok(!res.text.includes("<script>x()"));
  assert.ok(res.text.includes("&#34;&#62;&#60;script&#62;x()&#60;/script&#62;"));
});

// ---------------------------------------------------------------- screenshot

// UPDATE_SCREENSHOT=1 saves the wide view to docs/dashboard.png, the README's picture.
browserTest("a populated room renders on a laptop and stacks on a phone", async (t) => {
  const { server, page } = t;
  const room = await server.room({
    id: "compiler-v0.3",
    meta: { project: "compiler", goal: "ship v0.3" },
  });
  const r = `/rooms/${room.id}`;
  const planner = await server.agent(room, "planner", { name: "Planner", role: "lead" });
  const lexer = await server.agent(room, "lexer-bot", { name: "Lexer", role: "coder" });
  const parser = await server.agent(room, "parser-bot", { name: "Parser", role: "coder" });
  const reviewer = await server.agent(room, "reviewer", { name: "Reviewer", role: "review" });
  const docs = await server.agent(room, "docs", { name: "Docs writer", role: "writer" });
  const say = (token: string, body: Record<string, unknown>) =>
    server.ok("POST", `${r}/messages`, token, body);
  await say(planner.token, {
    kind: "event",
    body:
      "Kickoff: v0.3 needs a new lexer, a Pratt parser and docs. Claim a task before you start.",
  });
  // The lexer's task comes last, so that the picture shows it with the mark of its result.
  const t2 = await say(planner.token, {
    kind: "task",
    body: { title: "Pratt parser for expressions", spec: "docs/grammar.md" },
  });
  const t3 = await say(planner.token, { kind: "task", body: { title: "Document the syntax" } });
  await server.ok("POST", `${r}/messages/${t2.id}/claim`, parser.token, { ttl: 3600 });
  await say(parser.token, {
    kind: "question",
    to: "planner",
    reply_to: t2.id,
    body: "Should unary minus bind tighter than **?",
  });
  await say(planner.token, {
    kind: "answer",
    to: "parser-bot",
    body: "No: -2 ** 2 is -(2 ** 2), as in Python.",
    reply_to: t2.id,
  });
  const t1 = await say(planner.token, {
    kind: "task",
    body: { title: "Rewrite the lexer", files: ["src/lexer.ts"], acceptance: "all tests green" },
  });
  await server.ok("POST", `${r}/messages/${t1.id}/claim`, lexer.token);
  const res = await say(lexer.token, {
    kind: "result",
    reply_to: t1.id,
    body: {
      summary: "Lexer rewritten with source spans",
      commit: "9f3c2e1",
      tests: { passed: 214, failed: 0 },
    },
  });
  await say(reviewer.token, {
    kind: "review",
    to: "lexer-bot",
    reply_to: res.id,
    body: "LGTM. One nit: an unterminated string should be reported at its start.",
  });
  await say(room.token, {
    from: "human",
    kind: "message",
    body: "Nice work. Keep the public API unchanged for v0.3, please.",
  });
  await server.ok("POST", `${r}/messages/${t3.id}/claim`, docs.token, { ttl: 600 });
  const put = (token: string, body: Record<string, unknown>) =>
    server.ok("PUT", `${r}/state`, token, body);
  await put(planner.token, { key: "milestone", value: "v0.3" });
  await put(planner.token, {
    key: "progress",
    value: { lexer: "done", parser: "in progress", docs: "todo" },
  });
  await put(planner.token, {
    key: "progress",
    value: { lexer: "done", parser: "in review", docs: "todo" },
  });
  await put(lexer.token, { scope: "lexer-bot", key: "branch", value: "feat/lexer-spans" });
  await put(parser.token, {
    scope: "parser-bot",
    key: "current_test",
    value: "precedence.spec.ts",
  });
  const patch = (id: string, token: string, body: Record<string, unknown>) =>
    server.ok("PATCH", `${r}/agents/${id}`, token, body);
  await patch("planner", planner.token, { status: "waiting", note: "Reviewing the task graph" });
  await patch("lexer-bot", lexer.token, { status: "done", note: "Lexer merged in 9f3c2e1" });
  await patch("parser-bot", parser.token, {
    status: "working",
    note: "Fixing unary minus precedence",
  });
  await patch("reviewer", reviewer.token, { status: "reviewing" });

  await page.setViewportSize({ width: 1280, height: 800 });
  await t.open(room, room.token);
  await page.locator(".msg.human").waitFor(WAIT);
  const png = await page.screenshot();
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [1280, 800], "a 1280x800 PNG");
  assert.equal(await page.locator(".msg").count(), 9);
  assert.equal(await page.locator(".claim.held").count(), 3);
  assert.equal(await text(page, `#m${t1.id} .result-mark`), "✓ result by Lexer");
  if (Deno.env.get("UPDATE_SCREENSHOT")) {
    await Deno.writeFile(new URL("../docs/dashboard.png", import.meta.url), png);
  }

  // On a phone the panels stack: agents, then messages, then state.
  await page.setViewportSize({ width: 390, height: 844 });
  const top = async (sel: string) => (await page.locator(sel).boundingBox())!.y;
  const [agentsY, logY, stateY] = [
    await top(".agents-panel"),
    await top(".log-panel"),
    await top(".state-panel"),
  ];
  assert.ok(agentsY < logY && logY < stateY, `stacked: ${agentsY} ${logY} ${stateY}`);
  const overflow = await page.evaluate(
    "document.documentElement.scrollWidth - document.documentElement.clientWidth",
  );
  assert.equal(overflow, 0, "nothing is wider than the phone");
  // DASHBOARD_SHOTS=<dir> also saves the laptop, phone and dark-mode views, for a person to look at.
  const shots = Deno.env.get("DASHBOARD_SHOTS");
  if (shots) {
    await Deno.writeFile(`${shots}/laptop.png`, png);
    await page.screenshot({ path: `${shots}/phone.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: `${shots}/dark.png` });
    await page.goto(server.base + "/");
    await page.click("#c-go");
    await page.locator("#created").waitFor(WAIT);
    await page.screenshot({ path: `${shots}/landing-dark.png`, fullPage: true });
  }
});
