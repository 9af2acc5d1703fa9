/** The single-file filesystem's own rules, without the kernel: how each open of the backed file is cached. */
import { expect, test } from "bun:test";
import type { BackedFile } from "../../src/file/backed-file.ts";
import { FILE_INODE, SingleFileFs } from "../../src/fuse/filesystem.ts";
import { O_DIRECT, O_RDONLY, O_WRONLY, OpenFlag } from "../../src/fuse/kernel-abi.ts";

const O_RDWR = 2;

function fs(directIO = false): SingleFileFs {
  const file = { size: 1 << 20 } as BackedFile;
  return new SingleFileFs(file, {
    filename: "file", statsFilename: "stats", fileMode: 0o600, uid: 0, gid: 0, readOnly: false, directIO, blockSize: 4096,
    statsText: () => "", resetStats: () => {}, flush: async () => {},
  });
}

/** "direct", "cached" (page cache kept from earlier opens) or "cached, dropped" (the kernel drops it at this open). */
function mode(f: SingleFileFs, flags: number): { fh: number; how: string } {
  const opened = f.open(FILE_INODE, flags);
  expect(opened.flags & OpenFlag.PARALLEL_DIRECT_WRITES).toBeTruthy();
  const how = opened.flags & OpenFlag.DIRECT_IO ? "direct" : opened.flags & OpenFlag.KEEP_CACHE ? "cached" : "cached, dropped";
  return { fh: opened.fh, how };
}

test("readers and read-write opens use the page cache, kept across opens", () => {
  const f = fs();
  const a = mode(f, O_RDONLY);
  const b = mode(f, O_RDWR);
  expect([a.how, b.how]).toEqual(["cached", "cached"]);
  expect(a.fh).not.toBe(b.fh);
});

test("a write-only open goes around the page cache, and the next cached open drops what the kernel held", () => {
  const f = fs();
  f.release(FILE_INODE, mode(f, O_RDONLY).fh);
  const writer = mode(f, O_WRONLY);
  expect(writer.how).toBe("direct");
  f.release(FILE_INODE, writer.fh);
  expect(mode(f, O_RDONLY).how).toBe("cached, dropped");
  expect(mode(f, O_RDONLY).how).toBe("cached");
});

test("an O_DIRECT open is direct too, read-write or read-only", () => {
  const f = fs();
  const a = mode(f, O_RDWR | O_DIRECT);
  const b = mode(f, O_RDONLY | O_DIRECT);
  expect([a.how, b.how]).toEqual(["direct", "direct"]);
  f.release(FILE_INODE, a.fh);
  f.release(FILE_INODE, b.fh);
  expect(mode(f, O_RDWR).how).toBe("cached, dropped");
  // With a cached handle open, an O_DIRECT open shares the page cache (the kernel keeps O_DIRECT coherent with it).
  expect(mode(f, O_RDWR | O_DIRECT).how).toBe("cached");
});

test("cached and direct handles never overlap", () => {
  const f = fs();
  // A writer while a reader holds cached pages writes through the page cache, which keeps them current.
  const reader = mode(f, O_RDONLY);
  const cachedWriter = mode(f, O_WRONLY);
  expect(cachedWriter.how).toBe("cached");
  f.release(FILE_INODE, reader.fh);
  f.release(FILE_INODE, cachedWriter.fh);
  // While a direct writer is open, every open is direct: nothing gets cached that its writes could make stale.
  const writer = mode(f, O_WRONLY);
  expect(writer.how).toBe("direct");
  expect(mode(f, O_RDONLY).how).toBe("direct");
  expect(mode(f, O_RDWR).how).toBe("direct");
  f.release(FILE_INODE, writer.fh);
  // The two direct readers above are still open.
  expect(mode(f, O_RDONLY).how).toBe("direct");
});

test("--directIO makes every open direct", () => {
  const f = fs(true);
  expect([mode(f, O_RDONLY).how, mode(f, O_RDWR).how, mode(f, O_WRONLY).how]).toEqual(["direct", "direct", "direct"]);
});
