// Turns the TypeScript page scripts into the text of a page's <script>, with no build step.
import * as browser from "./dashboard_browser.ts";
import type { PageConfig } from "./dashboard_browser.ts";
import * as feed from "./dashboard_feed.ts";
import { landingPage } from "./dashboard_landing.ts";
import * as render from "./dashboard_render.ts";
import { roomPage } from "./dashboard_room.ts";

// Deno (and Val Town) strip the types when they load a module, so a function's toString() is
// JavaScript. Every function the helper modules export goes first, as a declaration; a page's
// function then finds each by the name it imported it under (so imports are never renamed).
const HELPERS = [browser, render, feed]
  .flatMap((module) => Object.values(module))
  .filter((v) => typeof v === "function")
  .map((fn) => fn.toString())
  .join("\n");
const ROOM = roomPage.toString();
const LANDING = landingPage.toString();

function pageScript(helpers: string, page: string, config: PageConfig): string {
  const arg = JSON.stringify(config).replace(/</g, "\\u003c");
  const text = `"use strict";\n(() => {\n${helpers}\n(${page})(${arg});\n})();\n`;
  // Inside <script>, only "</script" or "<!--" could end or derail it early.
  if (/<\/script|<!--/i.test(text)) throw new Error("A page script contains </script or <!--");
  return text;
}

/** The script of the live room view. */
export function roomScript(config: PageConfig): string {
  return pageScript(HELPERS, ROOM, config);
}

/** The script of the landing page, which needs none of the helpers. */
export function landingScript(config: PageConfig): string {
  return pageScript("", LANDING, config);
}
