// The linearizability checker on handcrafted histories, and a short run of `deno task torture`.
import assert from "node:assert/strict";
import {
  checkLinearizable,
  type Operation,
  REGISTER,
  type RegisterInput,
  type RegisterOutput,
} from "../bench/linearizability.ts";
import { runTorture } from "../bench/torture.ts";

type Op = Operation<RegisterInput, RegisterOutput>;

const read = (call: number, ret: number, version: number, value: unknown): Op => ({
  input: { kind: "read" },
  output: { kind: "read", version, value },
  call,
  ret,
});
const cas = (call: number, ret: number, ifVersion: number, value: unknown): Op => ({
  input: { kind: "cas", ifVersion, value },
  output: { kind: "ok", version: ifVersion + 1 },
  call,
  ret,
});
const refused = (
  call: number,
  ret: number,
  ifVersion: number,
  value: unknown,
  version: number,
  current: unknown,
): Op => ({
  input: { kind: "cas", ifVersion, value },
  output: { kind: "conflict", version, value: current },
  call,
  ret,
});
const lost = (call: number, ifVersion: number, value: unknown): Op => ({
  input: { kind: "cas", ifVersion, value },
  output: undefined,
  call,
  ret: Infinity,
});

const HISTORIES: { name: string; history: Op[]; linearizable: boolean }[] = [
  {
    name: "two racing compare-and-sets, one refused naming the winner, then a read",
    history: [cas(0, 10, 0, "a"), refused(5, 15, 0, "b", 1, "a"), read(20, 25, 1, "a")],
    linearizable: true,
  },
  {
    name: "two compare-and-sets from version 0 that both won, one after the other",
    history: [cas(0, 10, 0, "a"), cas(20, 30, 0, "b")],
    linearizable: false,
  },
  {
    name: "a read overlapping a write may see it",
    history: [read(0, 100, 1, "a"), cas(10, 20, 0, "a")],
    linearizable: true,
  },
  {
    name: "a read that returned before a write began cannot see it",
    history: [read(0, 5, 1, "a"), cas(10, 20, 0, "a")],
    linearizable: false,
  },
  {
    name: "a read after a finished write cannot miss it",
    history: [cas(0, 10, 0, "a"), read(20, 30, 0, null)],
    linearizable: false,
  },
  {
    name: "a write whose answer was lost may have happened",
    history: [lost(0, 0, "a"), read(20, 30, 1, "a")],
    linearizable: true,
  },
  {
    name: "a write whose answer was lost may not have happened",
    history: [lost(0, 0, "a"), read(20, 30, 0, null), cas(40, 50, 0, "b")],
    linearizable: true,
  },
  {
    name: "a write whose answer was lost cannot be seen and then unseen",
    history: [lost(0, 0, "a"), read(20, 30, 1, "a"), read(40, 50, 0, null)],
    linearizable: false,
  },
  {
    name: "a refusal naming a value nobody wrote (a late replay that wrote and said 409)",
    history: [refused(0, 10, 0, "a", 1, "a"), read(20, 30, 1, "a")],
    linearizable: false,
  },
  {
    name: "eight overlapping writes that only fit in one order, listed in reverse",
    history: Array.from({ length: 8 }, (_, i) => cas(i, 100, 7 - i, `v${7 - i}`)),
    linearizable: true,
  },
  {
    name: "eight overlapping writes where two claim the same version",
    history: [
      ...Array.from({ length: 7 }, (_, i) => cas(i, 100, i, `v${i}`)),
      cas(8, 100, 3, "again"),
    ],
    linearizable: false,
  },
];

for (const { name, history, linearizable } of HISTORIES) {
  Deno.test(`the linearizability checker: ${name}`, () => {
    const r = checkLinearizable(REGISTER, history);
    assert.equal(r.result, linearizable ? "linearizable" : "not linearizable");
  });
}

Deno.test("the linearizability checker says undecided when its step budget runs out", () => {
  const history = Array.from({ length: 8 }, (_, i) => cas(i, 100, 7 - i, `v${7 - i}`));
  assert.equal(checkLinearizable(REGISTER, history, 3).result, "undecided");
});

// Before issue 8's idempotency fix this failed: a keyed write interrupted by kill -9 left its key
// pending, so its retry answered 409 idempotency_in_progress for 30 s, then wrote a second time.
Deno.test({
  name: "under kill -9 and keyed retries, two servers keep every write once, revisions " +
    "gap-free, compare-and-set linearizable and one claimer per task",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { figures, violations } = await runTorture({
      seconds: 3,
      clients: 12,
      keys: 3,
      kills: 2,
      retryBoundMs: 5_000,
    });
    assert.equal(figures["kill -9"], 2);
    assert.equal(figures["duplicates found"], 0);
    assert.deepEqual(violations, [], JSON.stringify(figures, null, 2));
  },
});
