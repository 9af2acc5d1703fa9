/**
 * --encrypt --keyWrap and `s3backer passwd` through dist/s3backer and real mounts, against the
 * embedded server: the password changed twice with the data read back after each, old and wrong
 * passwords refused with one line, no block object changed; passwd killed -9 before each of its
 * requests takes effect, at random moments, or with its PUT stored and the answer held back, leaves
 * the old password or the new one working; a disk in the original's format (or none) gets one line
 * and no change; a changed key object is refused; --erase removes the key object last.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, killHard, mountWith, pattern, runAsync, waitFor } from "../helpers/disk.ts";
import { seededRandom } from "../helpers/data.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";
import { unwrapKey } from "../../src/store/codec/wrapped-key.ts";

const { server, peer, workDir } = embeddedSuite();
const s3 = rawClient(peer);
const DATA = pattern(1 << 20, 11);
const SIZES = ["--size=4M", "--blockSize=64k"];

/** A password file in `dir`. */
function passwordFile(dir: string, password: string): string {
  const path = join(dir, `pw-${password}`);
  writeFileSync(path, `${password}\n`);
  return path;
}

/** A disk made with --keyWrap and password `password`, DATA written at its start. */
async function keyWrappedDisk(tag: string, password: string) {
  const bucket = await freshBucket(peer, tag);
  const dir = workDir(tag);
  const disk = await mountWith([...peerArgs(peer), ...SIZES, "--encrypt", "--keyWrap", `--passwordFile=${passwordFile(dir, password)}`, bucket], dir, true);
  writeFileSync(join(dir, "data"), DATA);
  const dd = await runAsync(["dd", `if=${join(dir, "data")}`, `of=${disk.file}`, "bs=64k", "conv=notrunc,fsync", "status=none"]);
  expect(dd.code).toBe(0);
  await disk.unmount();
  return { bucket, dir, mnt: disk.mnt };
}

/** Mounts read-only with `password` and returns the first MiB. */
async function readBack(bucket: string, dir: string, password: string): Promise<Uint8Array> {
  const disk = await mountWith([...peerArgs(peer), "--encrypt", `--passwordFile=${passwordFile(dir, password)}`, "--readOnly", bucket], dir, true);
  // Not readFileSync: this process is the S3 server too, and must go on answering.
  const bytes = new Uint8Array((await readFile(disk.file)).subarray(0, DATA.length));
  await disk.unmount();
  return bytes;
}

const mountAttempt = (bucket: string, dir: string, mnt: string, password: string) =>
  runAsync([BINARY, ...peerArgs(peer), "--encrypt", `--passwordFile=${passwordFile(dir, password)}`, bucket, mnt]);
const passwd = (bucket: string, dir: string, from: string, to: string) =>
  runAsync([BINARY, "passwd", ...peerArgs(peer), `--passwordFile=${passwordFile(dir, from)}`, `--newPasswordFile=${passwordFile(dir, to)}`, bucket]);

/** Every block object's ETag, by key. */
async function blockEtags(bucket: string): Promise<Map<string, string>> {
  const xml = new TextDecoder().decode((await s3("GET", `${bucket}?list-type=2`)).body);
  const etags = new Map<string, string>();
  for (const m of xml.matchAll(/<Key>([0-9a-f]{8})<\/Key>.*?<ETag>([^<]*)<\/ETag>/g)) etags.set(m[1]!, m[2]!);
  return etags;
}

const keyObjectOf = async (bucket: string) => (await s3("GET", `${bucket}/s3backer-key`)).body;
const opens = (body: Uint8Array, password: string) => unwrapKey(body, password).then(() => true, () => false);

test("--keyWrap: the password changed twice, the data read back after each; old and wrong passwords refused with one line; no block object changed", async () => {
  const { bucket, dir, mnt } = await keyWrappedDisk("kwrap", "first");
  const etags = await blockEtags(bucket);
  expect(etags.size).toBe(16);
  const refusal = (p: string) => mountAttempt(bucket, dir, mnt, p);
  const wrong = `s3backer: wrong password for the disk's key (${bucket}/s3backer-key), or the key object was changed\n`;
  for (const [from, to, generation] of [["first", "second", 2], ["second", "third", 3]] as const) {
    const changed = await passwd(bucket, dir, from, to);
    expect(changed.stderr).toBe(`s3backer: password changed (${bucket}/s3backer-key, generation ${generation}); no block was rewritten\n`);
    expect(changed.code).toBe(0);
    expect(await readBack(bucket, dir, to)).toEqual(DATA);
    for (const old of ["first", "second", "guess"].filter((p) => p !== to)) {
      const r = await refusal(old);
      expect(r.stderr).toBe(wrong);
      expect(r.code).toBe(1);
    }
  }
  expect(await blockEtags(bucket)).toEqual(etags);
  // The old password gives passwd no way in either.
  const again = await passwd(bucket, dir, "first", "fourth");
  expect(again.stderr).toBe(wrong);
  expect(again.code).toBe(1);
}, 120_000);

