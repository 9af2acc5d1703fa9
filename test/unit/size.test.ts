import { expect, test } from "bun:test";
import { formatSize, parseSize } from "../../src/util/size.ts";

test.each([
  ["4096", 4096], ["4k", 4096], ["4K", 4096], ["1M", 2 ** 20], ["1MiB", 2 ** 20], ["10G", 10 * 2 ** 30],
  ["1T", 2 ** 40], ["0", 0], [" 512 ", 512], ["8kb", 8192],
] as const)("parseSize(%p) = %p", (text, bytes) => {
  expect(parseSize(text)).toBe(bytes);
});

test.each(["", "k", "1.5M", "-1", "1X", "1 0", "0x10", "99999999E"])("parseSize(%p) is rejected", (text) => {
  expect(parseSize(text)).toBeUndefined();
});

test.each([[4096, "4K"], [2 ** 20, "1M"], [1536, "1536"], [3 * 2 ** 30, "3G"]] as const)("formatSize(%p) = %p", (bytes, text) => {
  expect(formatSize(bytes)).toBe(text);
});
