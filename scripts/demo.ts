/**
 * The quick-start job: mounts a 1 GiB disk, puts ext4 on it through a loop device, writes files,
 * unmounts, mounts again through a fresh process, verifies every checksum and prints the stats.
 * Cleans up after itself, also when interrupted. Needs root (loop devices and mount).
 *
 * For now the blocks live in a local directory (--test mode); the S3 layer will move them into the
 * bundled S3 server.
 */
import { spawnSync } from "bun";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BINARY = join(import.meta.dir, "../dist/s3backer");
const work = mkdtempSync(join(tmpdir(), "s3backer-demo-"));
const blocks = join(work, "blocks");
const mnt = join(work, "mnt");
const fs = join(work, "ext4");
let loop = "";

function sh(cmd: string[], quiet = false): string {
  const r = spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0 && !quiet) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

const mounted = (path: string) => readFileSync("/proc/self/mountinfo", "utf8").includes(` ${path} `);

async function unmountDisk(): Promise<void> {
  if (!mounted(mnt)) return;
  sh(["umount", mnt]);
  // umount returns before s3backer has flushed and exited; the next mount waits for it.
  while (sh(["pgrep", "-f", `${BINARY} .*${mnt}`], true).trim()) await Bun.sleep(50);
}

function cleanup(): void {
  if (mounted(fs)) sh(["umount", fs], true);
  if (loop) sh(["losetup", "-d", loop], true);
  if (mounted(mnt)) sh(["umount", "-l", mnt], true);
  rmSync(work, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

const step = (text: string) => console.log(`\n== ${text}`);

async function mountDisk(): Promise<void> {
  sh([BINARY, "--test", "--blockSize=1M", "--size=1G", `--logFile=${join(work, "log")}`, blocks, mnt]);
}

try {
  if (process.getuid?.() !== 0) throw new Error("the demo needs root (loop devices and mount)");
  if (!existsSync(BINARY)) throw new Error("dist/s3backer is missing: run 'npm run build'");
  mkdirSync(blocks);
  mkdirSync(mnt);
  mkdirSync(fs);

  step("1. Mount a 1 GiB disk of 1 MiB blocks; each block is one file in the block directory");
  await mountDisk();
  console.log(`   ${mnt}/file: ${sh(["stat", "-c", "%s bytes", join(mnt, "file")]).trim()}, blocks stored: ${readdirSync(blocks).length}`);

  step("2. Put ext4 on it through a loop device and write some files");
  loop = sh(["losetup", "-f", "--show", join(mnt, "file")]).trim();
  sh(["mkfs.ext4", "-q", "-F", loop]);
  sh(["mount", loop, fs]);
  const sums = new Map<string, string>();
  for (let i = 0; i < 8; i++) {
    const data = crypto.getRandomValues(new Uint8Array(4 << 20));
    writeFileSync(join(fs, `file${i}.bin`), data);
    sums.set(`file${i}.bin`, createHash("sha256").update(data).digest("hex"));
  }
  writeFileSync(join(fs, "hello.txt"), "Hello from a disk made of blocks.\n");
  sums.set("hello.txt", createHash("sha256").update(readFileSync(join(fs, "hello.txt"))).digest("hex"));
  console.log(`   wrote ${sums.size} files (32 MiB); ext4 sees: ${sh(["df", "-h", "--output=size,used", fs]).split("\n")[1]!.trim()}`);

  step("3. Unmount everything: s3backer flushes every block before it exits");
  sh(["umount", fs]);
  sh(["losetup", "-d", loop]);
  loop = "";
  await unmountDisk();
  console.log(`   blocks stored: ${readdirSync(blocks).length} of 1024 (zero blocks are never stored)`);

  step("4. Mount again through a fresh process and verify every checksum");
  await mountDisk();
  loop = sh(["losetup", "-f", "--show", join(mnt, "file")]).trim();
  const fsck = spawnSync(["e2fsck", "-fn", loop]);
  console.log(`   e2fsck -fn: ${fsck.exitCode === 0 ? "clean" : `exit ${fsck.exitCode}`}`);
  sh(["mount", "-o", "ro", loop, fs]);
  let bad = 0;
  for (const [name, sum] of sums) {
    if (createHash("sha256").update(readFileSync(join(fs, name))).digest("hex") !== sum) bad++;
  }
  console.log(`   ${sums.size - bad} of ${sums.size} files match their checksums`);

  step("5. The stats file");
  console.log(readFileSync(join(mnt, "stats"), "utf8").replace(/^/gm, "   ").trimEnd());
  sh(["umount", fs]);
  sh(["losetup", "-d", loop]);
  loop = "";
  await unmountDisk();
  cleanup();
  if (bad || fsck.exitCode !== 0) throw new Error("verification failed");
  console.log("\nDone: everything verified and cleaned up.");
} catch (err) {
  cleanup();
  console.error(`demo failed: ${(err as Error).message}`);
  process.exit(1);
}
