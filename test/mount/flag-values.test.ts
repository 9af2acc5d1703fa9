/**
 * Upstream master parses the forms of test/helpers/flag-forms.ts to the values written there
 * (UPSTREAM_S3BACKER names its build). Upstream has no parse-only mode, so it runs `--test --erase
 * --force --debug` on an empty directory, which prints its whole configuration (dump_config) and
 * then erases nothing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run, tempDir } from "../helpers/disk.ts";
import { ENV, FORMS, REFUSED, REFUSED_FORMS, type Value } from "../helpers/flag-forms.ts";

const dir = tempDir("flag-values");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const UPSTREAM = process.env.UPSTREAM_S3BACKER;

/** Upstream's whole configuration after parsing `args` (dump_config), or "refused". */
function upstreamParse(args: string[]): Map<string, string> | typeof REFUSED {
  const empty = join(dir, "upstream-test-dir");
  mkdirSync(empty, { recursive: true });
  const r = run([UPSTREAM!, "--test", "--erase", "--force", "--debug", "--size=1T", ...args, empty], { env: { ...process.env, ...ENV } as Record<string, string> });
  const values = new Map<string, string>();
  for (const line of r.stderr.split("\n")) {
    const m = /DEBUG: +([^:]+): (.*)$/.exec(line);
    if (m) values.set(m[1]!.trim(), m[2]!);
  }
  return values.size === 0 ? REFUSED : values;
}

/** An upstream dump value in the units FORMS use: the number in "(131072)", "30s", "4 blocks"; quoted text; true/false. */
function upstreamValue(key: string, text: string): Value {
  if (key === "file_mode" || key === "ec2iam_mode" || key === "compress" || key === "encryption" || key === "authVersion" || key === "accessType") {
    return text === "(none)" ? undefined : text;
  }
  const quoted = /^"(.*)"$/.exec(text);
  if (quoted) return quoted[1] === "(null)" ? undefined : quoted[1];
  if (text === "true" || text === "false") return text === "true";
  const n = /\((\d+)\)$/.exec(text)?.[1] ?? /^(\d+)/.exec(text)?.[1];
  return n !== undefined ? Number(n) : text;
}

describe.skipIf(!UPSTREAM)("upstream master parses the same forms to the same values (UPSTREAM_S3BACKER)", () => {
  test.each(FORMS.map((form) => [form.args.join(" "), form] as const))("%s", (_, form) => {
    const dump = upstreamParse(form.args);
    const theirs = dump === REFUSED ? REFUSED : upstreamValue(form.key, dump.get(form.key) ?? "(missing)");
    expect(theirs).toEqual(form.up ?? form.is);
  });
  test.each(REFUSED_FORMS.map(([args, , key, up]) => [args.join(" "), args, key, up] as const))("refused here: %s", (_, args, key, up) => {
    const dump = upstreamParse(args);
    expect(dump === REFUSED ? REFUSED : upstreamValue(key, dump.get(key) ?? "(missing)")).toEqual(up);
  });
});
