// A strict little shell for the skill document's examples: curl, jq -r paths, variables, files.
//
// It understands exactly the subset the document may use and throws on anything else, so an
// example it accepts is one a real bash (or zsh) with curl and jq runs the same way:
//   NAME=value                       NAME=$(curl … | jq -r FILTER)     NAME=$(jq -r FILTER FILE)
//   curl [-s] [-X M] [-H 'K: v']… [-d DATA] URL [> FILE]             # → 409 (expected status)
// Words may use '…', "…" (with $VAR and \" \\ \$ escapes), $VAR, and \ line continuations.

export type Token = { op: "|" | ">" | "$(" | ")" } | { segs: { text: string; expand: boolean }[] };

export interface Command {
  tokens: Token[];
  /** 1-based line of the command within its block. */
  line: number;
  /** The status a `# → NNN` comment says the command answers with; 2xx when absent. */
  expect?: number;
}

/** Splits a code block into commands; expansion waits until each command runs. */
export function parseBlock(text: string): Command[] {
  const commands: Command[] = [];
  let cmd: Command = { tokens: [], line: 1 };
  let word: { text: string; expand: boolean }[] | null = null;
  let pendingExpect: number | undefined;
  let line = 1;
  let depth = 0;
  const add = (ch: string, expand: boolean) => {
    word ??= [];
    const last = word[word.length - 1];
    if (last && last.expand === expand) last.text += ch;
    else word.push({ text: ch, expand });
  };
  const endWord = () => {
    if (word) cmd.tokens.push({ segs: word });
    word = null;
  };
  const endCommand = () => {
    endWord();
    if (cmd.tokens.length > 0) {
      cmd.expect ??= pendingExpect;
      pendingExpect = undefined;
      commands.push(cmd);
    }
    cmd = { tokens: [], line: line + 1 };
  };
  const fail = (what: string): never => {
    throw new Error(`line ${line}: ${what}`);
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "\\") {
      if (text[i + 1] === "\n") line++;
      else add(text[i + 1] ?? fail("trailing backslash"), false);
      i += 2;
    } else if (ch === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) fail("unterminated single quote");
      add("", false);
      for (const c of text.slice(i + 1, end)) add(c, false);
      line += text.slice(i, end).split("\n").length - 1;
      i = end + 1;
    } else if (ch === '"') {
      add("", false);
      i++;
      while (text[i] !== '"') {
        const c = text[i] ?? fail("unterminated double quote");
        if (c === "\\" && '$"\\`\n'.includes(text[i + 1])) {
          if (text[i + 1] !== "\n") add(text[i + 1], false);
          i += 2;
          continue;
        }
        if (c === "`" || c === "!" || (c === "$" && text[i + 1] === "(")) {
          fail(`unsupported ${c} inside double quotes`);
        }
        if (c === "\n") line++;
        add(c, true);
        i++;
      }
      i++;
    } else if (ch === "#" && word === null) {
      const end = text.indexOf("\n", i) < 0 ? text.length : text.indexOf("\n", i);
      const m = /^#\s*(?:→|->)\s*(\d{3})\b/.exec(text.slice(i, end));
      if (m && cmd.tokens.length > 0) cmd.expect = Number(m[1]);
      else if (m) pendingExpect = Number(m[1]);
      i = end;
    } else if (ch === "\n") {
      if (depth > 0) endWord();
      else endCommand();
      line++;
      i++;
    } else if (ch === " " || ch === "\t") {
      endWord();
      i++;
    } else if (ch === "$" && text[i + 1] === "(") {
      endWord(), depth++, cmd.tokens.push({ op: "$(" }), i += 2;
    } else if (ch === ")" && depth > 0) {
      endWord(), depth--, cmd.tokens.push({ op: ")" }), i++;
    } else if ((ch === "|" || ch === ">") && text[i + 1] !== ch) {
      endWord(), cmd.tokens.push({ op: ch }), i++;
    } else if (";&<>|()`*?[]{}!".includes(ch)) {
      fail(`unquoted ${JSON.stringify(ch)} (quote it, or the shell treats it specially)`);
    } else {
      add(ch, true);
      i++;
    }
  }
  if (depth > 0) fail("unterminated $(");
  endCommand();
  return commands;
}

export interface CurlRun {
  line: number;
  method: string;
  url: string;
  status: number;
  expect?: number;
  text: string;
}

/** Runs parsed commands in order, sending each curl to `fetch`; keeps variables and files. */
export class Shell {
  vars = new Map<string, string>();
  files = new Map<string, string>();
  runs: CurlRun[] = [];

  constructor(readonly fetch: (req: Request) => Response | Promise<Response>) {}

  expand(segs: { text: string; expand: boolean }[]): string {
    return segs.map((s) =>
      s.expand
        ? s.text.replace(/\$([A-Za-z_]\w*)/g, (_, name) => {
          const value = this.vars.get(name);
          if (value === undefined) throw new Error(`$${name} is used before any example sets it`);
          return value;
        })
        : s.text
    ).join("");
  }

  async run(cmd: Command): Promise<void> {
    const words = cmd.tokens.map((t) => "op" in t ? t : this.expand(t.segs));
    const first = words[0];
    const assign = typeof first === "string" ? /^([A-Za-z_]\w*)=(.*)$/s.exec(first) : null;
    if (!assign) {
      await this.pipeline(words, cmd);
      return;
    }
    const [, name, value] = assign;
    let result = value;
    if (words.length > 1) {
      const last = words[words.length - 1];
      const sub = words[1];
      if (value !== "" || typeof sub === "string" || sub.op !== "$(" || typeof last === "string") {
        throw new Error(`cannot run assignment to ${name}: expected ${name}=$(…)`);
      }
      result = (await this.pipeline(words.slice(2, -1), cmd)).replace(/\n$/, "");
      if (result === "" || result === "null") {
        throw new Error(`${name}=$(…) produced ${JSON.stringify(result)}`);
      }
    }
    this.vars.set(name, result);
  }

