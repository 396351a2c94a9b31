// Two agents following the skill document literally: each block in a fresh shell, in order.
import assert from "node:assert/strict";
import { type CurlRun, Shell } from "./skill_shell.ts";

export type Fetch = (req: Request) => Response | Promise<Response>;
export type Agent = "lead" | "worker";

export interface Block {
  lang: string;
  /** Who runs it in the walkthrough: the fence's words after the language; none is everyone. */
  who: Agent[];
  text: string;
  /** 1-based line of the opening fence in the document. */
  line: number;
}

export function codeBlocks(doc: string): Block[] {
  const blocks: Block[] = [];
  let open: Block | null = null;
  for (const [i, l] of doc.split("\n").entries()) {
    const fence = /^```(\S*)((?: \S+)*)\s*$/.exec(l);
    if (fence && !open) {
      const who = fence[2].trim().split(" ").filter((w) => w !== "");
      for (const w of who) assert.ok(w === "lead" || w === "worker", `line ${i + 1}: ${w}?`);
      open = { lang: fence[1], who: who as Agent[], text: "", line: i + 1 };
    } else if (fence && open) blocks.push(open), open = null;
    else if (open) open.text += l + "\n";
  }
  assert.equal(open, null, "the document ends inside a code block");
  return blocks;
}

/**
 * Checks that `actual` has every field of the `sample` response the document shows, with the
 * same JSON type; codes and enums must match exactly, and `"prefix…"` strings by prefix.
 */
export function sameShape(sample: unknown, actual: unknown, path = "$"): string[] {
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

/** One agent running one block in a fresh shell. */
export interface Step {
  agent: Agent;
  block: Block;
  runs: CurlRun[];
  stdout: string;
  vars: Map<string, string>;
}

export interface Flow {
  steps: Step[];
  /** Each agent's working directory. */
  files: Record<Agent, Map<string, string>>;
}

export interface FlowOptions {
  /** The fetch an agent's curl goes through (to stage a race); the app's by default. */
  fetchFor?: (agent: Agent, flow: Flow) => Fetch;
  /** Skips blocks, as an agent that did not get there would. */
  skip?: (block: Block, agent: Agent) => boolean;
  /** Stops after this step. */
  stopAfter?: (step: Step) => boolean;
  /** Throws at the first step with a problem (see stepProblems). */
  strict?: boolean; /** Files in the lead's directory before it starts, such as the admin token. */
  leadFiles?: Record<string, string>;
}

/** The variables a sync.env-style file sets, the last line of a name winning. */
export function envOf(text: string | undefined): Record<string, string> {
  return Object.fromEntries(
    (text ?? "").split("\n").filter((l) => l.includes("=")).map((l) => {
      const i = l.indexOf("=");
      return [l.slice(0, i), l.slice(i + 1)];
    }),
  );
}

/**
 * A lead and a worker follow the document literally: each ```sh block runs, in document order,
 * for each agent it names (both when it names none; the lead first), in a fresh shell in that
 * agent's own directory. The ```text worker block is the worker saving what the lead's last
 * invite printed as its sync.env. A ```json block is compared with the answer before it.
 */
export async function runFlow(doc: string, fetch: Fetch, options: FlowOptions = {}): Promise<Flow> {
  const flow: Flow = {
    steps: [],
    files: { lead: new Map(Object.entries(options.leadFiles ?? {})), worker: new Map() },
  };
  let previous = null as Step | null;
  for (const block of codeBlocks(doc)) {
    const where = `block at line ${block.line}`;
    if (block.lang === "sh") {
      for (const agent of block.who.length > 0 ? block.who : ["lead", "worker"] as const) {
        if (options.skip?.(block, agent)) continue;
        const shell = new Shell(options.fetchFor?.(agent, flow) ?? fetch, flow.files[agent]);
        const step: Step = { agent, block, runs: shell.runs, stdout: "", vars: shell.vars };
        try {
          await shell.runBlock(block.text);
        } catch (err) {
          throw new Error(`${where}, run by the ${agent}: ${(err as Error).message}`);
        } finally {
          step.stdout = shell.stdout;
        }
        flow.steps.push(step);
        previous = step;
        const problems = options.strict ? stepProblems(step, flow) : [];
        if (problems.length > 0) throw new Error(problems.join("\n"));
        if (options.stopAfter?.(step)) return flow;
      }
    } else if (block.lang === "text" && block.who.includes("worker")) {
      const invite = flow.steps.findLast((s) => s.agent === "lead" && s.vars.has("AGENT"));
      assert.ok(invite, `${where}: the worker joins before the lead invited anyone`);
      const file = flow.files.lead.get(`${invite.vars.get("AGENT")}.env`);
      assert.ok(file, `${where}: the lead's invite wrote no ${invite.vars.get("AGENT")}.env`);
      const names = (text: string) => text.trim().split("\n").map((l) => l.split("=")[0]);
      assert.deepEqual(names(file), names(block.text), `${where}: the invite gives these lines`);
      flow.files.worker.set("sync.env", file);
      previous = null;
    } else if (block.lang === "json") {
      const last: CurlRun | undefined = previous?.runs[previous.runs.length - 1];
      assert.ok(last, `${where}: a sample response follows no example`);
      const problems = sameShape(JSON.parse(block.text), JSON.parse(last.text));
      assert.deepEqual(problems, [], `${where}: sample response of ${last.method} ${last.url}`);
      previous = null;
    } else {
      assert.doesNotMatch(block.text, /\bcurl\b/, `${where}: curl outside a \`\`\`sh block`);
      previous = null;
    }
  }
  return flow;
}

/**
 * What an agent following the flow could be misled by: a status the document does not expect
 * (every answer is 2xx unless a `# → NNN` comment says otherwise, also where the block checks
 * the status itself), a variable saved as null or empty, a request to a null id, answers that
 * run together on one line, and a listing with nothing in it (it demonstrates nothing).
 */
export function stepProblems({ agent, block, runs, stdout }: Step, flow: Flow): string[] {
  const problems: string[] = [];
  const where = `${agent}, block at line ${block.line}`;
  for (const r of runs) {
    const ok = r.expect ? r.expect.includes(r.status) : r.status >= 200 && r.status < 300;
    if (!ok) {
      problems.push(
        `${where}, line ${r.line}: ${r.method} ${r.url} answered ${r.status}, expected ${
          r.expect?.join(" or ") ?? "2xx"
        }: ${r.text}`,
      );
    }
    if (/\/(null|undefined)?\//.test(new URL(r.url).pathname + "/")) {
      problems.push(`${where}: a request to ${r.url}`);
    }
    if (r.method === "GET" && r.status === 200) {
      const body = JSON.parse(r.text);
      const list = Array.isArray(body) ? body : body.changes;
      if (list?.length === 0) problems.push(`${where}: GET ${r.url} listed nothing`);
    }
  }
  if (stdout !== "" && !stdout.endsWith("\n")) problems.push(`${where}: output ends mid-line`);
  for (const l of stdout.split("\n").filter((l) => /^[{[]/.test(l))) {
    try {
      JSON.parse(l);
    } catch {
      problems.push(`${where}: output line is not one JSON answer: ${l}`);
    }
  }
  for (const [name, text] of flow.files[agent]) {
    if (!name.endsWith(".env")) continue;
    for (const l of text.split("\n").filter((l) => l !== "")) {
      if (/=(null)?$/.test(l)) problems.push(`${where}: ${name} holds ${JSON.stringify(l)}`);
    }
  }
  return problems;
}
