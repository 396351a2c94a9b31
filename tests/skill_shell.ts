// A strict little shell for the skill document's examples: curl, jq, case, files, variables.
//
// It understands exactly the subset the document may use and throws on anything else, so an
// example it accepts is one a real bash (or zsh) with curl and jq runs the same way:
//   NAME=value    NAME=$(PIPELINE)    . ./FILE    echo WORD… [>|>> FILE]    cat FILE
//   curl [-s] [-X M] [-H 'K: v']… [-d DATA] [-o FILE] [-w FORMAT] URL [>|>> FILE]
//   jq -r|-c FILTER [FILE]            A | B        A; B
//   case WORD in PATTERN[|PATTERN]) LIST ;; … esac
//   # → 409    (the status the next or same-line curl answers; `# → 200 or 404` for either)
// Words may use '…', "…" (with $VAR, ${VAR:-default} and \" \\ \$ escapes), $VAR, and \ line
// continuations.
// Where bash would carry on after a failing command, this shell throws: a curl answering
// other than its expected status (2xx when unmarked; any status when its `%{http_code}` is
// captured, since the example then decides), a jq error, or `NAME=$(…)` giving "" or "null".

type Seg = { text: string; expand: boolean };
type Op = "|" | ">" | ">>" | "$(" | ")" | ";" | ";;" | "\n";
type WordToken = { segs: Seg[]; line: number; glob?: string };
type OpToken = { op: Op; line: number };
export type Token = OpToken | WordToken | { expect: number[]; line: number; trailing: boolean };

interface Simple {
  kind: "simple";
  /** 1-based line of the command within its block. */
  line: number;
  /** The statuses a `# → NNN` comment says the command's curl answers with. */
  expect?: number[];
  /** `NAME=$(…)`: the name and the pipeline whose output it takes. */
  assign?: { name: string; sub: Pipeline };
  stages: Seg[][][];
  redirect?: { append: boolean; target: Seg[] };
}
type Pipeline = Simple;
interface Case {
  kind: "case";
  line: number;
  word: Seg[];
  arms: { patterns: Seg[][]; body: Node[] }[];
}
export type Node = Simple | Case;

/** Splits a code block into tokens; `$(…)` and case patterns are structure, not words. */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let word: Seg[] | null = null;
  let glob: string | undefined;
  let line = 1;
  let depth = 0;
  const fail = (what: string): never => {
    throw new Error(`line ${line}: ${what}`);
  };
  const add = (ch: string, expand: boolean) => {
    word ??= [];
    const last = word[word.length - 1];
    if (last && last.expand === expand) last.text += ch;
    else word.push({ text: ch, expand });
  };
  const endWord = () => {
    if (word) tokens.push({ segs: word, line, ...(glob ? { glob } : {}) });
    word = null;
    glob = undefined;
  };
  const op = (o: Op) => {
    endWord();
    tokens.push({ op: o, line });
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
      const m = /^#\s*(?:→|->)\s*(\d{3}(?:\s+or\s+\d{3})*)\b/.exec(text.slice(i, end));
      if (m) {
        const previous = tokens[tokens.length - 1];
        const trailing = previous !== undefined && !("op" in previous && previous.op === "\n");
        tokens.push({ expect: m[1].split(/\s+or\s+/).map(Number), line, trailing });
      }
      i = end;
    } else if (ch === "\n") {
      if (depth > 0) endWord();
      else op("\n");
      line++;
      i++;
    } else if (ch === " " || ch === "\t") {
      endWord();
      i++;
    } else if (ch === "$" && text[i + 1] === "(") {
      op("$("), depth++, i += 2;
    } else if (ch === ")") {
      if (depth > 0) depth--;
      op(")"), i++;
    } else if (ch === ";") {
      if (text[i + 1] === ";") op(";;"), i += 2;
      else op(";"), i++;
    } else if (ch === ">") {
      if (text[i + 1] === ">") op(">>"), i += 2;
      else op(">"), i++;
    } else if (ch === "|" && text[i + 1] !== "|") {
      op("|"), i++;
    } else if ("*?[]".includes(ch)) {
      // Only a case pattern may glob; anywhere else the parser refuses the word.
      glob ??= ch;
      add(ch, true);
      i++;
    } else if ("&<|(`{}!".includes(ch)) {
      fail(`unquoted ${JSON.stringify(ch)} (quote it, or the shell treats it specially)`);
    } else {
      add(ch, true);
      i++;
    }
  }
  if (depth > 0) fail("unterminated $(");
  endWord();
  return tokens;
}