test("passwd killed -9 before each of its requests takes effect, at random moments, and with its PUT stored unanswered: the old password or the new one opens the disk, never neither", async () => {
  const { bucket, dir } = await keyWrappedDisk("kwkill", "p0");
  const seed = Number(process.env.SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`passwd kill points: seed ${seed} (SEED=${seed} replays them)`);
  const random = seededRandom(seed);
  // How long one whole change takes here.
  const started = performance.now();
  expect((await passwd(bucket, dir, "p0", "p1")).code).toBe(0);
  const whole = performance.now() - started;
  let current = "p1";
  let known = await keyObjectOf(bucket);
  expect(await opens(known, current)).toBe(true);
  /** Starts a change to `to`, kills it -9 once `when` resolves, and tells which password opens the key object left. */
  const killDuring = async (to: string, when: (p: Bun.Subprocess) => Promise<unknown>, what: string) => {
    server.counters.reset();
    const p = Bun.spawn([BINARY, "passwd", ...peerArgs(peer), `--passwordFile=${passwordFile(dir, current)}`, `--newPasswordFile=${passwordFile(dir, to)}`, bucket], { stdout: "ignore", stderr: "ignore" });
    await when(p);
    await killHard(p.pid);
    await p.exited;
    const killed = p.signalCode === "SIGKILL";
    await Bun.sleep(1000); // a request the server still held (250 ms) is answered by now
    server.reset();
    const body = await keyObjectOf(bucket);
    // The very bytes the old password opened, or a new object that the new password opens: nothing else passes.
    const now = !Buffer.from(body).equals(Buffer.from(known));
    if (now) expect(await opens(body, to)).toBe(true);
    console.log(`passwd ${current} -> ${to} ${killed ? "killed" : "finished before the kill"} (${what}): the ${now ? "new" : "old"} password opens the disk`);
    if (now) [current, known] = [to, body];
    return { killed, now };
  };
  // Step by step: its n-th request is held at the server, then refused (503) as the process dies, so
  // it is killed after n-1 requests took effect and before the n-th did; until a run gets through.
  const stepKills: boolean[] = [];
  for (let n = 1; ; n++) {
    const r = await killDuring(`s${n}`, async (p) => {
      server.setFaults({ latencyMs: 250 });
      await waitFor(`request ${n}`, () => server.counters.total >= n || p.exitCode !== null);
      server.setFaults({ errorRate: 1, errorStatuses: [503] });
    }, `before its request ${n} took effect`);
    if (!r.killed) break;
    stepKills.push(r.now);
    expect(n).toBeLessThan(20);
  }
  // Killed on both sides of the step that stores the new key object.
  expect(stepKills).toContain(false);
  expect(stepKills).toContain(true);
  for (let i = 0; i < 2; i++) {
    const ms = random() * 1.1 * whole;
    await killDuring(`r${i}`, () => Bun.sleep(ms), `after ${Math.round(ms)} ms`);
  }
  // The PUT stored but its answer never sent: the process dies not knowing, and the new password is the one.
  const before = known;
  server.setFaults({ lostPutAnswers: 1, keyPattern: /s3backer-key$/ });
  const lost = await killDuring("last", () => waitFor("the PUT stored", async () => !Buffer.from(await keyObjectOf(bucket)).equals(Buffer.from(before)), 20_000), "its PUT stored, the answer held back");
  expect(lost).toEqual({ killed: true, now: true });
  expect(await readBack(bucket, dir, current)).toEqual(DATA);
}, 150_000);

