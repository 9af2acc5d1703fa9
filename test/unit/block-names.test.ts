import { expect, test } from "bun:test";
import { blockHash, blockName, parseBlockName } from "../../src/object/block-names.ts";

test("plain names are 8 lower-case hex digits", () => {
  expect(blockName(0, false)).toBe("00000000");
  expect(blockName(3, false)).toBe("00000003");
  expect(blockName(0xabcdef, false)).toBe("00abcdef");
  expect(blockName(0xffffffff, false)).toBe("ffffffff");
});

test("hash prefix matches the original s3backer's (block 0 is c448b72c-00000000)", () => {
  expect(blockName(0, true)).toBe("c448b72c-00000000");
  expect(blockHash(0)).toBe(0xc448b72c);
  // Every hash is a 32-bit unsigned value and differs for neighbouring blocks.
  const seen = new Set<number>();
  for (let b = 0; b < 1000; b++) {
    const h = blockHash(b);
    expect(h >>> 0).toBe(h);
    seen.add(h);
  }
  expect(seen.size).toBe(1000);
});

test("names parse back; foreign names do not", () => {
  for (const b of [0, 1, 255, 0x12345678, 0xffffffff]) {
    expect(parseBlockName(blockName(b, false), false)).toBe(b);
    expect(parseBlockName(blockName(b, true), true)).toBe(b);
  }
  for (const name of ["s3backer-mounted", "0000000", "000000000", "0000000G", "00000000.tmp", "ABCDEF01"]) {
    expect(parseBlockName(name, false)).toBeUndefined();
  }
  expect(parseBlockName("00000000-00000000", true)).toBeUndefined(); // wrong hash
  expect(parseBlockName("00000001", true)).toBeUndefined();
});
