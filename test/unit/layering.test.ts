/**
 * The folders of src/ follow the running stack, top first, and each imports only what lies below
 * it: a walk down one request never climbs back up. The bundled S3 server is a program of its own
 * beside the stack, taking only the shared bottom (runtime, util, errors, log).
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));

/** Top first. A name is a folder of src/ or a file at its top. */
const ORDER = [
  "main.ts", "app", "config", "cli", "fuse", "nbd", "file", "store", "object", "http", "memory", "log.ts", "runtime", "util", "errors.ts", "version.ts",
];
const APART = "s3server";
const APART_MAY_IMPORT = new Set(["log.ts", "runtime", "util", "errors.ts"]);

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** The top-level part of src/ a path is in ("store", "log.ts"); undefined outside src/. */
function partOf(path: string): string | undefined {
  const rel = relative(SRC, path);
  return rel.startsWith("..") ? undefined : rel.split("/")[0];
}

/** Every relative import of every file under src/: [importer's part, imported part, importer, specifier]. */
function imports(): [string, string, string, string][] {
  const found: [string, string, string, string][] = [];
  for (const file of filesUnder(SRC)) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^"'\n]*?(?:from\s*)?["'](\.{1,2}\/[^"']+)["']/g)) {
      const from = partOf(file)!;
      const to = partOf(normalize(join(dirname(file), m[1]!)));
      if (to !== undefined && to !== from) found.push([from, to, relative(SRC, file), m[1]!]);
    }
  }
  return found;
}

test("every folder of src/ is in the order, and the order lists nothing that is not there", () => {
  const parts = readdirSync(SRC).filter((p) => p !== APART);
  expect(parts.sort()).toEqual([...ORDER].filter((p) => p !== "version.ts" || parts.includes(p)).sort());
});

test("each folder imports only folders below it in the running stack", () => {
  const all = imports();
  expect(all.length).toBeGreaterThan(50); // the scan sees imports at all
  const upward = all
    .filter(([from, to]) => from !== APART && to !== APART && ORDER.indexOf(to) <= ORDER.indexOf(from))
    .map(([from, to, file, spec]) => `${file} (${from}) imports ${spec} (${to}), which is not below it`);
  expect(upward).toEqual([]);
});

test("the bundled S3 server stands apart: it takes only the shared bottom, and only main.ts starts it", () => {
  const all = imports();
  const wrong = all
    .filter(([from, to]) => (from === APART && !APART_MAY_IMPORT.has(to)) || (to === APART && from !== "main.ts"))
    .map(([, , file, spec]) => `${file} imports ${spec}`);
  expect(wrong).toEqual([]);
});
