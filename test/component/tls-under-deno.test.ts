/**
 * The TLS component tests again under Deno, whose TLS path differs from Bun's (a tls.Server fed
 * the accepted socket, not upgradeTLS): `npm run test:deno` takes test/unit/ only, so these come
 * in here, through the same bun:test shim.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { runAsync } from "../helpers/disk.ts";

const ROOT = join(import.meta.dir, "../..");
const FILES = ["test/component/tls-stream-contract.test.ts", "test/component/nbd-tls.test.ts"];

test("the TLS stream contract and NBD's STARTTLS pass under Deno", async () => {
  const deno = join(ROOT, "node_modules/.bin/deno");
  // A test that waits for what a bug keeps from coming would hang Deno: it gets 90 s, 10 times its need.
  const r = await runAsync(["timeout", "90", deno, "test", "-A", "--quiet", "--config", join(ROOT, "test/deno/deno.json"), "--no-check", ...FILES.map((f) => join(ROOT, f))], {
    env: { ...(process.env as Record<string, string>), NO_COLOR: "1" },
  });
  const summary = /ok \| (\d+) passed \| (\d+) failed/.exec(r.stdout);
  if (r.code !== 0 || !summary) throw new Error(`deno test exited ${r.code}:\n${r.stdout}${r.stderr}`);
  expect(Number(summary[1])).toBeGreaterThanOrEqual(14); // every test of both files ran
  expect(Number(summary[2])).toBe(0);
});
