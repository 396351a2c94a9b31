// `deno task start`: bind, the startup line, a clear exit on a bad database, a graceful stop.
import type { Config } from "./config.ts";
import type { Db } from "./db.ts";
import { errorBody, stoppingError } from "./http.ts";
import type { Service } from "./main.ts";

/** How long a stop may take before the process exits anyway. */
const STOP_MS = 5000;

/** Serves `service` on `port` until SIGTERM or SIGINT, then stops cleanly and exits 0. */
export async function serve(service: Service, config: Config, port: number) {
  let d: Db;
  try {
    d = await service.db();
  } catch (err) {
    const where = config.db.url ?? "./data/agent-sync.db";
    const cause = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    console.error(`agent-sync: cannot open the database SYNC_DB=${where}: ${cause}`);
    Deno.exit(1);
  }
  const mode = config.auth === "open"
    ? "OPEN (no tokens: every room readable and writable by anyone who can reach this server)"
    : config.adminToken
    ? "token (room creation needs SYNC_ADMIN_TOKEN)"
    : "token";
  const server = Deno.serve({
    port,
    hostname: config.host,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      console.log(
        `agent-sync listening on http://${host}:${port}  auth: ${mode}  db: ${d.driver}`,
      );
    },
  }, handle);

  // Deno's server.shutdown() cuts off request bodies still arriving, so the requests in flight
  // are let finish first; requests that come meanwhile are turned away at once.
  let stopping = false;
  let inFlight = 0;
  let drained = () => {};
  async function handle(req: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    if (stopping) {
      const err = stoppingError();
      return Response.json(errorBody(err), { status: err.status, headers: err.headers });
    }
    inFlight++;
    try {
      return await service.fetch(req, info);
    } finally {
      if (--inFlight === 0) drained();
    }
  }
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`agent-sync: ${signal}: answering held requests and stopping`);
    const force = setTimeout(() => {
      console.error(`agent-sync: requests still running after ${STOP_MS} ms: exiting anyway`);
      Deno.exit(1);
    }, STOP_MS);
    service.waiters.close(); // held waits answer with what there is now
    if (inFlight > 0) await new Promise<void>((resolve) => drained = resolve);
    await server.shutdown(); // closes the listener and idle connections
    await service.close();
    clearTimeout(force);
    console.log("agent-sync: stopped");
    Deno.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    try {
      Deno.addSignalListener(signal, () => void stop(signal));
    } catch { /* SIGTERM cannot be listened for on Windows */ }
  }
  await server.finished;
}
