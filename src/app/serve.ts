/**
 * The life of a mount, whatever the front end: open the disk, set its mounted flag, serve it (FUSE
 * or NBD; with --listBlocks, listing the bucket meanwhile) until unmounted or signalled, then flush every dirty block, clear the flag and close.
 * The exit code says whether everything reached storage.
 */
import { closeSync, rmSync, writeSync } from "node:fs";
import type { Config } from "../config/settings.ts";
import { ConfigError, messageOf } from "../errors.ts";
import { checkMountpoint } from "../fuse/mount.ts";
import { log } from "../log.ts";
import { statsText } from "./stats-text.ts";
import { BUDGET_HEADROOM, MemoryBudget } from "./memory-budget.ts";
import { openDisk, type Disk } from "./open-disk.ts";
import { newToken, SHARED_TOKEN, type MountFlagStore } from "../object/mount-flag.ts";
import type { MountedCache } from "../store/block-cache/block-cache.ts";
import { Progress } from "./progress.ts";
import type { FrontEnd } from "./front-end.ts";
import { startFuse } from "./fuse-front-end.ts";
import { checkNbdTarget, startNbd } from "./nbd-front-end.ts";
import { StatsMirror } from "./stats-mirror.ts";
import { openWritableFile } from "../util/flag-paths.ts";
import type { ZeroBlockCache } from "../store/zero-block-cache/zero-block-cache.ts";

export async function serve(config: Config, onReady: (readyMessage: string) => void): Promise<number> {
  if (config.nbd) checkNbdTarget(config.nbd);
  else checkMountpoint(config.mountpoint);
  const disk = await openDisk(config, log);
  const { store, geometry } = disk;
  const flag = config.readOnly ? undefined : disk.flag;
  if (flag) {
    // Checked with --force too: it mounts despite the flag, never with another mount's blocks.
    const own = await recoveringOwnCrash(config, disk.cacheFile, flag);
    const token = config.sharedDisk ? SHARED_TOKEN : newToken();
    // The cache file learns the token first, so that a crash at any instant leaves it matching the flag.
    disk.blockCache?.announceFileToken(token);
    const warning = await flag.acquire(config.force || own, token);
    if (warning) log.warn(warning);
    disk.blockCache?.setFileToken(token);
  } else if (disk.cacheFile?.dirty) {
    throw new ConfigError(`${disk.cacheFile.path} holds unsaved blocks: mount without --readOnly to save them`);
  }
  disk.blockCache?.resume();

  const cache = disk.blockCache;
  const memory = new MemoryBudget((cache ? cache.memoryCapacity * geometry.blockSize : 0) + BUDGET_HEADROOM);
  const statsNow = () => statsText([...store.stats(), memory.stats()], config.statsFormat);
  const context = { config, disk, statsText: statsNow, resetStats: () => store.resetStats() };
  let front: FrontEnd;
  try {
    front = config.nbd ? await startNbd(context) : startFuse(context);
  } catch (err) {
    if (!config.sharedDisk) await flag?.clear(); // nothing was written
    throw err;
  }
  memory.start();
  if (config.listBlocks && disk.zeroBlockCache) listInBackground(disk.zeroBlockCache, geometry.numBlocks);
  if (cache) cache.onBlockDropped = (bytes) => memory.droppedBlock(bytes);
  const mirror = config.statsFileMirror === undefined ? undefined : new StatsMirror(config.statsFileMirror, config.typed.statsFileMirror!, config.statsFileMirrorIntervalMs, statsNow, context.resetStats);

  const onSignal = (signal: string) => front.stop(signal);
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, onSignal);
  if (await front.ready) {
    if (config.pidFile) writePidFile(config.pidFile, config.typed.pidFile!); // for anyone to signal or watch
    onReady(front.readyMessage());
  }
  let code = (await front.ended) ? 0 : 1;
  mirror?.stop();
  const stopProgress = showFlushProgress(cache, config.quiet || !config.foreground);
  try {
    await store.close();
    log.info("all data stored; exiting");
  } catch (err) {
    log.error(`flushing at unmount failed, data may be lost: ${messageOf(err)}`);
    code = 1;
  } finally {
    stopProgress();
  }
  for (const s of signals) process.off(s, onSignal);
  memory.stop();
  // Cleared only after a clean flush, so that after a failure the next mount sees the flag. The
  // shared flag stays, as in the original: other shared mounts may still be using the disk.
  if (code === 0 && flag && !config.sharedDisk) {
    await flag.clear().catch((err) => log.error(`clearing the mounted flag: ${messageOf(err)}`));
  }
  if (config.pidFile) rmSync(config.pidFile, { force: true });
  return code;
}

/**
 * --listBlocks, as upstream does it since 1.6.2: the disk is served at once, and blocks are looked
 * up one by one until the listing is done (its progress is in the stats file).
 */
function listInBackground(zeroBlockCache: ZeroBlockCache, numBlocks: number): void {
  const started = performance.now();
  zeroBlockCache.loadListing().then(
    (found) => log.info(`listed ${found} existing blocks of ${numBlocks} in ${((performance.now() - started) / 1000).toFixed(1)} s`),
    (err) => log.warn(`listing blocks failed (${messageOf(err)}): blocks are looked up one by one`),
  );
}

/** While the cache writes its dirty blocks at unmount: progress on a terminal. Returns the stop. */
function showFlushProgress(cache: MountedCache | undefined, quiet: boolean): () => void {
  if (!cache || cache.dirtyCount === 0) return () => {};
  const total = cache.dirtyCount;
  log.info(`writing ${total} dirty blocks`);
  const progress = new Progress("writing dirty blocks", total, quiet);
  let left = total;
  const timer = setInterval(() => {
    progress.add(left - cache.dirtyCount);
    left = cache.dirtyCount;
  }, 200);
  return () => {
    clearInterval(timer);
    progress.add(left - cache.dirtyCount);
    progress.finish();
  };
}

/**
 * Whether the mounted flag was left by the crashed mount that last used the cache file (then the
 * disk is ours to take over). Unsaved blocks in the file are written back only with
 * --blockCacheRecoverDirtyBlocks, and only if nobody mounted the disk since: else they could
 * overwrite newer data.
 */
async function recoveringOwnCrash(config: Config, cacheFile: Disk["cacheFile"], flag: MountFlagStore): Promise<boolean> {
  if (!cacheFile) return false;
  const held = await flag.token();
  const ours = held !== undefined && held !== 0 && cacheFile.tokens.includes(held);
  if (cacheFile.dirty > 0) {
    if (!config.cache.recoverDirty) {
      throw new ConfigError(
        `${cacheFile.path} holds ${cacheFile.dirty} blocks written before a crash and not yet stored: add --blockCacheRecoverDirtyBlocks to store them, or delete the file to drop them`,
      );
    }
    if (!ours) {
      throw new ConfigError(
        `${cacheFile.path} holds ${cacheFile.dirty} unsaved blocks, but the disk was mounted elsewhere since: they could overwrite newer data, so they are not recovered (delete the file to drop them)`,
      );
    }
    log.warn(`recovering ${cacheFile.dirty} blocks left unsaved by a crash`);
  }
  return ours;
}

/** The daemon's process ID in a file made afresh (readable by anyone), never through a link. */
function writePidFile(path: string, label: string): void {
  const fd = openWritableFile(label, path, "new", 0o644)!;
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
}