  async pipeline(words: (string | { op: string })[], cmd: Command): Promise<string> {
    let out: string | null = null;
    let redirect: string | null = null;
    const stages: string[][] = [[]];
    for (const [i, w] of words.entries()) {
      if (typeof w === "string") stages[stages.length - 1].push(w);
      else if (w.op === "|") stages.push([]);
      else if (w.op === ">" && i === words.length - 2 && typeof words[i + 1] === "string") {
        redirect = words[i + 1] as string;
        break;
      } else throw new Error(`unsupported ${w.op} here`);
    }
    for (const [i, args] of stages.entries()) {
      if (args[0] === "curl" && i === 0) out = await this.curl(args.slice(1), cmd);
      else if (args[0] === "jq") out = this.jq(args.slice(1), out);
      else throw new Error(`unsupported command: ${args.join(" ")}`);
    }
    if (redirect !== null) {
      this.files.set(redirect, out ?? "");
      return "";
    }
    return out ?? "";
  }

  async curl(args: string[], cmd: Command): Promise<string> {
    let method: string | null = null;
    let url: string | null = null;
    let output: string | null = null;
    const headers = new Headers({ accept: "*/*", "user-agent": "curl/8" });
    const data: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      const value = () =>
        args[++i] ?? (() => {
          throw new Error(`${a} needs a value`);
        })();
      if (a === "-s" || a === "-S" || a === "-sS" || a === "--silent") continue;
      else if (a === "-X" || a === "--request") method = value();
      else if (a === "-H" || a === "--header") {
        const h = value();
        const colon = h.indexOf(":");
        if (colon < 1) throw new Error(`malformed header ${JSON.stringify(h)}`);
        headers.set(h.slice(0, colon).trim(), h.slice(colon + 1).trim());
      } else if (a === "-d" || a === "--data" || a === "--data-raw") {
        const d = value();
        if (a !== "--data-raw" && d.startsWith("@")) throw new Error("-d @file is not supported");
        data.push(d);
      } else if (a === "-o" || a === "--output") output = value();
      else if (a.startsWith("-")) throw new Error(`unsupported curl option ${a}`);
      else if (url === null) url = a;
      else throw new Error(`a second URL ${JSON.stringify(a)}`);
    }
    if (url === null) throw new Error("curl without a URL");
    // As curl does: -d means POST and, without a Content-Type header, a form body.
    if (data.length > 0 && !headers.has("content-type")) {
      headers.set("content-type", "application/x-www-form-urlencoded");
    }
    method ??= data.length > 0 ? "POST" : "GET";
    const body = data.length > 0 ? data.join("&") : undefined;
    const res = await this.fetch(new Request(url, { method, headers, body }));
    const text = await res.text();
    const run = { line: cmd.line, method, url, status: res.status, expect: cmd.expect, text };
    this.runs.push(run);
    const ok = cmd.expect === undefined
      ? res.status >= 200 && res.status < 300
      : res.status === cmd.expect;
    if (!ok) {
      throw new Error(
        `curl ${method} ${url} answered ${res.status}, expected ${cmd.expect ?? "2xx"}: ${text}`,
      );
    }
    if (output !== null) {
      this.files.set(output, text);
      return "";
    }
    return text;
  }

  jq(args: string[], stdin: string | null): string {
    if (args[0] !== "-r" || args.length < 2 || args.length > 3) {
      throw new Error(`unsupported jq call: jq ${args.join(" ")} (use jq -r FILTER [FILE])`);
    }
    let input = stdin;
    if (args.length === 3) {
      input = this.files.get(args[2]) ?? null;
      if (input === null) throw new Error(`jq reads ${args[2]}, which no example wrote`);
    }
    if (input === null) throw new Error("jq without input");
    const value = jqFilter(args[1], JSON.parse(input));
    return (typeof value === "string" ? value : JSON.stringify(value ?? null)) + "\n";
  }
}

/** Evaluates `PATH` or `PATH // ALTERNATIVE`, where PATH is like `.a.b[0]` or `.[-1].id`. */
export function jqFilter(filter: string, input: unknown): unknown {
  const [path, alt, ...rest] = filter.split("//").map((s) => s.trim());
  if (rest.length > 0) throw new Error(`unsupported jq filter ${filter}`);
  const value = jqPath(path, input);
  if ((value === null || value === undefined) && alt !== undefined) {
    return alt.startsWith(".") ? jqPath(alt, input) : JSON.parse(alt);
  }
  return value;
}

function jqPath(path: string, input: unknown): unknown {
  if (!/^(\.|(\.[A-Za-z_]\w*|\.?\[-?\d+\])+)$/.test(path)) {
    throw new Error(`unsupported jq path ${JSON.stringify(path)}`);
  }
  let value: unknown = input;
  for (const [, field, index] of path.matchAll(/\.([A-Za-z_]\w*)|\[(-?\d+)\]/g)) {
    if (value === null || value === undefined) return null;
    if (field !== undefined) {
      if (typeof value !== "object" || Array.isArray(value)) {
        throw new Error(`jq: cannot index ${JSON.stringify(value)} with "${field}"`);
      }
      value = (value as Record<string, unknown>)[field];
    } else {
      if (!Array.isArray(value)) throw new Error(`jq: cannot index ${JSON.stringify(value)}`);
      const n = Number(index);
      value = value[n < 0 ? value.length + n : n];
    }
  }
  return value ?? null;
}
