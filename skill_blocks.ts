// How SKILL.md writes its shell blocks: the auth each mode needs, fresh-shell blocks, status cases.
import type { Config } from "./config.ts";

export interface Ctx {
  base: string;
  config: Config;
  open: boolean;
  /** ` -H "Authorization: Bearer $TOKEN"`, or nothing in open mode. */
  auth: string;
  /** The room token's header, or nothing in open mode. */
  roomAuth: string;
  /** `"from":"'"$ME"'",` in open mode (nothing else knows who posts), else nothing. */
  from: string;
  /** The body naming the claiming agent in open mode, with its header; else nothing. */
  claimBody: string;
}

export const CT = ` -H 'Content-Type: application/json'`;

export function context(base: string, config: Config): Ctx {
  const open = config.auth === "open";
  return {
    base,
    config,
    open,
    auth: open ? "" : ` -H "Authorization: Bearer $TOKEN"`,
    roomAuth: open ? "" : ` -H "Authorization: Bearer $ROOM_TOKEN"`,
    from: open ? `"from":"'"$ME"'",` : "",
    claimBody: open ? `${CT} -d '{"agent":"'"$ME"'"}'` : "",
  };
}

/** A code block; `who` names the agents that run it (`lead`, `worker`; none: everyone). */
export function sh(who: "" | "lead" | "worker", ...lines: string[]): string {
  return "```sh" + (who ? ` ${who}` : "") + "\n. ./sync.env\n" + lines.join("\n") + "\n```";
}

/** `case` on a captured status: the arms given, then print the answer for anything else. */
export function onStatus(file: string, ...arms: string[]): string {
  return ["case $CODE in", ...arms.map((a) => `  ${a} ;;`), `  *) cat ${file}; echo ;;`, "esac"]
    .join("\n");
}
