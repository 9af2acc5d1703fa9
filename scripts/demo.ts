/**
 * The quick-start job: mounts a 1 GiB disk, puts ext4 on it through a loop device, writes files,
 * unmounts, mounts again through a fresh process, verifies every checksum and prints the stats.
 * Cleans up after itself, also when interrupted. Needs root (loop devices and mount).
 *
 * The blocks go to the S3 server bundled in the binary (`s3backer s3-server`), on loopback, with
 * real HTTP and SigV4: the same path as a real bucket.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBlockName } from "../src/object/block-names.ts";

const BINARY = join(import.meta.dir, "../dist/s3backer");
const work = mkdtempSync(join(tmpdir(), "s3backer-demo-"));
const objects = join(work, "objects");
const ACCESS = "demo-access-key";
const SECRET = "demo-secret-key";
let server: Subprocess | undefined;
let serverURL = "";
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
  server?.kill();
  rmSync(work, { recursive: true, force: true });
}

/** Starts the bundled S3 server on a free port and returns its URL. */
async function startServer(): Promise<string> {
  const proc = spawn([BINARY, "s3-server", "--port=0", `--dir=${objects}`, `--access-key=${ACCESS}`, `--secret-key=${SECRET}`, "--bucket=demo"], { stdout: "pipe" });
  server = proc;
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const url = /listening on (\S+)/.exec(new TextDecoder().decode(value))?.[1];
  if (!url) throw new Error("the bundled S3 server did not start");
  return url;
}

/** The blocks stored in the bucket, as a client sees them: ListObjectsV2, page by page. */
async function objectCount(): Promise<number> {
  const aws = new AwsClient({ accessKeyId: ACCESS, secretAccessKey: SECRET, service: "s3", region: "us-east-1" });
  let count = 0;
  let token: string | undefined;
  do {
    const query = `list-type=2${token ? `&continuation-token=${encodeURIComponent(token)}` : ""}`;
    const r = await aws.fetch(`${serverURL}demo?${query}`);
    if (!r.ok) throw new Error(`listing the bucket: HTTP ${r.status}`);
    const xml = await r.text();
    count += [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].filter((m) => parseBlockName(m[1]!, false) !== undefined).length;
    token = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1];
  } while (token);
  return count;
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

const step = (text: string) => console.log(`\n== ${text}`);

async function mountDisk(): Promise<void> {
  // Credentials as a CI job would pass them: the standard AWS variables.
  const env = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_ENDPOINT_URL: serverURL };
  const r = spawnSync([BINARY, "--blockSize=1M", "--size=1G", `--logFile=${join(work, "log")}`, "demo", mnt], { env, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`mount: ${r.stderr.toString().trim()}`);
}

try {
  if (process.getuid?.() !== 0) throw new Error("the demo needs root (loop devices and mount)");
  if (!existsSync(BINARY)) throw new Error("dist/s3backer is missing: run 'npm run build'");
  mkdirSync(mnt);
  mkdirSync(fs);

  step("1. Start the bundled S3 server on loopback, then mount a 1 GiB disk of 1 MiB blocks in its bucket");
  serverURL = await startServer();
  console.log(`   S3 server: ${serverURL} (objects kept in ${objects})`);
  await mountDisk();
  console.log(`   ${mnt}/file: ${sh(["stat", "-c", "%s bytes", join(mnt, "file")]).trim()}; objects in the bucket: ${await objectCount()} (block 0 records the sizes)`);

  step("2. Put ext4 on it through a loop device and write some files");
  loop = sh(["losetup", "--direct-io=on", "-f", "--show", join(mnt, "file")]).trim();
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
  console.log(`   objects in the bucket: ${await objectCount()} of 1024 blocks (zero blocks are never stored)`);

  step("4. Mount again through a fresh process (sizes auto-detected from block 0) and verify every checksum");
  await mountDisk();
  loop = sh(["losetup", "--direct-io=on", "-f", "--show", join(mnt, "file")]).trim();
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
