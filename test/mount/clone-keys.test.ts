/**
 * Clones of disks with a wrapped key (--keyWrap), through dist/s3backer and real mounts against the
 * embedded server: a clone reads its base's blocks with the base's data key and gets a wrapped key
 * of its own (each disk its own key, so passwd works on each); after the base's password changes,
 * the clone with the old one is refused in one line naming the base's key object, never given
 * wrong data, until its own password is changed too; a scrub of the clone checks every block it
 * reads, its base's included; flatten re-encrypts the inherited blocks with the clone's key.
 */
import { expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, mountWith, pattern, runAsync } from "../helpers/disk.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { peer, workDir } = embeddedSuite();
const s3 = rawClient(peer);
const MIB = 1 << 20;
const BASE_DATA = pattern(MIB, 21);
const CLONE_DATA = pattern(MIB, 22);

function passwordFile(dir: string, password: string): string {
  const path = join(dir, `pw-${password}`);
  writeFileSync(path, `${password}\n`);
  return path;
}

const encrypt = (dir: string, password: string) => ["--encrypt", `--passwordFile=${passwordFile(dir, password)}`];
const exists = async (key: string) => (await s3("HEAD", key)).status === 200;

async function writeAt(file: string, dir: string, data: Uint8Array, offset: number): Promise<void> {
  const src = join(dir, "data");
  writeFileSync(src, data);
  const dd = await runAsync(["dd", `if=${src}`, `of=${file}`, "bs=64k", `seek=${offset / 65536}`, "conv=notrunc,fsync", "status=none"]);
  expect(dd.code).toBe(0);
}

/** The first two MiB of a disk, mounted read-only (async: this process is the S3 server too). */
async function firstTwoMiB(dir: string, args: string[]): Promise<Uint8Array> {
  const disk = await mountWith([...peerArgs(peer), "--readOnly", ...args], dir, true);
  const bytes = new Uint8Array((await readFile(disk.file)).subarray(0, 2 * MIB));
  await disk.unmount();
  return bytes;
}

test("a clone of a --keyWrap disk: the base's blocks read with its key, a wrapped key of its own, passwd per disk, scrub of the whole chain, flatten", async () => {
  const bucket = await freshBucket(peer, "ckeys");
  const dir = workDir("ckeys");
  const sub = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const base = await mountWith([...peerArgs(peer), "--size=4M", "--blockSize=64k", ...encrypt(dir, "one"), "--keyWrap", `${bucket}/base`], sub("base"), true);
  await writeAt(base.file, dir, BASE_DATA, 0);
  await base.unmount();

  // No --keyWrap given: the clone of a wrapped-key disk gets a wrapped key all the same.
  const clone = await mountWith([...peerArgs(peer), `--base=${bucket}/base`, ...encrypt(dir, "one"), `${bucket}/clone`], sub("clone"), true);
  expect(new Uint8Array((await readFile(clone.file)).subarray(0, MIB))).toEqual(BASE_DATA);
  await writeAt(clone.file, dir, CLONE_DATA, MIB);
  await clone.unmount();
  expect(await exists(`${bucket}/base/s3backer-key`)).toBe(true);
  expect(await exists(`${bucket}/clone/s3backer-key`)).toBe(true);
  const info = await runAsync([BINARY, "info", ...peerArgs(peer), `${bucket}/clone`]);
  expect(info.stdout).toContain(`a data key wrapped by the password (${bucket}/clone/s3backer-key;`);
  const both = new Uint8Array(2 * MIB);
  both.set(BASE_DATA);
  both.set(CLONE_DATA, MIB);
  expect(await firstTwoMiB(sub("r1"), [...encrypt(dir, "one"), `${bucket}/clone`])).toEqual(both);

  // The base's password changes: the clone with the old one is one line naming the base's key object.
  const passwd = (disk: string, from: string, to: string) =>
    runAsync([BINARY, "passwd", ...peerArgs(peer), `--passwordFile=${passwordFile(dir, from)}`, `--newPasswordFile=${passwordFile(dir, to)}`, `${bucket}/${disk}`]);
  expect((await passwd("base", "one", "two")).code).toBe(0);
  const mnt = join(sub("refused"), "mnt");
  mkdirSync(mnt);
  for (const password of ["one", "two"]) {
    const r = await runAsync([BINARY, ...peerArgs(peer), "--readOnly", ...encrypt(dir, password), `${bucket}/clone`, mnt]);
    expect(r.code).toBe(1);
    const wrongFor = password === "one" ? `${bucket}/base/s3backer-key` : `${bucket}/clone/s3backer-key`;
    expect(r.stderr).toBe(`s3backer: wrong password for the disk's key (${wrongFor}), or the key object was changed\n`);
  }
  expect((await passwd("clone", "one", "two")).code).toBe(0);
  expect(await firstTwoMiB(sub("r2"), [...encrypt(dir, "two"), `${bucket}/clone`])).toEqual(both);

  // A scrub of the clone reads every block it reads: its own 16 and the base's 16 below them.
  const scrub = await runAsync([BINARY, "scrub", ...peerArgs(peer), ...encrypt(dir, "two"), "--quiet", `${bucket}/clone`]);
  expect(scrub.code).toBe(0);
  expect(scrub.stderr).toContain("its own and those it reads from");
  expect(scrub.stderr).toMatch(/scrubbed .*clone: 32 blocks stored, 0 damaged/);

  // Flatten: the inherited blocks re-encrypted with the clone's own key; the clone reads the same alone.
  const flat = await runAsync([BINARY, "flatten", ...peerArgs(peer), ...encrypt(dir, "two"), "--quiet", `${bucket}/clone`]);
  expect(flat.stderr).toContain("is flat");
  expect(flat.code).toBe(0);
  expect(await firstTwoMiB(sub("r3"), [...encrypt(dir, "two"), `${bucket}/clone`])).toEqual(both);
}, 300_000); // a dozen Argon2id runs of 64 MiB: seconds on a quiet machine, minutes on a loaded one
