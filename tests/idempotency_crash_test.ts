// kill -9 of a real server under keyed writers, then a retry of every unanswered request at once.
import assert from "node:assert/strict";
import { startServer } from "./servers.ts";

const WRITERS = 24;
const STATE_WRITERS = 8;

interface Keyed {
  method: string;
  path: string;
  body: unknown;
  key: string;
}

async function call(base: string, token: string, r: Keyed) {
  const res = await fetch(`${base}${r.path}`, {
    method: r.method,
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "idempotency-key": r.key,
    },
    body: JSON.stringify(r.body),
  });
  return {
    status: res.status,
    replayed: res.headers.get("idempotent-replayed"),
    text: await res.text(),
  };
}

for (const driver of ["embedded", "libsql"]) {
  Deno.test({
    name:
      `keyed writers survive kill -9: every unanswered request retried at once is 2xx and written once [${driver}]`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      const env = { SYNC_RATE_LIMIT: "off", SYNC_DB_DRIVER: driver };
      let server = await startServer(`${dir}/sync.db`, env);
      try {
        const created = await fetch(`${server.url}/rooms`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
        });
        const room = await created.json();
        const attempts: Keyed[][] = Array.from({ length: WRITERS }, () => []);
        const unanswered: Keyed[] = [];
        const refused: string[] = [];
        let answered = 0;
        let stop = false;
        const writer = async (w: number) => {
          for (let i = 0; !stop; i++) {
            const r: Keyed = w < STATE_WRITERS
              ? {
                method: "PUT",
                path: `/rooms/${room.id}/state`,
                body: { key: `w${w}`, value: i },
                key: crypto.randomUUID(),
              }
              : {
                method: "POST",
                path: `/rooms/${room.id}/messages`,
                body: { body: { w, i } },
                key: crypto.randomUUID(),
              };
            attempts[w].push(r);
            try {
              const res = await call(server.url, room.token, r);
              if (res.status >= 300) refused.push(res.text);
              answered++;
            } catch {
              unanswered.push(r); // the server died with this request in flight
              return;
            }
          }
        };
        const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
        const deadline = Date.now() + 30_000;
        while (answered < 600 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        await server.stop("SIGKILL");
        stop = true;
        await Promise.all(writers);
        assert.deepEqual(refused, [], "every answered write succeeded");
        assert.ok(unanswered.length > 0, "the kill cut some requests off");

        server = await startServer(`${dir}/sync.db`, env);
        const retries = await Promise.all(unanswered.map((r) => call(server.url, room.token, r)));
        for (const res of retries) assert.ok(res.status >= 200 && res.status < 300, res.text);

        const seen = new Map<string, number>();
        for (let after = 0;;) {
          const page = await (await fetch(
            `${server.url}/rooms/${room.id}/messages?after=${after}&limit=1000`,
            { headers: { authorization: `Bearer ${room.token}` } },
          )).json();
          if (page.length === 0) break;
          for (const m of page) {
            const k = `${m.body.w}/${m.body.i}`;
            seen.set(k, (seen.get(k) ?? 0) + 1);
          }
          after = page.at(-1).id;
        }
        for (let w = STATE_WRITERS; w < WRITERS; w++) {
          for (const [i] of attempts[w].entries()) {
            assert.equal(seen.get(`${w}/${i}`), 1, `message ${w}/${i} written once`);
          }
        }
        assert.equal(
          [...seen.values()].reduce((a, b) => a + b, 0),
          attempts.slice(STATE_WRITERS).reduce((n, a) => n + a.length, 0),
          "no message beyond the ones sent",
        );
        for (let w = 0; w < STATE_WRITERS; w++) {
          const res = await fetch(`${server.url}/rooms/${room.id}/state?key=w${w}`, {
            headers: { authorization: `Bearer ${room.token}` },
          });
          const entry = await res.json();
          const n = attempts[w].length;
          assert.equal(entry.version, n, `key w${w}: one version per PUT, none replayed late`);
          assert.equal(entry.value, n - 1);
        }
      } finally {
        await server.stop().catch(() => {});
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
