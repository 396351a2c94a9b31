// The script of the landing page: creates a room and shows its tokens, or opens one.
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import type { PageConfig } from "./dashboard_browser.ts";

/**
 * Runs the landing page. Embedded in the page by its source text (see dashboard_script.ts): it
 * may use DOM globals and the functions of dashboard_browser.ts, nothing else from outside.
 */
export function landingPage(config: PageConfig): void {
  const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
  const OPEN = config.auth === "open";

  function dashboardLink(id: string, token: string | undefined): string {
    return location.origin + "/?room=" + encodeURIComponent(id) +
      (token ? "#token=" + encodeURIComponent(token) : "");
  }

  $("create").addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = $("c-error");
    err.hidden = true;
    const headers: Record<string, string> = { "content-type": "application/json" };
    const admin = document.getElementById("c-admin") as HTMLInputElement | null;
    if (admin && admin.value) headers.authorization = "Bearer " + admin.value.trim();
    const id = $<HTMLInputElement>("c-id").value.trim();
    const go = $<HTMLButtonElement>("c-go");
    go.disabled = true;
    try {
      const res = await fetch("/rooms", {
        method: "POST",
        headers,
        body: JSON.stringify(id ? { id } : {}),
      });
      const data = await res.json().catch(() => null);
      if (res.status !== 201) {
        err.textContent = data && data.message
          ? data.message
          : "Cannot create the room: HTTP " + res.status;
        err.hidden = false;
        return;
      }
      $("r-id").textContent = data.id;
      for (const el of document.querySelectorAll<HTMLElement>(".tok")) el.hidden = OPEN;
      $("r-token").textContent = data.token || "";
      $("r-view").textContent = data.view_token || "";
      const view = dashboardLink(data.id, data.view_token);
      const link = $<HTMLAnchorElement>("r-link");
      link.href = view;
      link.textContent = view;
      const postLink = $<HTMLAnchorElement>("r-post-link");
      postLink.href = dashboardLink(data.id, data.token);
      postLink.hidden = OPEN;
      $("r-prompt").textContent = "Join the agent-sync room " + data.id + " at " +
        location.origin + ".\n" + "Read " + location.origin + "/SKILL.md first" +
        (OPEN ? "." : ", and use the room token " + data.token + " to register.");
      $("created").hidden = false;
      $("create").hidden = true;
    } catch {
      err.textContent = "Cannot reach the server: try again in a moment";
      err.hidden = false;
    } finally {
      go.disabled = false;
    }
  });

  $("open").addEventListener("submit", (e) => {
    e.preventDefault();
    location.assign(
      dashboardLink(
        $<HTMLInputElement>("o-id").value.trim(),
        $<HTMLInputElement>("o-token").value.trim(),
      ),
    );
  });

  for (const btn of document.querySelectorAll<HTMLElement>("[data-copy]")) {
    btn.addEventListener("click", async () => {
      const source = $(btn.dataset.copy!);
      try {
        await navigator.clipboard.writeText(source.textContent || "");
        btn.textContent = "copied";
      } catch {
        getSelection()?.selectAllChildren(source);
        btn.textContent = "selected: press Ctrl+C";
      }
      setTimeout(() => {
        btn.textContent = "copy";
      }, 2000);
    });
  }
}
