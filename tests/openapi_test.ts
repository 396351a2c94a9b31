// The OpenAPI document: generated from the operations, complete both ways, and lint-clean.
import assert from "node:assert/strict";
import { openApiPath } from "../openapi.ts";
import { makeApp } from "./helpers.ts";

const METHODS = ["get", "post", "put", "patch", "delete"];

// deno-lint-ignore no-explicit-any
async function getDocument(env: Record<string, string> = {}): Promise<any> {
  await using t = await makeApp("embedded", env);
  const res = await t.app.request("GET", "/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const routes = new Set(
    t.app.service.app.routes.filter((r) => r.method !== "ALL")
      .map((r) => `${r.method} ${openApiPath(r.path)}`),
  );
  return { doc: res.body, routes };
}

Deno.test("every route of the app is in the OpenAPI document, and nothing else", async () => {
  const { doc, routes } = await getDocument();
  const documented = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of Object.keys(item as object)) {
      if (METHODS.includes(m)) documented.add(`${m.toUpperCase()} ${path}`);
    }
  }
  assert.ok(routes.size >= 20, `only ${routes.size} routes`);
  assert.deepEqual([...routes].filter((r) => !documented.has(r)), [], "routes not documented");
  assert.deepEqual([...documented].filter((r) => !routes.has(r)), [], "documented, not routes");
});

Deno.test("every operation has an id, a summary, answers, and its path parameters", async () => {
  const { doc } = await getDocument();
  const ids = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item as Record<string, Record<string, unknown>>)) {
      const where = `${method} ${path}`;
      assert.ok(op.operationId, where);
      assert.ok(!ids.has(op.operationId as string), `${where}: operationId repeated`);
      ids.add(op.operationId as string);
      assert.ok(op.summary, where);
      const statuses = Object.keys(op.responses as object);
      assert.ok(statuses.some((s) => s.startsWith("2")), `${where}: no success answer`);
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      const params = ((op.parameters ?? []) as { name: string; in: string }[])
        .filter((p) => p.in === "path").map((p) => p.name);
      assert.deepEqual(params.sort(), names.sort(), where);
      const body = op.requestBody as { content: Record<string, { example?: unknown }> };
      if (body) assert.ok(body.content["application/json"].example, `${where}: no example`);
    }
  }
});

Deno.test("a room's operations need the bearer token in token mode, and none in open mode", async () => {
  const token = (await getDocument()).doc;
  assert.equal(token.components.securitySchemes.bearer.scheme, "bearer");
  assert.deepEqual(token.paths["/rooms/{id}/messages"].post.security, [{ bearer: [] }]);
  assert.deepEqual(token.paths["/health"].get.security, []);
  const open = (await getDocument({ SYNC_AUTH: "open" })).doc;
  assert.deepEqual(open.paths["/rooms/{id}/messages"].post.security, []);
});

Deno.test("every reference in the OpenAPI document resolves", async () => {
  const { doc } = await getDocument();
  const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/([^"]+)"/g)].map((m) => m[1]);
  assert.ok(refs.length > 10);
  for (const ref of new Set(refs)) {
    // deno-lint-ignore no-explicit-any
    const target = ref.split("/").reduce((o: any, k) => o?.[k], doc);
    assert.ok(target, `#/${ref} does not resolve`);
  }
});

Deno.test("the answers' schemas name the documented shapes, e.g. a message", async () => {
  const { doc } = await getDocument();
  const post = doc.paths["/rooms/{id}/messages"].post;
  assert.deepEqual(post.responses["201"].content["application/json"].schema, {
    $ref: "#/components/schemas/Message",
  });
  const message = doc.components.schemas.Message;
  for (const field of ["id", "from_agent", "to_agent", "kind", "body", "claim", "rev"]) {
    assert.ok(field in message.properties, field);
  }
  assert.equal(post.responses["409"], undefined, "posting never conflicts");
  assert.ok(doc.paths["/rooms/{id}/state"].put.responses["409"]);
});

/** Runs an npm linter on the document in a folder of its own, outside the project's config. */
async function lint(args: string[], doc: unknown): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/openapi.json`, JSON.stringify(doc));
    await Deno.writeTextFile(`${dir}/.spectral.yaml`, 'extends: ["spectral:oas"]\n');
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    return text;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const mode of ["token", "open"]) {
  Deno.test(`Redocly finds no error in the OpenAPI document (${mode} mode)`, async () => {
    const { doc } = await getDocument({ SYNC_AUTH: mode });
    const out = await lint(["npm:@redocly/cli@2", "lint", "openapi.json"], doc);
    assert.match(out, /Your API description is valid/);
  });

  Deno.test(`Spectral finds no error in the OpenAPI document (${mode} mode)`, async () => {
    const { doc } = await getDocument({ SYNC_AUTH: mode });
    // Spectral exits non-zero when it finds anything at or above --fail-severity.
    await lint(
      ["npm:@stoplight/spectral-cli@6", "lint", "openapi.json", "--fail-severity", "error"],
      doc,
    );
  });
}
