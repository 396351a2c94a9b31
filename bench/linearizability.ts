// A linearizability checker for recorded histories (WGL search, as in Knossos and Porcupine).

/**
 * One operation as a client saw it: what it asked, what it got, and when. `output` is undefined
 * when the answer was lost (the server died): the operation may or may not have taken effect,
 * at any instant after `call`, so its `ret` is `Infinity`.
 */
export interface Operation<I, O> {
  input: I;
  output: O | undefined;
  call: number;
  ret: number;
}

/**
 * A sequential specification. `step` lists every state the operation may leave behind when run
 * alone on `state` and answering `output` (undefined: any answer); an empty list means the
 * answer is impossible there. `key` names a state so that equal states are searched once.
 */
export interface Model<S, I, O> {
  init: S;
  step(state: S, input: I, output: O | undefined): S[];
  key(state: S): string;
}

export interface CheckResult {
  result: "linearizable" | "not linearizable" | "undecided";
  /** Search steps taken. */
  steps: number;
}

interface Entry {
  id: number;
  time: number;
  /** Set on a call entry: its return entry. */
  match?: Entry;
  prev?: Entry;
  next?: Entry;
}

/**
 * Decides whether some total order of `history`, consistent with real time (an operation that
 * returned before another was called comes first), is a legal run of `model`.
 * The search is the Wing–Gong algorithm with Lowe's memo of (linearized set, state), over sets
 * of states so that operations with lost answers may or may not have happened. It gives up as
 * "undecided" after `maxSteps`.
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: Operation<I, O>[],
  maxSteps = 5_000_000,
): CheckResult {
  // Calls sort before returns at the same instant: such operations count as concurrent.
  const entries: Entry[] = [];
  history.forEach((op, id) => {
    const ret: Entry = { id, time: op.ret };
    entries.push({ id, time: op.call, match: ret }, ret);
  });
  entries.sort((a, b) => a.time - b.time || Number(!a.match) - Number(!b.match));
  const head: Entry = { id: -1, time: -Infinity };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }

  const lift = (e: Entry) => {
    e.prev!.next = e.next;
    e.next!.prev = e.prev;
    const m = e.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (e: Entry) => {
    const m = e.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    e.prev!.next = e;
    e.next!.prev = e;
  };
  const statesKey = (states: S[]) => states.map(model.key).sort().join("\u0000");

  const linearized = new Uint32Array(Math.ceil(history.length / 32) + 1);
  const seen = new Set<string>();
  const calls: { entry: Entry; states: S[] }[] = [];
  let states: S[] = [model.init];
  let entry = head.next;
  let steps = 0;
  while (head.next) {
    if (++steps > maxSteps) return { result: "undecided", steps };
    if (entry!.match) {
      const op = history[entry!.id];
      const next = new Map<string, S>();
      for (const s of states) {
        for (const t of model.step(s, op.input, op.output)) next.set(model.key(t), t);
      }
      let advanced = false;
      if (next.size > 0) {
        const nextStates = [...next.values()];
        linearized[entry!.id >> 5] ^= 1 << (entry!.id & 31);
        const memo = `${linearized.join(",")}|${statesKey(nextStates)}`;
        if (!seen.has(memo)) {
          seen.add(memo);
          calls.push({ entry: entry!, states });
          states = nextStates;
          lift(entry!);
          entry = head.next;
          advanced = true;
        } else {
          linearized[entry!.id >> 5] ^= 1 << (entry!.id & 31);
        }
      }
      if (!advanced) entry = entry!.next;
    } else {
      // A return reached with its call not linearized: undo the last choice.
      const top = calls.pop();
      if (!top) return { result: "not linearizable", steps };
      entry = top.entry;
      states = top.states;
      linearized[entry.id >> 5] ^= 1 << (entry.id & 31);
      unlift(entry);
      entry = entry.next;
    }
  }
  return { result: "linearizable", steps };
}

// ------------------------------------------------------------ a register with a version

/** A state key: absent is version 0 with value null. Versions grow by one per write. */
export interface Register {
  version: number;
  value: unknown;
}

export type RegisterInput =
  | { kind: "read" }
  | { kind: "cas"; ifVersion: number; value: unknown };

/** A read's answer (`version` 0 when absent), a CAS that wrote, a CAS refused with `current`. */
export type RegisterOutput =
  | { kind: "read"; version: number; value: unknown }
  | { kind: "ok"; version: number }
  | { kind: "conflict"; version: number; value: unknown };

/** `PUT /rooms/:id/state` with `if_version` and `GET /rooms/:id/state?key=` on one key. */
export const REGISTER: Model<Register, RegisterInput, RegisterOutput> = {
  init: { version: 0, value: null },
  key: (s) => `${s.version}:${JSON.stringify(s.value)}`,
  step(s, input, output) {
    if (input.kind === "read") {
      if (!output) return [s];
      return output.kind === "read" && same(s, output) ? [s] : [];
    }
    const written = { version: input.ifVersion + 1, value: input.value };
    const matches = s.version === input.ifVersion;
    if (!output) return matches ? [s, written] : [s];
    if (output.kind === "ok") return matches && output.version === written.version ? [written] : [];
    if (output.kind === "conflict") return !matches && same(s, output) ? [s] : [];
    return [];
  },
};

function same(s: Register, o: { version: number; value: unknown }): boolean {
  return s.version === o.version && JSON.stringify(s.value) === JSON.stringify(o.value);
}
