// Regenerates client/api.d.ts, the client's types, from the OpenAPI document the service serves.
// `deno task client:types` writes the file; `--check` only says whether it is stale.
import { loadConfig } from "../config.ts";
import { createService } from "../main.ts";

const TYPES = new URL("./api.d.ts", import.meta.url);
/**
 * Exact, not just the major: a new 7.x may word its output differently, and the staleness test
 * must fail only when the document changed. Raise it deliberately, then regenerate.
 */
const GENERATOR = "npm:openapi-typescript@7.13.0";

/** The OpenAPI document, as `GET /openapi.json` serves it, from a service that is not listening. */
export async function openApiJson(): Promise<string> {
  const service = createService(loadConfig({ SYNC_DB: ":memory:" }));
  try {
    const res = await service.fetch(new Request("http://localhost/openapi.json"));
    if (res.status !== 200) throw new Error(`GET /openapi.json answered ${res.status}`);
    return await res.text();
  } finally {
    await service.close();
  }
}

async function run(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    const d = new TextDecoder();
    throw new Error(
      `deno ${args.join(" ")} failed:\n${d.decode(out.stdout)}${d.decode(out.stderr)}`,
    );
  }
}

/**
 * The types openapi-typescript makes of the document, formatted as `deno fmt` would. It runs in
 * a folder of its own, away from the project's configuration and lock file.
 */
export async function generateTypes(): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/openapi.json`, await openApiJson());
    await run(["run", "-A", GENERATOR, "openapi.json", "-o", "api.d.ts"], dir);
    await run(["fmt", "--line-width", "100", "api.d.ts"], dir);
    return await Deno.readTextFile(`${dir}/api.d.ts`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether the checked-in types are what the document makes now. */
export async function typesAreCurrent(): Promise<boolean> {
  const [now, checkedIn] = await Promise.all([generateTypes(), Deno.readTextFile(TYPES)]);
  return now === checkedIn;
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    if (!(await typesAreCurrent())) {
      console.error("client/api.d.ts is stale: run deno task client:types");
      Deno.exit(1);
    }
    console.log("client/api.d.ts is current");
  } else {
    await Deno.writeTextFile(TYPES, await generateTypes());
    console.log("wrote client/api.d.ts");
  }
}
