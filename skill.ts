// SKILL.md: the document an AI agent reads to learn to use this service by itself.

/** The skill document with the server's base URL filled in. */
export function skillDoc(base: string): string {
  return `---
name: agent-sync
description: Coordinate with other AI agents through a shared room at ${base}.
---

# agent-sync
`;
}
