/**
 * `s3backer scrub bucket[/prefix]`: every stored block read and checked as a mount's read checks
 * it (its CRC-32 or MD5 against what the server holds, decompression, signature and decryption,
 * a whole block out), and the damaged ones reported by number and byte range.
 *
 * - The blocks are listed, then read in order by --scrub-threads workers, at most --scrub-rate
 *   bytes of the disk a second. A body that fails its checks is asked for a few times, not for the
 *   whole retry budget (damage in storage fails every time), and every block found damaged is read
 *   once more at the end: only one that fails again is reported, so a fault on the way is not.
 * - Storage that cannot be reached is no damage: the scrub stops with the error instead.
 * - A live mount may write while a scrub reads: each PUT replaces an object whole, and a block
 *   deleted since the listing is gone, not damaged, so nothing it does reads as damage. The scrub
 *   goes on with a warning; a repair is refused unless --force, since it could overwrite newer data.
 * - It writes nothing unless --repair-from gives an image of the disk: then damaged blocks are
 *   rewritten from it and read back, with the mounted flag set meanwhile, and only if the image
 *   holds what the disk holds in every sound block (else it is not this disk as it is now).
 * - A clone is scrubbed whole, as it reads: its own blocks and those it inherits from its bases,
 *   each decrypted with its own disk's key. A repair goes to the clone's own live layer (a base is
 *   frozen while clones read it), so the base's copy stays damaged for its other readers.
 */
import { closeSync } from "node:fs";
import type { Config } from "../config/settings.ts";
import { ConfigError, DataError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { newToken } from "../object/mount-flag.ts";
import { runtime } from "../runtime/index.ts";
import type { VerifiedStore } from "../store/block-store.ts";
import { delay } from "../util/delay.ts";
import { openImage } from "../util/flag-paths.ts";
import { formatSize } from "../util/size.ts";
import { openDisk, type Disk } from "./open-disk.ts";
import { obtainPassword, passwordWarning } from "./password.ts";
import { Progress } from "./progress.ts";

/** Exit codes: damaged blocks are left; every damaged block found was repaired. */
export const DAMAGE_LEFT = 3;
export const ALL_REPAIRED = 4;

type Checked = { data: Uint8Array | null } | { damage: string };

export async function scrub(config: Config, log: Logger): Promise<number> {
  const enc = config.codec.encryption;
  if (enc) {
    const warning = passwordWarning(enc);
    if (warning) process.stderr.write(`s3backer: ${warning}\n`);
    enc.password = obtainPassword(enc).password;
  }
  const disk = await openDisk(config, log);
  try {
    return await scrubDisk(config, log, disk);
  } finally {
    await disk.backend.close();
  }
}

async function scrubDisk(config: Config, log: Logger, disk: Disk): Promise<number> {
  const { blockSize, fileSize } = disk.geometry;
  const quiet = config.quiet;
  const path = config.scrub.repairFrom;
  const typed = path === undefined ? "" : (config.typed["repair-from"] ?? `--repair-from=${path}`);
  const image = path === undefined ? undefined : openImage(typed, path);
  try {
    if (image && image.size !== fileSize) throw new ConfigError(`${typed}: ${image.size} bytes, but the disk is ${fileSize} (${formatSize(fileSize)})`);
    const layers = disk.layers;
    if (image && layers && !layers.objects.writable) throw new ConfigError(`${typed}: the disk is a snapshot, which is read-only: repair the disk itself, or a clone of the snapshot`);
    if (layers?.objects.layered) {
      const bases = layers.baseDisks.map((d) => layers.records.name(d)).join(", ");
      log.info(`scrubbing every block the disk reads: its own and those it reads from ${bases} (each checked with its own disk's key)${image ? "; a repair is written to the disk's own layer, never to a base" : ""}`);
    }
    const holder = await disk.flag?.holder();
    if (holder && image && !config.force) throw new ConfigError(`the disk looks mounted (${holder}): a repair could overwrite what it writes; unmount it first, or add --force if it is not mounted`);
    if (holder) log.warn(`the disk looks mounted (${holder}): blocks it writes meanwhile are checked as found (each write replaces a block whole, so none reads as damaged)`);

    const blocks: number[] = [];
    const listing = new Progress("listing blocks", undefined, quiet);
    await disk.backend.listBlocks((block) => {
      blocks.push(block);
      listing.add();
    });
    listing.finish();
    blocks.sort((a, b) => a - b);

    const started = performance.now();
    const damaged = new Map<number, string>();
    const differs: number[] = [];
    const fromImage = image && ((block: number) => readImage(image.fd, block, blockSize));
    const pace = pacer(config.scrub.rateBytes);
    const progress = new Progress("scrubbing blocks", blocks.length, quiet);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (next < blocks.length && !failed) {
        const block = blocks[next++]!;
        await pace(blockSize);
        const checked = await check(disk.backend, block).catch((err: unknown) => {
          failed = true;
          throw err;
        });
        if ("damage" in checked) damaged.set(block, checked.damage);
        else if (fromImage && checked.data && !sameBytes(checked.data, await fromImage(block))) differs.push(block);
        progress.add();
      }
    };
    await Promise.all(Array.from({ length: Math.min(config.scrub.threads, blocks.length) }, worker));
    progress.finish();
    const seconds = (performance.now() - started) / 1000;

    // A second opinion: what was damaged on the way, not in storage, reads sound now.
    for (const block of [...damaged.keys()]) {
      const again = await check(disk.backend, block);
      if ("damage" in again) continue;
      damaged.delete(block);
      log.warn(`block ${block}: read damaged, then sound when read again (a fault on the way, not in storage)`);
    }

    const repaired = fromImage && damaged.size > 0 ? await repair(config, log, disk, [...damaged.keys()], fromImage, differs, typed) : new Set<number>();
    const last = (block: number) => Math.min((block + 1) * blockSize, fileSize) - 1;
    for (const [block, why] of [...damaged].sort(([a], [b]) => a - b)) {
      process.stdout.write(`block ${block} (bytes ${block * blockSize}-${last(block)}): ${why}${repaired.has(block) ? ": repaired" : ""}\n`);
    }
    const where = `${config.bucket}${config.prefix ? `/${config.prefix.replace(/\/$/, "")}` : ""}`;
    const bytes = blocks.length * blockSize;
    const rate = seconds > 0 ? ` (${(bytes / 1e6 / seconds).toFixed(1)} MB/s)` : "";
    const repairedText = repaired.size > 0 ? `, ${repaired.size} repaired` : "";
    process.stderr.write(`s3backer: scrubbed ${where}: ${blocks.length} blocks stored, ${damaged.size} damaged${repairedText}; ${formatSize(bytes)} checked in ${seconds.toFixed(1)} s${rate}\n`);
    if (damaged.size === 0) return 0;
    return repaired.size === damaged.size ? ALL_REPAIRED : DAMAGE_LEFT;
  } finally {
    if (image) closeSync(image.fd);
  }
}

