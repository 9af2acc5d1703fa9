/**
 * A minimal container: a root filesystem holding only dist/s3backer and the shared libraries
 * ldd names, with /dev/fuse and /proc. s3backer mounts inside it (chroot), in --test mode and
 * against the embedded S3 server, and the data is written and read from outside.
 */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BINARY, isMounted, pattern, run, runAsync, sh, tempDir, waitFor } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";

const server = startEmbedded();
const root = tempDir("rootfs");
const mounts: string[] = []; // innermost last

function buildRoot(): void {
  copyFileSync(BINARY, join(root, "s3backer"));
  sh(["chmod", "755", join(root, "s3backer")]);
  const libs = sh(["ldd", BINARY]).match(/\/\S+/g) ?? [];
  for (const lib of libs) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(root, lib));
  }
  for (const d of ["proc", "dev", "tmp", "blocks", "mnt", "mnt2"]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "dev", "fuse"), "");
  sh(["mount", "-t", "proc", "proc", join(root, "proc")]);
  mounts.push(join(root, "proc"));
  sh(["mount", "--bind", "/dev/fuse", join(root, "dev", "fuse")]);
  mounts.push(join(root, "dev", "fuse"));
}

afterAll(async () => {
  for (const m of [join(root, "mnt"), join(root, "mnt2")]) if (isMounted(m)) run(["umount", "-l", m]);
  for (const m of mounts.reverse()) run(["umount", "-l", m]);
  await server.stop();
  rmSync(root, { recursive: true, force: true });
});

const inRoot = (args: string[]) => runAsync(["chroot", root, "/s3backer", ...args]);

test("the root filesystem holds nothing but the binary and the libraries ldd lists", () => {
  buildRoot();
  const files = sh(["find", root, "-path", join(root, "proc"), "-prune", "-o", "-type", "f", "-print"]).trim().split("\n").map((f) => f.slice(root.length)).sort();
  expect(files.filter((f) => f !== "/dev/fuse").every((f) => f === "/s3backer" || /\/lib[^/]*\/.*\.so/.test(f))).toBe(true);
});

test("in the container: --version, and a --test mount that stores blocks", async () => {
  expect((await inRoot(["--version"])).stdout).toMatch(/^s3backer /);
  const r = await inRoot(["--test", "--size=1M", "--blockSize=64k", "--pidFile=/tmp/pid", "/blocks", "/mnt"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const file = join(root, "mnt", "file");
  await Bun.write(join(root, "tmp", "data"), pattern(128 * 1024, 4));
  expect((await runAsync(["dd", `if=${join(root, "tmp", "data")}`, `of=${file}`, "bs=64k", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  expect(readdirSync(join(root, "blocks")).filter((n) => /^[0-9a-f]{8}$/.test(n)).sort()).toEqual(["00000000", "00000001"]);
  await runAsync(["umount", join(root, "mnt")]);
  await waitFor("exit", () => run(["test", "-e", join(root, "tmp", "pid")]).code !== 0);
});

test("in the container: a disk in the S3 server outside it", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "chroot");
  const r = await inRoot([...peerArgs(peer), "--size=1M", "--blockSize=64k", "--pidFile=/tmp/pid2", bucket, "/mnt2"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const file = join(root, "mnt2", "file");
  await Bun.write(join(root, "tmp", "data2"), pattern(64 * 1024, 5));
  expect((await runAsync(["dd", `if=${join(root, "tmp", "data2")}`, `of=${file}`, "bs=64k", "seek=3", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  expect(new Uint8Array(await readFile(file)).subarray(3 * 65536, 4 * 65536)).toEqual(pattern(64 * 1024, 5));
  expect(server.objects.get(bucket, "00000003")?.body).toEqual(pattern(64 * 1024, 5));
  await runAsync(["umount", join(root, "mnt2")]);
  await waitFor("exit", () => run(["test", "-e", join(root, "tmp", "pid2")]).code !== 0);
});
