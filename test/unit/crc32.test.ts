import { expect, test } from "bun:test";
import { runtime } from "../../src/runtime/index.ts";
import { crc32 } from "../../src/util/crc32.ts";
import { pattern } from "../helpers/data.ts";

test("CRC-32 known vectors, and the same as the runtime's native one", () => {
  expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  expect(crc32(new Uint8Array(0))).toBe(0);
  expect(crc32(new TextEncoder().encode("The quick brown fox jumps over the lazy dog"))).toBe(0x414fa339);
  const random = pattern(100_000, 1);
  expect(crc32(random)).toBe(runtime.crc32(random));
});