test("passwd on a disk in the original's format, a plain disk, or none: one line each, nothing written", async () => {
  const dir = workDir("kwold");
  const original = await freshBucket(peer, "kwold");
  const plain = await freshBucket(peer, "kwplain");
  const empty = await freshBucket(peer, "kwempty");
  for (const [bucket, flags] of [[original, ["--encrypt", `--passwordFile=${passwordFile(dir, "pw")}`]], [plain, []]] as const) {
    const disk = await mountWith([...peerArgs(peer), ...SIZES, ...flags, bucket], join(dir, bucket), true);
    await disk.unmount();
  }
  server.counters.reset();
  const r = await passwd(original, dir, "pw", "new");
  expect(r.stderr).toBe(
    `s3backer: ${original} is encrypted in the original's format: its key is derived from the password itself, so a new password would mean ` +
      "rewriting every block, which passwd does not do (copy the data to a new disk made with --encrypt --keyWrap instead)\n",
  );
  expect(r.code).toBe(1);
  expect((await passwd(plain, dir, "pw", "new")).stderr).toBe(`s3backer: ${plain} is not encrypted: there is no password to change\n`);
  expect((await passwd(empty, dir, "pw", "new")).stderr).toBe(`s3backer: ${empty} has no key object (${empty}/s3backer-key): only a disk made with --encrypt --keyWrap has a password to change\n`);
  expect(server.counters.requests.PUT + server.counters.requests.DELETE + server.counters.requests.BULK_DELETE).toBe(0);
  // --keyWrap cannot turn a disk in the original's format into one with a wrapped key.
  const keyWrap = await runAsync([BINARY, ...peerArgs(peer), "--encrypt", "--keyWrap", `--passwordFile=${passwordFile(dir, "pw")}`, original, join(dir, original, "mnt")]);
  expect(keyWrap.stderr).toMatch(/^s3backer: --keyWrap: the disk already has blocks \(block 0\) but no key object: its blocks are in the original's format, so mount it without --keyWrap\n$/);
  expect(server.counters.requests.PUT).toBe(0);
}, 120_000);

test("a changed key object is refused with one line and never decrypts a block; without --encrypt a key-wrapped disk is refused even with no block yet", async () => {
  const { bucket, dir, mnt } = await keyWrappedDisk("kwtamper", "pw");
  const stored = await keyObjectOf(bucket);
  const doc = JSON.parse(new TextDecoder().decode(stored));
  const put = (body: string | Uint8Array) => s3("PUT", `${bucket}/s3backer-key`, { body });
  server.counters.reset();
  for (const [change, line] of [
    [{ ...doc, generation: doc.generation + 1 }, `wrong password for the disk's key (${bucket}/s3backer-key), or the key object was changed`],
    [{ ...doc, kdf: { ...doc.kdf, t: doc.kdf.t + 1 } }, `wrong password for the disk's key (${bucket}/s3backer-key), or the key object was changed`],
    [{ ...doc, kdf: { ...doc.kdf, m: 1 << 30 } }, `${bucket}/s3backer-key: key derivation parameters out of bounds (m 1073741824 KiB, t 3, p 4): the disk's key cannot be read`],
    ["not json", `${bucket}/s3backer-key: not a key object (not JSON): the disk's key cannot be read`],
  ] as const) {
    await put(typeof change === "string" ? change : JSON.stringify(change));
    const r = await mountAttempt(bucket, dir, mnt, "pw");
    expect(r.stderr).toBe(`s3backer: ${line}\n`);
    expect(r.code).toBe(1);
  }
  expect(server.counters.requests.PUT).toBe(4); // only the test's own
  await put(stored);
  expect(await readBack(bucket, dir, "pw")).toEqual(DATA);

  const fresh = await freshBucket(peer, "kwnoblock");
  const made = await mountWith([...peerArgs(peer), ...SIZES, "--encrypt", "--keyWrap", `--passwordFile=${passwordFile(dir, "pw")}`, fresh], join(dir, "fresh"), true);
  await made.unmount();
  await s3("DELETE", `${fresh}/00000000`); // no block at all: only the key object says the disk is encrypted
  const clear = await runAsync([BINARY, ...peerArgs(peer), ...SIZES, fresh, made.mnt]);
  expect(clear.stderr).toBe(`s3backer: the disk is encrypted (its key is in ${fresh}/s3backer-key): give --encrypt and its password\n`);
  expect(clear.code).toBe(1);
}, 120_000);

test("--erase deletes the key object too, last: an erase that fails on a block leaves the key with the blocks", async () => {
  const { bucket } = await keyWrappedDisk("kwerase", "pw");
  const erase = () => runAsync([BINARY, ...peerArgs(peer), "--erase", "--force", "--maxRetryPause=100", "--initialRetryPause=10", bucket]);
  server.setFaults({ deleteObjects: false, errorRate: 1, errorStatuses: [503], keyPattern: /^00000003$/ });
  const failed = await erase();
  expect(failed.code).toBe(1);
  expect(server.counters.injectedErrors).toBeGreaterThan(0);
  server.reset();
  expect((await s3("GET", `${bucket}/00000003`)).status).toBe(200);
  expect(await opens(await keyObjectOf(bucket), "pw")).toBe(true);
  const done = await erase();
  expect(done.stderr).toMatch(/erased \d+ blocks of \S+ and its key object\n$/);
  expect(done.code).toBe(0);
  const listing = new TextDecoder().decode((await s3("GET", `${bucket}?list-type=2`)).body);
  expect(listing).not.toMatch(/<Key>/);
}, 120_000);
