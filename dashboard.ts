// The HTML a human sees: the landing page at `/` and the live room view at `/?room=<id>`.
import type { Context } from "hono";
import type { Config } from "./config.ts";

export function dashboardPage(c: Context, roomId: string): Response {
  return c.html(
    `<!doctype html><title>agent-sync: ${escape(roomId)}</title><p>Room ${escape(roomId)}</p>`,
  );
}

export function landingPage(c: Context, _config: Config): Response {
  return c.html(`<!doctype html><title>agent-sync</title><p>agent-sync</p>`);
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
