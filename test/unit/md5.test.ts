import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Md5Batch, md5InTurns } from "../../src/util/md5.ts";
import { Md5x4, md5x4Available } from "../../src/util/md5x4.ts";

const md5x4 = (inputs: Uint8Array[]) => {
  const run = new Md5x4(inputs);
  while (!run.step());
  return run.digests();
};
const hex = (digest: Uint8Array) => Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
const native = (data: Uint8Array) => createHash("md5").update(data).digest("hex");
const random = (length: number) => {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(length, at + 65536)));
  return bytes;
};

test("the module runs here (WebAssembly SIMD)", () => {
  expect(md5x4Available()).toBe(true);
});

test("RFC 1321 test suite, alone and in all four lanes", () => {
  const suite: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
    ["1234567890".repeat(8), "57edf4a22be3c955ac49da2e2107b67a"],
  ];
  for (const [text, digest] of suite) {
    const bytes = new TextEncoder().encode(text);
    expect(md5x4([bytes]).map(hex)).toEqual([digest]);
    expect(md5x4([bytes, bytes, bytes, bytes]).map(hex)).toEqual([digest, digest, digest, digest]);
  }
});

test("each lane hashes its own input: lengths around chunk, padding and window edges, 1-4 lanes", () => {
  for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 128, 32767, 32768, 32769, 3 * 32768 + 17, 2 ** 20]) {
    for (let lanes = 1; lanes <= 4; lanes++) {
      const inputs = Array.from({ length: lanes }, () => random(length));
      expect(md5x4(inputs).map(hex)).toEqual(inputs.map(native));
    }
  }
  expect(() => md5x4([new Uint8Array(4), new Uint8Array(5)])).toThrow();
});

test("runs stepped in turn keep their own state", () => {
  const a = Array.from({ length: 4 }, () => random(100_000));
  const b = Array.from({ length: 3 }, () => random(70_000));
  const runA = new Md5x4(a), runB = new Md5x4(b);
  let doneA = false, doneB = false;
  while (!doneA || !doneB) {
    doneA ||= runA.step();
    doneB ||= runB.step();
  }
  expect(runA.digests().map(hex)).toEqual(a.map(native));
  expect(runB.digests().map(hex)).toEqual(b.map(native));
});

test("batched digests: any number at once, of mixed lengths, each its own", async () => {
  const batch = new Md5Batch();
  const inputs = [...Array.from({ length: 9 }, () => random(2 ** 20)), random(4096), random(4096), random(100)];
  const digests = await Promise.all(inputs.map((data) => batch.digest(data)));
  expect(digests.map(hex)).toEqual(inputs.map(native));
  // One alone is answered after the short wait for company.
  const alone = random(2 ** 20);
  expect(hex(await batch.digest(alone))).toBe(native(alone));
});

test("a body hashed a slice per turn: the same digest, with other work let in between", async () => {
  for (const length of [0, 1, 65535, 65536, 65537, 2 ** 20 + 3]) {
    const data = random(length);
    expect(hex(await md5InTurns(data))).toBe(native(data));
  }
  let servedMeanwhile = false;
  const digest = md5InTurns(random(2 ** 20));
  setImmediate(() => (servedMeanwhile = true));
  await digest;
  expect(servedMeanwhile).toBe(true);
});