/** Parses a code block into commands; expansion waits until each command runs. */
export function parseBlock(text: string): Node[] {
  const tokens = tokenize(text);
  let pos = 0;
  let pendingExpect: number[] | undefined;
  const peek = () => tokens[pos];
  const fail = (what: string): never => {
    throw new Error(`line ${peek()?.line ?? "end"}: ${what}`);
  };
  const isOp = (t: Token | undefined, ...ops: Op[]): t is OpToken =>
    t !== undefined && "op" in t && ops.includes(t.op);
  const isWord = (t: Token | undefined, text?: string): t is WordToken =>
    t !== undefined && "segs" in t &&
    (text === undefined || (t.segs.length === 1 && !t.glob && t.segs[0].text === text));
  const word = (what: string): Seg[] => {
    const t = peek();
    if (!isWord(t)) return fail(`expected ${what}`);
    if (t.glob) fail(`unquoted ${JSON.stringify(t.glob)} (quote it, or the shell globs it)`);
    pos++;
    return t.segs;
  };
  const skipSeparators = () => {
    for (;;) {
      const t = peek();
      if (isOp(t, "\n", ";")) pos++;
      else if (t && "expect" in t) {
        pendingExpect = t.expect;
        pos++;
      } else return;
    }
  };

  function simple(inSub: boolean): Simple {
    const cmd: Simple = { kind: "simple", line: peek().line, stages: [[]] };
    if (pendingExpect) cmd.expect = pendingExpect, pendingExpect = undefined;
    const first = peek();
    if (isWord(first) && isOp(tokens[pos + 1], "$(")) {
      const m = /^([A-Za-z_]\w*)=$/.exec(first.segs.map((s) => s.text).join(""));
      if (!m || first.segs.some((s) => !s.expand)) fail("expected NAME=$(…)");
      pos += 2;
      const sub = simple(true);
      if (!isOp(peek(), ")")) fail("unterminated $(");
      pos++;
      cmd.assign = { name: m![1], sub };
      cmd.stages = [];
    }
    for (;;) {
      const t = peek();
      if (t === undefined || isOp(t, "\n", ";", ";;") || (isOp(t, ")") && inSub)) break;
      if ("expect" in t) {
        if (!t.trailing) fail("a status comment must end a command's line");
        cmd.expect = t.expect;
        pos++;
      } else if (isOp(t, "|") && !cmd.assign) {
        cmd.stages.push([]);
        pos++;
      } else if (isOp(t, ">", ">>") && !cmd.assign && !cmd.redirect) {
        pos++;
        cmd.redirect = { append: t.op === ">>", target: word("a file after >") };
      } else if (isWord(t) && !cmd.assign && !cmd.redirect) {
        cmd.stages[cmd.stages.length - 1].push(word("a word"));
      } else fail(`unexpected ${"op" in t ? t.op : "word"} here`);
    }
    if (cmd.stages.some((s) => s.length === 0)) fail("empty command");
    return cmd;
  }

  function caseCommand(): Case {
    const line = peek().line;
    pos++;
    const subject = word("a word after case");
    if (!isWord(peek(), "in")) fail("expected in");
    pos++;
    const node: Case = { kind: "case", line, word: subject, arms: [] };
    for (;;) {
      skipSeparators();
      if (isWord(peek(), "esac")) {
        pos++;
        return node;
      }
      const patterns: Seg[][] = [];
      for (;;) {
        const t = peek();
        if (!isWord(t)) fail("expected a case pattern");
        patterns.push((t as { segs: Seg[] }).segs);
        pos++;
        if (isOp(peek(), "|")) pos++;
        else break;
      }
      if (!isOp(peek(), ")")) fail("expected ) after the case pattern");
      pos++;
      const body = list(["esac"]);
      node.arms.push({ patterns, body });
      if (isOp(peek(), ";;")) pos++;
      else if (!isWord(peek(), "esac")) fail("expected ;; or esac");
    }
  }

  function list(endWords: string[]): Node[] {
    const nodes: Node[] = [];
    for (;;) {
      skipSeparators();
      const t = peek();
      if (t === undefined || isOp(t, ";;") || endWords.some((w) => isWord(t, w))) return nodes;
      if (isOp(t, ")")) fail("unexpected )");
      nodes.push(isWord(t, "case") ? caseCommand() : simple(false));
    }
  }

  const nodes = list([]);
  if (pos < tokens.length) fail("unexpected ;; or esac");
  return nodes;
}

export interface CurlRun {
  line: number;
  method: string;
  url: string;
  status: number;
  expect?: number[];
  /** Whether the example captures the status with `-w '%{http_code}'` and decides itself. */
  captured: boolean;
  text: string;
}

/**
 * Runs parsed commands, sending each curl to `fetch`. Variables live as long as the shell;
 * `files` is the working directory, so a fresh shell can share one with an earlier one.
 */
