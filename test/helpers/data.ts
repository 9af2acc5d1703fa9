/** Test helpers that need no particular runtime (the unit tests also run under Deno). */
import { accessSync, constants, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `s3b-${tag}-`));
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced. */
export function pattern(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let x = (seed * 2 + 1) | 0; // odd and distinct for every seed (seed | 1 made 2 and 3 the same)
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A seeded random source in [0, 1) (xorshift32), for tests that print their seed. */
export function seededRandom(seed: number): () => number {
  let x = (seed * 2 + 1) | 0;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Why a promise rejected, which it must (`expect(...).rejects` is not in the Deno shim). */
export async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("it did not reject");
}

/**
 * Throws unless each command is on the PATH: a test whose client or tool is missing fails saying
 * which package brings it (.ci/run installs them), instead of passing without having run.
 */
export function requireCommands(commands: Record<string, string>): void {
  const dirs = (process.env.PATH ?? "").split(":").concat("/usr/sbin", "/sbin");
  for (const [command, pkg] of Object.entries(commands)) {
    const found = dirs.some((d) => {
      try {
        accessSync(join(d, command), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) throw new Error(`${command} is not installed (Debian package ${pkg}): this test needs it`);
  }
}
