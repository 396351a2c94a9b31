// Origins: which web pages may call the API (CORS), and which URL the documents show agents.
import type { Context } from "npm:hono@^4.13.19";
import { errorBody, HttpError } from "./http.ts";

const EXPOSED = "Retry-After, RateLimit, RateLimit-Policy, Idempotent-Replayed";

/** The CORS headers for a request from `origin`: none when the origin is not allowed. */
export function corsHeaders(
  origin: string | undefined,
  allowed: "*" | string[],
): Record<string, string> {
  if (!origin) return {};
  if (allowed === "*") {
    return { "Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSED };
  }
  if (!allowed.includes(origin)) return { "Vary": "Origin" };
  return {
    "Access-Control-Allow-Origin": origin,
    "Access-Control-Expose-Headers": EXPOSED,
    "Vary": "Origin",
  };
}

/** The answer to a CORS preflight: what an allowed origin may send, or 403. */
export function preflight(origin: string, cors: Record<string, string>): Response {
  if (!cors["Access-Control-Allow-Origin"]) {
    const err = new HttpError(
      403,
      "forbidden",
      `Origin "${origin}" may not call this server: it is not in SYNC_CORS_ORIGINS`,
    );
    return Response.json(errorBody(err), { status: 403, headers: { Vary: "Origin" } });
  }
  return new Response(null, {
    status: 204,
    headers: {
      ...cors,
      "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
      "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
      "Access-Control-Max-Age": "86400",
    },
  });
}

/**
 * The base URL documents show: `SYNC_PUBLIC_URL`, else the request's own origin (from
 * X-Forwarded-Proto and X-Forwarded-Host only when `trustProxy`). `headers` mark an answer built
 * from request headers so that no shared cache serves it to another Host.
 */
export function publicOrigin(
  c: Context,
  config: { publicUrl: string | null; trustProxy: number },
): { base: string; headers: Record<string, string> } {
  if (config.publicUrl) return { base: config.publicUrl, headers: {} };
  const own = new URL(c.req.url);
  let base = own.origin;
  let vary = "Host";
  if (config.trustProxy) {
    vary = "Host, X-Forwarded-Host, X-Forwarded-Proto";
    // The entries the proxy itself wrote: the last of each list.
    const host = c.req.header("x-forwarded-host")?.split(",").at(-1)?.trim();
    const proto = c.req.header("x-forwarded-proto")?.split(",").at(-1)?.trim().toLowerCase();
    const scheme = proto === "http" || proto === "https" ? proto : own.protocol.slice(0, -1);
    if (host && /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(host)) {
      base = `${scheme}://${host}`;
    } else if (proto === "http" || proto === "https") base = `${scheme}://${own.host}`;
  }
  return { base, headers: { "Cache-Control": "no-store", "Vary": vary } };
}
