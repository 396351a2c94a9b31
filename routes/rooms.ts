// Rooms: create or join, list (admin), read, delete.
import { z } from "npm:zod@^4.6.7";
import { mintToken, sha256 } from "../auth.ts";
import type { Api } from "../context.ts";
import { keyed } from "../idempotency.ts";
import { ROOM_GONE } from "../feed.ts";
import { checkSize, HttpError, json } from "../http.ts";
import { RoomCreatedSchema, RoomDeletedSchema, RoomSchema } from "../models.ts";
import { operation } from "../operation.ts";
import * as q from "../schema.ts";

export function roomOperations(api: Api) {
  const { id, limit } = api.in;
  const roomPath = z.object({ id });

  function roomExists(roomId: string) {
    return new HttpError(
      409,
      "room_exists",
      `Room "${roomId}" already exists: join it with its token, or choose another id`,
    );
  }

  function adminNeeded(what: string) {
    return new HttpError(
      401,
      "unauthorized",
      `${what} on this server needs the admin token (SYNC_ADMIN_TOKEN)`,
      {},
      { "WWW-Authenticate": 'Bearer realm="agent-sync"' },
    );
  }

  return [
    operation({
      name: "createRoom",
      method: "POST",
      path: "/rooms",
      summary: "Create a room, or join an existing one by id",
      description:
        "Creating answers 201 with the room token and view token, shown only this once. Naming an existing room joins it: 200 with the room, given one of its tokens (token mode).",
      who: "custom",
      body: z.strictObject({ id: id.optional(), meta: json.optional() }),
      bodyOptional: true,
      example: { meta: { goal: "build the parser" } },
      answers: {
        201: { description: "The new room, with its tokens", schema: RoomCreatedSchema },
        200: { description: "The existing room (joined)", schema: RoomSchema },
      },
      errors: [401, 409, 413],
      handler: async (c, { body: b }) => {
        const token = api.open ? null : api.bearer(c);
        const admin = api.isAdmin(token);
        // A locked server still lets a room's own token join it; all else needs the admin token,
        // and a refused join answers 401 like a refused creation, revealing no room ids.
        const locked = !api.open && api.config.adminToken !== null && !admin;
        if (locked && token === null) throw adminNeeded("Creating rooms");
        checkSize("meta", b.meta ?? null, api.config.maxValueBytes);
        const roomId = b.id ?? crypto.randomUUID();
        const d = c.get("db");
        const existing = b.id === undefined ? null : await q.getRoomAuth(d, roomId);
        if (existing) {
          if (!api.open) {
            await api.access(c, roomId).catch(() => {
              throw locked ? adminNeeded("Creating rooms") : roomExists(roomId);
            });
          }
          return c.json(q.roomOf(existing), 200);
        }
        if (locked) throw adminNeeded("Creating rooms");
        if (!admin && api.limits) {
          const r = await api.limits.room(c.get("ip"));
          if (!r.ok) {
            throw new HttpError(
              429,
              "rate_limited",
              `Too many rooms created from this address: at most ${api.config.roomsPerHour} an hour, retry after ${r.retryAfter} s`,
              { retry_after: r.retryAfter },
              {
                "Retry-After": String(r.retryAfter),
                "RateLimit": `limit=${api.config.roomsPerHour}, remaining=0, reset=${r.retryAfter}`,
              },
            );
          }
        }
        const tokens = api.open
          ? null
          : { token: mintToken("room"), view_token: mintToken("view") };
        const room = await q.createRoom(d, {
          id: roomId,
          meta: b.meta ?? null,
          tokenHash: tokens ? sha256(tokens.token) : null,
          viewTokenHash: tokens ? sha256(tokens.view_token) : null,
        }, keyed(c, tokens));
        if (!room) throw roomExists(roomId);
        return api.answer(c, "room_created", [room], tokens);
      },
    }),

    operation({
      name: "listRooms",
      method: "GET",
      path: "/rooms",
      summary: "List rooms (admin token; open mode lists all)",
      description:
        "In token mode without SYNC_ADMIN_TOKEN this answers an empty list: rooms are private.",
      who: "custom",
      query: z.strictObject({ limit }),
      answers: { 200: { description: "Rooms, oldest first", schema: z.array(RoomSchema) } },
      errors: [401],
      handler: async (c, { query: p }) => {
        if (!api.open && !api.isAdmin(api.bearer(c))) {
          if (api.config.adminToken === null) return c.json([]);
          throw adminNeeded("Listing rooms");
        }
        return c.json(await q.listRooms(c.get("db"), api.clamp(p.limit)));
      },
    }),

    operation({
      name: "getRoom",
      method: "GET",
      path: "/rooms/:id",
      summary: "Read a room: its meta and newest revision",
      who: "read",
      params: roomPath,
      answers: { 200: { description: "The room", schema: RoomSchema } },
      errors: [401, 404],
      handler: (c, { access: { room } }) => c.json(q.roomOf(room)),
    }),

    operation({
      name: "deleteRoom",
      method: "DELETE",
      path: "/rooms/:id",
      summary: "Delete a room and everything in it (room token)",
      who: "owner",
      params: roomPath,
      answers: { 200: { description: "Deleted", schema: RoomDeletedSchema } },
      errors: [401, 403, 404],
      handler: async (c, { params: { id: roomId } }) => {
        await q.deleteRoom(c.get("db"), roomId, keyed(c));
        api.written(roomId, ROOM_GONE);
        return api.answer(c, "room_deleted", [{ id: roomId }]);
      },
    }),
  ];
}
