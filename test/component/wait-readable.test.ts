/**
 * The runtime adapter's ppoll(2) on one descriptor, which the FUSE session sleeps in between
 * requests: it must wait its time when nothing comes, and wake at once when something does,
 * including while it sleeps.
 * (Bun only: under Deno, node:fs cannot close a descriptor it did not open; the Deno adapter is
 * exercised by the mounts of test/mount/deno.test.ts.)
 */
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { closeSync, readSync, writeSync } from "node:fs";
import { runtime } from "../../src/runtime/index.ts";

function pair(): [number, number] {
  return runtime.libc.socketpair("seqpacket");
}

test("with nothing to read it sleeps its time and says so", () => {
  const [a, b] = pair();
  try {
    const started = performance.now();
    expect(runtime.libc.waitReadable(a, 30_000)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  } finally {
    closeSync(a);
    closeSync(b);
  }
});

test("with something to read it returns at once, and the message is still there to read", () => {
  const [a, b] = pair();
  try {
    writeSync(b, new Uint8Array([7]));
    const started = performance.now();
    expect(runtime.libc.waitReadable(a, 900_000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000); // not the 900 s it may wait
    const got = new Uint8Array(4);
    expect(readSync(a, got, 0, 4, null)).toBe(1);
    expect(got[0]).toBe(7);
  } finally {
    closeSync(a);
    closeSync(b);
  }
});

test("a message that comes while it sleeps wakes it before its time", async () => {
  const [a, b] = pair();
  // Another process writes 100 ms into a 900 ms wait (this thread cannot: it is asleep).
  const child = spawn("sh", ["-c", "sleep 0.1; printf x >&3"], { stdio: ["ignore", "ignore", "inherit", b] });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  try {
    const started = performance.now();
    expect(runtime.libc.waitReadable(a, 900_000)).toBe(true);
    const waited = performance.now() - started;
    expect(waited).toBeLessThan(700);
  } finally {
    await exited;
    closeSync(a);
    closeSync(b);
  }
});
