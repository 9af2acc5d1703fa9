/** ext4 on a loop device on the mounted file: the way people use s3backer. */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { blockFiles, cleanupDisks, isMounted, mountDisk, pattern, run, sh, tempDir } from "../helpers/disk.ts";

const cleanups: (() => void)[] = [];
afterEach(async () => {
  const failed: (() => void)[] = [];
  for (const c of cleanups.splice(0).reverse()) {
    try {
      c();
    } catch {
      failed.push(c);
    }
  }
  await cleanupDisks();
  // A folder that still held a mount can go once the disks are unmounted.
  for (const c of failed) c();
});

function makeTree(root: string): void {
  for (let d = 0; d < 4; d++) {
    const sub = join(root, `dir${d}`, "nested");
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 10; f++) writeFileSync(join(sub, `f${f}.bin`), pattern(1000 + f * 77_777, d * 100 + f + 1));
  }
  writeFileSync(join(root, "big.bin"), pattern(24 << 20, 4242));
}

/** A loop device on the file; with `directIO`, one that bypasses the page cache (as the README advises). */
function attachLoop(file: string, directIO: boolean): string {
  const dev = sh(["losetup", ...(directIO ? ["--direct-io=on"] : []), "-f", "--show", file]).trim();
  cleanups.push(() => run(["losetup", "-d", dev]));
  expect(readFileSync(`/sys/block/${basename(dev)}/loop/dio`, "utf8").trim()).toBe(directIO ? "1" : "0");
  return dev;
}

function mountExt4(dev: string, at: string): void {
  mkdirSync(at, { recursive: true });
  sh(["mount", "-t", "ext4", dev, at]);
  cleanups.push(() => {
    if (isMounted(at)) run(["umount", at]);
  });
}

test("mkfs.ext4, copy a tree, e2fsck clean, remount through a fresh process (loop device now with direct I/O), checksums equal; fstrim frees blocks", async () => {
  const dir = tempDir("ext4");
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, "src");
  makeTree(src);
  const args = ["--blockSize=64k", "--size=256M"];

  let disk = await mountDisk(args, { dir });
  let dev = attachLoop(disk.file, false);
  sh(["mkfs.ext4", "-q", "-F", dev]);
  const fs = join(dir, "ext4");
  mountExt4(dev, fs);
  sh(["cp", "-a", `${src}/.`, fs]);
  sh(["umount", fs]);
  expect(run(["e2fsck", "-fn", dev]).code).toBe(0);
  sh(["losetup", "-d", dev]);
  await disk.unmount();
  const stored = blockFiles(disk.blocks).length;
  expect(stored).toBeGreaterThan(24 << 20 >> 16); // at least the big file's blocks

  disk = await mountDisk(args, { dir });
  dev = attachLoop(disk.file, true);
  expect(run(["e2fsck", "-fn", dev]).code).toBe(0);
  mountExt4(dev, fs);
  expect(run(["diff", "-r", "--exclude=lost+found", src, fs]).stdout).toBe("");

  rmSync(join(fs, "big.bin"));
  sh(["sync"]);
  sh(["fstrim", fs]);
  // The big file's 384 blocks of 64k are freed; allow for metadata blocks that stay. The deletes
  // are written back in the background after fstrim returns, like any write: wait for them.
  let freed = 0;
  for (const until = Date.now() + 10_000; Date.now() < until; await Bun.sleep(100)) {
    freed = stored - blockFiles(disk.blocks).length;
    if (freed > 300) break;
  }
  expect(freed).toBeGreaterThan(300);
  sh(["umount", fs]);
  expect(run(["e2fsck", "-fn", dev]).code).toBe(0);
  sh(["losetup", "-d", dev]);
  await disk.unmount();
});
