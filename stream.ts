// The change feed as server-sent events: `GET /rooms/:id/changes` with `Accept: text/event-stream`.
import type { Db } from "./db.ts";
import { ROOM_GONE, type Waiters } from "./feed.ts";
import { errorBody, HttpError } from "./http.ts";
import { type Change, listChanges } from "./schema.ts";

export interface StreamOptions {
  db: Db;
  roomId: string;
  /** The revision the client has seen: events start after it. */
  after: number;
  waiters: Waiters;
  /** Who holds the stream, for the held-request caps. */
  client: string;
  /** The client's address, for the held-request cap per address. */
  address?: string;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** The server ends the stream after this long; the client reconnects with Last-Event-ID. */
  seconds: number;
  /** A comment line is sent after this long without an event, so proxies keep the connection. */
  heartbeatSeconds: number;
  /** Changes read per query. */
  pageSize: number;
  /** Shapes a change exactly as an element of /changes's `changes` array. */
  view: (change: Change) => unknown;
  /** Throws the 410 the poll would answer when retention has passed `cursor`. */
  checkRetention: (trimmedRev: number, cursor: number) => void;
}

/** The reconnection delay the stream suggests to EventSource clients, in milliseconds. */
export const RETRY_MS = 1000;

interface Page {
  /** The events, encoded once for every stream that shares the page. */
  chunk: Uint8Array;
  count: number;
  last: number;
  trimmedRev: number;
}

/**
 * Reads in flight per database and (room, cursor, page size): streams woken by one write share
 * one read and one encoding of it, instead of each querying and serializing on its own.
 */
const reading = new WeakMap<Db, Map<string, Promise<Page>>>();

function readPage(o: StreamOptions, cursor: number, encoder: TextEncoder): Promise<Page> {
  let inFlight = reading.get(o.db);
  if (!inFlight) reading.set(o.db, inFlight = new Map());
  const key = `${o.roomId}\n${cursor}\n${o.pageSize}`;
  let page = inFlight.get(key);
  if (!page) {
    page = listChanges(o.db, o.roomId, cursor, o.pageSize).then(({ changes, trimmedRev }) => {
      let out = "";
      for (const ch of changes) out += `id: ${ch.rev}\ndata: ${JSON.stringify(o.view(ch))}\n\n`;
      const last = changes.length > 0 ? changes[changes.length - 1].rev : cursor;
      return { chunk: encoder.encode(out), count: changes.length, last, trimmedRev };
    }).finally(() => inFlight.delete(key));
    inFlight.set(key, page);
  }
  return page;
}

/** Whether the request asks for the event stream rather than one JSON page. */
export function wantsStream(accept: string | undefined): boolean {
  return (accept ?? "").toLowerCase().includes("text/event-stream");
}

/** The revision a stream resumes from: `Last-Event-ID` when the client reconnects, else `after`. */
export function streamCursor(lastEventId: string | undefined, after: number): number {
  if (lastEventId === undefined || lastEventId.trim() === "") return after;
  if (!/^\s*\d{1,15}\s*$/.test(lastEventId)) {
    throw new HttpError(
      400,
      "invalid_header",
      `Invalid header Last-Event-ID "${lastEventId}": expected a revision (a non-negative integer, the id of the last event received)`,
    );
  }
  return Number(lastEventId);
}

/**
 * Streams every change after `after` as `id: <rev>\ndata: <change JSON>\n\n`, then holds until
 * the room moves, sending `: heartbeat` comments, until `seconds` pass or the client leaves.
 * Takes one held-request slot for its whole life (429 before the stream starts when none is
 * free). Retention passing the cursor or the room being deleted ends it with an `event: error`
 * whose data is the error the poll would answer.
 */
export function changeStream(o: StreamOptions): Response {
  const release = o.waiters.reserve(o.client, o.roomId, o.address);
  const encoder = new TextEncoder();
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  o.signal.addEventListener("abort", onAbort);
  const deadline = Date.now() + o.seconds * 1000;
  let cursor = o.after;
  /** Up to here the room holds nothing after `cursor` (revisions taken by trimmed messages). */
  let quiet = cursor;
  let woke: number | null = null;
  let started = false;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    o.signal.removeEventListener("abort", onAbort);
    stop.abort();
    release();
  };
  const end = (controller: ReadableStreamDefaultController<Uint8Array>, last?: HttpError) => {
    if (finished) return; // cancelled by the client: nothing more to send
    if (last) {
      controller.enqueue(
        encoder.encode(`event: error\ndata: ${JSON.stringify(errorBody(last))}\n\n`),
      );
    }
    finish();
    controller.close();
  };

  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!started) {
          started = true;
          controller.enqueue(encoder.encode(`retry: ${RETRY_MS}\n\n`));
          return;
        }
        // Each pull enqueues one chunk (events, a heartbeat, or the end), so a slow reader
        // holds the stream back instead of letting the queue grow.
        while (true) {
          if (stop.signal.aborted || o.waiters.closed || Date.now() >= deadline) {
            return end(controller);
          }
          const page = await readPage(o, cursor, encoder);
          o.checkRetention(page.trimmedRev, cursor);
          if (page.count > 0) {
            cursor = page.last;
            quiet = Math.max(quiet, cursor);
            woke = null;
            controller.enqueue(page.chunk);
            return;
          }
          // Woken, yet nothing to read: wait past that revision, or the wait returns at once.
          if (woke !== null) quiet = Math.max(quiet, woke);
          const left = deadline - Date.now();
          if (left <= 0) return end(controller);
          woke = await o.waiters.wait(
            o.roomId,
            quiet,
            Math.min(left, o.heartbeatSeconds * 1000),
            o.client,
            stop.signal,
            true,
          );
          if (woke === ROOM_GONE) {
            return end(
              controller,
              new HttpError(404, "not_found", `Room "${o.roomId}" was deleted`),
            );
          }
          if (woke === null && !stop.signal.aborted && Date.now() < deadline) {
            controller.enqueue(encoder.encode(": heartbeat\n\n"));
            return;
          }
        }
      } catch (err) {
        if (err instanceof HttpError) return end(controller, err);
        if (finished) return;
        finish();
        controller.error(err);
      }
    },
    cancel() {
      finish();
    },
  }, { highWaterMark: 0 });

  return new Response(body, {
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
    },
  });
}