export class Shell {
  vars = new Map<string, string>();
  runs: CurlRun[] = [];
  stdout = "";

  constructor(
    readonly fetch: (req: Request) => Response | Promise<Response>,
    readonly files: Map<string, string> = new Map(),
  ) {}

  expand(segs: Seg[]): string {
    return segs.map((s) =>
      s.expand
        ? s.text.replace(
          /\$\{([A-Za-z_]\w*):-([^}$]*)\}|\$([A-Za-z_]\w*)/g,
          (_, dname, dflt, name) => {
            if (dname !== undefined) return this.vars.get(dname) || dflt;
            const value = this.vars.get(name);
            if (value === undefined) throw new Error(`$${name} is used before any example sets it`);
            return value;
          },
        )
        : s.text
    ).join("");
  }

  /** Parses and runs a whole block, naming the line of the first command that fails. */
  async runBlock(text: string): Promise<void> {
    for (const node of parseBlock(text)) await this.run(node);
  }

  async run(node: Node): Promise<void> {
    try {
      if (node.kind === "case") await this.runCase(node);
      else await this.runSimple(node);
    } catch (err) {
      const e = err as Error;
      if (e.message.startsWith("line ")) throw e;
      throw new Error(`line ${node.line}: ${e.message}`);
    }
  }

  async runCase(node: Case): Promise<void> {
    const subject = this.expand(node.word);
    for (const arm of node.arms) {
      if (arm.patterns.some((p) => globMatch(this.expand(p), subject))) {
        for (const n of arm.body) await this.run(n);
        return;
      }
    }
  }

  async runSimple(cmd: Simple): Promise<void> {
    if (cmd.assign) {
      const result = (await this.pipeline(cmd.assign.sub, cmd.expect)).replace(/\n$/, "");
      if (result === "" || result === "null") {
        throw new Error(`${cmd.assign.name}=$(…) produced ${JSON.stringify(result)}`);
      }
      this.vars.set(cmd.assign.name, result);
      return;
    }
    const words = cmd.stages[0];
    const first = this.expand(words[0]);
    const assign = /^([A-Za-z_]\w*)=(.*)$/s.exec(first);
    if (assign && cmd.stages.length === 1 && words.length === 1 && !cmd.redirect) {
      this.vars.set(assign[1], assign[2]);
      return;
    }
    const out = await this.pipeline(cmd, cmd.expect);
    if (cmd.redirect) {
      const target = this.expand(cmd.redirect.target);
      const before = cmd.redirect.append ? this.files.get(target) ?? "" : "";
      this.files.set(target, before + out);
    } else this.stdout += out;
  }

  async pipeline(cmd: Simple, expect: number[] | undefined): Promise<string> {
    let out: string | null = null;
    for (const [i, stage] of cmd.stages.entries()) {
      const [name, ...args] = stage.map((w) => this.expand(w));
      if (name === "curl" && i === 0) out = await this.curl(args, cmd.line, expect);
      else if (name === "jq") out = this.jq(args, out);
      else if (name === "echo" && i === 0) out = args.join(" ") + "\n";
      else if (name === "cat" && i === 0 && args.length === 1) out = this.read(args[0]);
      else if (name === "." && i === 0 && args.length === 1 && cmd.stages.length === 1) {
        this.source(args[0]);
        out = "";
      } else throw new Error(`unsupported command: ${[name, ...args].join(" ")}`);
    }
    return out ?? "";
  }

  read(file: string): string {
    const text = this.files.get(file.replace(/^\.\//, ""));
    if (text === undefined) throw new Error(`${file}: no such file (no example wrote it)`);
    return text;
  }

  /** `. ./FILE` of a file holding only `NAME=value` lines whose values need no quoting. */
  source(file: string): void {
    for (const l of this.read(file).split("\n").filter((l) => l !== "")) {
      const m = /^([A-Za-z_]\w*)=([A-Za-z0-9_.:@+\/-]*)$/.exec(l);
      if (!m) throw new Error(`${file}: cannot source ${JSON.stringify(l)} as NAME=value`);
      this.vars.set(m[1], m[2]);
    }
  }

  async curl(args: string[], line: number, expect: number[] | undefined): Promise<string> {
    let method: string | null = null;
    let url: string | null = null;
    let output: string | null = null;
    let format = "";
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
      else if (a === "-w" || a === "--write-out") {
        format = value();
        if (!/^(%\{http_code\}|\\n)+$/.test(format)) {
          throw new Error(`unsupported -w format ${JSON.stringify(format)}`);
        }
      } else if (a.startsWith("-")) throw new Error(`unsupported curl option ${a}`);
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
    const captured = format.includes("%{http_code}");
    this.runs.push({ line, method, url, status: res.status, expect, captured, text });
    const ok = expect === undefined
      ? captured || (res.status >= 200 && res.status < 300)
      : expect.includes(res.status);
    if (!ok) {
      throw new Error(
        `curl ${method} ${url} answered ${res.status}, expected ${
          expect?.join(" or ") ?? "2xx"
        }: ${text}`,
      );
    }
    const written = format.replaceAll("%{http_code}", String(res.status)).replaceAll("\\n", "\n");
    if (output !== null) {
      this.files.set(output, text);
      return written;
    }
    return text + written;
  }

  jq(args: string[], stdin: string | null): string {
    const [flag, filter, file, ...more] = args;
    if ((flag !== "-r" && flag !== "-c") || filter === undefined || more.length > 0) {
      throw new Error(`unsupported jq call: jq ${args.join(" ")} (use jq -r|-c FILTER [FILE])`);
    }
    const input = file === undefined ? stdin : this.read(file);
    if (input === null) throw new Error("jq without input");
    return jqFilter(filter, JSON.parse(input)).map((v) => {
      if (flag === "-r" && typeof v === "string") return v + "\n";
      if (flag === "-r" && typeof v === "object" && v !== null) {
        throw new Error(`jq -r prints ${JSON.stringify(v)} over several lines: use jq -c`);
      }
      return JSON.stringify(v) + "\n";
    }).join("");
  }
}

/** Whether a case pattern (`*`, `?`, `[0-9]` globs) matches the whole subject. */
export function globMatch(pattern: string, subject: string): boolean {
  const re = pattern.replace(/[.+^${}()|\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${re}$`, "s").test(subject);
}

/**
 * Evaluates jq terms separated by commas, each `PATH`, `PATH // ALTERNATIVE`, or a string with
 * `\(PATH)` in it (once per value PATH yields); PATH is like `.a.b[0]`, `.[-1].id` or `.list[]`.
 * Returns every value the filter yields, in order.
 */
export function jqFilter(filter: string, input: unknown): unknown[] {
  return splitTerms(filter).flatMap((term) => {
    if (term.startsWith('"')) {
      const m = /^"([^"\\]*)(?:\\\(([^)]*)\)([^"\\]*))?"$/.exec(term);
      if (!m) throw new Error(`unsupported jq string ${term} (one \\(PATH) at most)`);
      if (m[2] === undefined) return [m[1]];
      return jqPath(m[2].trim(), input).map((v) =>
        m[1] + (typeof v === "string" ? v : JSON.stringify(v)) + m[3]
      );
    }
    const [path, alt, ...rest] = term.split("//").map((s) => s.trim());
    if (rest.length > 0) throw new Error(`unsupported jq filter ${term}`);
    const values = jqPath(path, input);
    if (alt === undefined) return values;
    const kept = values.filter((v) => v !== null && v !== false);
    if (kept.length > 0) return kept;
    return alt.startsWith(".") ? jqPath(alt, input) : [JSON.parse(alt)];
  });
}

function splitTerms(filter: string): string[] {
  const terms: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < filter.length; i++) {
    const c = filter[i];
    if (c === "\\" && quoted) current += c + filter[++i];
    else if (c === '"') quoted = !quoted, current += c;
    else if (c === "," && !quoted) terms.push(current.trim()), current = "";
    else current += c;
  }
  if (quoted) throw new Error(`unterminated string in jq filter ${filter}`);
  return [...terms, current.trim()];
}

/** The values a path yields: one, or one per element where it says `[]`. */
function jqPath(path: string, input: unknown): unknown[] {
  if (!/^(\.|(\.[A-Za-z_]\w*|\.?\[-?\d*\])+)$/.test(path)) {
    throw new Error(`unsupported jq path ${JSON.stringify(path)}`);
  }
  let values: unknown[] = [input];
  for (const [, field, index] of path.matchAll(/\.([A-Za-z_]\w*)|\[(-?\d*)\]/g)) {
    values = values.flatMap((value) => {
      if (value === null || value === undefined) {
        if (index === "") throw new Error("jq: cannot iterate over null");
        return [null];
      }
      if (field !== undefined) {
        if (typeof value !== "object" || Array.isArray(value)) {
          throw new Error(`jq: cannot index ${JSON.stringify(value)} with "${field}"`);
        }
        return [(value as Record<string, unknown>)[field] ?? null];
      }
      if (!Array.isArray(value)) throw new Error(`jq: cannot index ${JSON.stringify(value)}`);
      if (index === "") return value;
      const n = Number(index);
      return [value[n < 0 ? value.length + n : n] ?? null];
    });
  }
  return values;
}
