// State: a versioned key-value store per room and scope, with compare-and-set and batches.
import type { Context } from "npm:hono@^4.13.19";
import { Buffer } from "node:buffer";
import { z } from "npm:zod@^4.6.7";
import { type Actor, type Api, type Env, SHARED } from "../context.ts";
import { keyed } from "../idempotency.ts";
import { check, checkSize, HttpError, json, queryInt } from "../http.ts";
import { StateBatchResultSchema, StateDeletedSchema, StateEntrySchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";

/** A state listing's cursor: opaque to clients, the last scope and key of the page. */
function encodeCursor(c: q.StateCursor): string {
  return Buffer.from(JSON.stringify([c.scope, c.key])).toString("base64url");
}

function decodeCursor(text: string): q.StateCursor | null {
  try {
    const v = JSON.parse(Buffer.from(text, "base64url").toString());
    if (Array.isArray(v) && v.length === 2 && v.every((s) => typeof s === "string")) {
      return { scope: v[0], key: v[1] };
    }
  } catch { /* not a cursor */ }
  return null;
}

export function stateOperations(api: Api) {
  const { id, key, limit, ttl } = api.in;
  const roomPath = z.object({ id });
  const cursor = z.string().transform((s, ctx) => {
    const c = decodeCursor(s);
    if (!c) {
      ctx.addIssue({ code: "custom", message: "is not a cursor this server gave out" });
      return z.NEVER;
    }
    return c;
  });

  const putFields = {
    scope: id.optional(),
    key,
    value: json,
    if_version: z.number().int().min(0).optional(),
    ttl: ttl.optional(),
  };
  const deleteFields = {
    scope: id.optional(),
    key,
    if_version: z.number().int().min(1).optional(),
  };
  // Built once: constructing a zod schema costs ~50 µs, more than the rest of the validation.
  const putBody = z.strictObject(putFields);
  const deleteBody = z.strictObject(deleteFields);
  const batchDelete = z.strictObject({ ...deleteFields, delete: z.literal(true) });

  /** Refuses writes to another registered agent's own scope. */
  async function checkScope(c: Context<Env>, roomId: string, actor: Actor, scope: string) {
    if (actor.kind !== "agent" || scope === SHARED || scope === actor.agentId) return;
    if (await q.getAgent(c.get("db"), roomId, scope)) {
      throw new HttpError(
        403,
        "forbidden",
        `Scope "${scope}" belongs to agent "${scope}": only it (or the room token) may write it`,
      );
    }
  }

  async function conflict(
    c: Context<Env>,
    roomId: string,
    scope: string,
    k: string,
    ifVersion: number | undefined,
  ) {
    const d = c.get("db");
    const current = await q.getState(d, roomId, scope, k);
    if (ifVersion === undefined && !current) {
      if (!(await q.getRoomAuth(d, roomId))) return api.noRoom(roomId);
      return api.keysFull(roomId);
    }
    if (ifVersion === 0 && !current && (await q.countState(d, roomId)) >= api.config.maxKeys) {
      return api.keysFull(roomId);
    }
    const is = current ? `is at version ${current.version}` : "does not exist";
    const wanted = ifVersion === 0 ? "expected it not to exist" : `expected version ${ifVersion}`;
    return new HttpError(
      409,
      "version_conflict",
      `Key "${k}" in scope "${scope}" ${is}; ${wanted}`,
      {
        current: current
          ? { version: current.version, value: current.value, rev: current.rev }
          : null,
      },
    );
  }

  return [
    operation({
      name: "getState",
      method: "GET",
      path: "/rooms/:id/state",
      summary: "Read one key (with `key`), or list keys a page at a time",
      description:
        "With `key`: the entry (scope defaults to `_shared`). Without: live entries in (scope, key) order, at most `limit` (default and maximum SYNC_MAX_LIMIT) and at most SYNC_MAX_PAGE_BYTES of values; when more remain, the `X-Next-Cursor` header (and a `Link` rel=next) says where to continue: pass it as `cursor`.",
      who: "read",
      params: roomPath,
      query: z.strictObject({
        scope: id.optional(),
        key: key.optional(),
        limit,
        cursor: cursor.optional(),
      }),
      answers: {
        200: {
          description: "One entry (with `key`) or a page of entries",
          schema: z.union([StateEntrySchema, z.array(StateEntrySchema)]),
        },
      },
      errors: [401, 404],
      handler: async (c, { params: { id: roomId }, query: p }) => {
        const d = c.get("db");
        if (p.key !== undefined) {
          const scope = p.scope ?? SHARED;
          const entry = await q.getState(d, roomId, scope, p.key);
          if (!entry) throw api.missing(`key "${p.key}" in scope "${scope}"`);
          return c.json(entry);
        }
        const page = await q.listStatePage(d, roomId, {
          scope: p.scope,
          after: p.cursor,
          limit: Math.max(1, Math.min(api.config.maxLimit, p.limit ?? api.config.maxLimit)),
          maxBytes: api.config.maxPageBytes,
        });
        if (page.next) {
          const next = encodeCursor(page.next);
          const url = new URL(c.req.url);
          url.searchParams.set("cursor", next);
          c.header("X-Next-Cursor", next);
          c.header("Link", `<${url.pathname}${url.search}>; rel="next"`);
        }
        return c.json(page.entries);
      },
    }),

    operation({
      name: "putState",
      method: "PUT",
      path: "/rooms/:id/state",
      summary: "Write a key; `if_version` makes it compare-and-set (0: only if absent)",
      description:
        "A stale `if_version` answers 409 with the current version and value: re-read, re-apply, retry. `ttl` (seconds) expires the key.",
      who: "write",
      params: roomPath,
      body: putBody,
      example: { key: "plan", value: { step: 2 }, if_version: 1 },
      answers: { 200: { description: "The entry as written", schema: StateEntrySchema } },
      errors: [401, 403, 404, 409, 413],
      handler: async (c, { params: { id: roomId }, body: b, access: { actor } }) => {
        checkSize("value", b.value, api.config.maxValueBytes);
        const scope = b.scope ?? SHARED;
        await checkScope(c, roomId, actor, scope);
        const entry = await q.putState(
          c.get("db"),
          roomId,
          {
            scope,
            key: b.key,
            value: b.value,
            ifVersion: b.if_version,
            expiresAt: api.expiry(b.ttl),
          },
          api.config.maxKeys,
          keyed(c),
        );
        if (!entry) throw await conflict(c, roomId, scope, b.key, b.if_version);
        api.written(roomId, entry.rev, b.ttl !== undefined);
        return api.answer(c, "state_put", [{ entry, deleted: false }]);
      },
    }),

    operation({
      name: "deleteState",
      method: "DELETE",
      path: "/rooms/:id/state",
      summary: "Delete a key; `if_version` makes it conditional",
      description:
        "The fields go in a JSON body or, for clients that cannot send a DELETE body, in the query.",
      who: "write",
      params: roomPath,
      body: deleteBody,
      bodyFromQuery: z.strictObject({
        scope: id.optional(),
        key,
        if_version: queryInt.pipe(z.number().min(1, "must be at least 1")).optional(),
      }),
      example: { key: "lock", if_version: 3 },
      answers: { 200: { description: "Deleted", schema: StateDeletedSchema } },
      errors: [401, 403, 404, 409],
      handler: async (c, { params: { id: roomId }, body: b, access: { actor } }) => {
        const scope = b.scope ?? SHARED;
        await checkScope(c, roomId, actor, scope);
        const d = c.get("db");
        const entry = await q.deleteState(d, roomId, {
          scope,
          key: b.key,
          ifVersion: b.if_version,
        }, keyed(c));
        if (!entry) {
          if (!(await q.getState(d, roomId, scope, b.key))) {
            throw api.missing(`key "${b.key}" in scope "${scope}"`);
          }
          throw await conflict(c, roomId, scope, b.key, b.if_version);
        }
        api.written(roomId, entry.rev);
        return api.answer(c, "state_deleted", [{ entry, deleted: true }]);
      },
    }),

    operation({
      name: "batchState",
      method: "PUT",
      path: "/rooms/:id/state/batch",
      summary: "Write or delete up to 100 keys all or nothing",
      description:
        'Each op is a put (`key`, `value`, optional `scope`, `if_version`, `ttl`) or a delete (`"delete": true`). One failed condition writes nothing and names the op.',
      who: "write",
      params: roomPath,
      body: z.strictObject({
        ops: z.array(z.record(z.string(), z.unknown()))
          .min(1, "must hold at least one operation")
          .max(100, "must hold at most 100 operations"),
      }),
      example: {
        ops: [{ key: "a", value: 1, if_version: 0 }, { key: "b", delete: true }],
      },
      answers: {
        200: { description: "Every entry as written", schema: StateBatchResultSchema },
      },
      errors: [401, 403, 404, 409, 413],
      handler: async (c, { params: { id: roomId }, body: b, access: { actor } }) => {
        const ops: q.StateOp[] = [];
        const seenKeys = new Set<string>();
        for (const [i, raw] of b.ops.entries()) {
          // Each op is a put or, with "delete": true, a delete; checked alone so errors name it.
          const op = "delete" in raw
            ? check("body", batchDelete, raw, `ops[${i}]`)
            : check("body", putBody, raw, `ops[${i}]`);
          const scope = op.scope ?? SHARED;
          const k = `${scope}\n${op.key}`;
          if (seenKeys.has(k)) {
            throw new HttpError(
              400,
              "invalid_body",
              `Invalid body: ops[${i}] writes key "${op.key}" in scope "${scope}" a second time`,
            );
          }
          seenKeys.add(k);
          await checkScope(c, roomId, actor, scope);
          if ("delete" in op) {
            ops.push({ op: "delete", scope, key: op.key, ifVersion: op.if_version });
          } else {
            checkSize(`ops[${i}].value`, op.value, api.config.maxValueBytes);
            ops.push({
              op: "put",
              scope,
              key: op.key,
              value: op.value,
              ifVersion: op.if_version,
              expiresAt: api.expiry(op.ttl),
            });
          }
        }
        const d = c.get("db");
        const results = await q.applyStateBatch(d, roomId, ops, api.config.maxKeys, keyed(c));
        if (results) {
          const setsExpiry = results.length > 1 ||
            ops.some((op) => op.op === "put" && op.expiresAt != null);
          api.written(roomId, results[results.length - 1].rev, setsExpiry);
          return api.answer(
            c,
            "state_batch",
            results.map((entry, i) => ({ entry, deleted: ops[i].op === "delete" })),
          );
        }
        if (!(await q.getRoomAuth(d, roomId))) throw api.noRoom(roomId);
        for (const [i, op] of ops.entries()) {
          const current = await q.getState(d, roomId, op.scope, op.key);
          const ok = op.op === "delete"
            ? current !== null && (op.ifVersion === undefined || op.ifVersion === current.version)
            : op.ifVersion === undefined ||
              (op.ifVersion === 0 ? current === null : current?.version === op.ifVersion);
          if (!ok) {
            const err = op.op === "delete" && !current
              ? new HttpError(
                409,
                "version_conflict",
                `Key "${op.key}" in scope "${op.scope}" does not exist`,
                { current: null },
              )
              : await conflict(c, roomId, op.scope, op.key, op.ifVersion);
            throw new HttpError(409, err.code, `ops[${i}]: ${err.message}; nothing was written`, {
              ...err.details,
              failed: i,
            });
          }
        }
        throw api.keysFull(roomId, "; nothing was written");
      },
    }),
  ];
}