/** A block read as a mount reads it: its bytes (null: gone since the listing), or why it is damaged. */
async function check(backend: VerifiedStore, block: number): Promise<Checked> {
  try {
    return { data: (await backend.readVerified(block)).data };
  } catch (err) {
    if (err instanceof DataError) return { damage: err.message };
    throw err;
  }
}

/**
 * Rewrites damaged blocks from the image, each read back to check it; the set of those repaired.
 * The mounted flag is set meanwhile, unless --force (then someone else may hold it).
 */
async function repair(config: Config, log: Logger, disk: Disk, blocks: number[], fromImage: (block: number) => Promise<Uint8Array>, differs: number[], typed: string): Promise<Set<number>> {
  if (differs.length > 0) {
    const why = `${typed}: the image differs from the disk in ${differs.length} sound blocks (block ${differs.sort((a, b) => a - b)[0]} first): it is not this disk as it is now`;
    if (!config.force) throw new ConfigError(`${why}; nothing was repaired (add --force to repair from it all the same)`);
    log.warn(`${why}; repairing from it all the same (--force)`);
  }
  const flag = config.force ? undefined : disk.flag;
  await flag?.acquire(false, newToken());
  const repaired = new Set<number>();
  try {
    for (const block of blocks) {
      const data = await fromImage(block);
      await disk.backend.writeBlock(block, data);
      const again = await check(disk.backend, block);
      if ("damage" in again || !sameBytes(again.data ?? new Uint8Array(data.length), data)) log.error(`block ${block}: rewritten from ${typed}, but it does not read back as written`);
      else repaired.add(block);
    }
    await disk.backend.flush();
  } finally {
    await flag?.clear();
  }
  return repaired;
}

async function readImage(fd: number, block: number, blockSize: number): Promise<Uint8Array> {
  const data = new Uint8Array(blockSize);
  const n = await runtime.readAt(fd, data, block * blockSize);
  if (n !== blockSize) throw new ConfigError(`the image ends in block ${block}`);
  return data;
}

/** Waits so that calls average at most `bytesPerSecond` (0: no limit). */
function pacer(bytesPerSecond: number): (bytes: number) => Promise<void> {
  let next = performance.now();
  return async (bytes) => {
    if (bytesPerSecond <= 0) return;
    const now = performance.now();
    const at = Math.max(now, next);
    next = at + (bytes * 1000) / bytesPerSecond;
    if (at > now) await delay(at - now);
  };
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
