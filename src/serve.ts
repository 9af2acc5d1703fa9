/**
 * The life of a mount: open the disk, set its mounted flag, mount, serve until unmounted or
 * signalled, then flush every dirty block, clear the flag and close. The exit code says whether
 * everything reached storage.
 */
import { rmSync, writeFileSync } from "node:fs";
import { BackedFile } from "./backed-file.ts";
import type { Config, Geometry } from "./config.ts";
import { ConfigError, messageOf } from "./errors.ts";
import { SingleFileFs } from "./fuse/filesystem.ts";
import { checkMountpoint, isMounted, mount, raiseReadahead, unmount, type Mounted } from "./fuse/mount.ts";
import { FuseSession } from "./fuse/session.ts";
import { log } from "./log.ts";
import { statsText } from "./stats-text.ts";
import { BUDGET_HEADROOM, MemoryBudget } from "./memory-budget.ts";
import type { BlockStore } from "./store/block-store.ts";
import { openDisk, type Disk } from "./store/build-stack.ts";
import { newToken, type MountFlagStore } from "./store/mount-flag.ts";
import type { BlockCache } from "./store/block-cache/block-cache.ts";
import { Progress } from "./progress.ts";

/**
 * The reader thread and the request slots it owns, and the slots the main thread reads requests
 * into itself while busy (see fuse/device-readers.ts): up to 6 requests in flight. The cache
 * answers most at once, and each slot a 1 MiB write has used stays resident (as does each thread,
 * about 4 MiB), so they are few.
 */
const READERS = 1;
const SLOTS_PER_READER = 2;
const DIRECT_SLOTS = 4;

export async function serve(config: Config, onReady: () => void): Promise<number> {
  checkMountpoint(config.mountpoint);
  const disk = await openDisk(config, log);
  const { store, geometry } = disk;
  if (config.listBlocks && disk.zeroCache) {
    const started = performance.now();
    const progress = new Progress("listing blocks", undefined, config.quiet || !config.foreground);
    const found = await disk.zeroCache.loadListing(() => progress.add());
    progress.finish();
    log.info(`listed ${found} existing blocks of ${geometry.numBlocks} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  const flag = config.readOnly ? undefined : disk.flag;
  if (flag) {
    // Checked with --force too: it mounts despite the flag, never with another mount's blocks.
    const own = await recoveringOwnCrash(config, disk.cacheFile, flag);
    const token = newToken();
    // The cache file learns the token first, so that a crash at any instant leaves it matching the flag.
    disk.blockCache?.announceFileToken(token);
    await flag.acquire(config.force || own, token);
    disk.blockCache?.setFileToken(token);
  } else if (disk.cacheFile?.dirty) {
    throw new ConfigError(`${disk.cacheFile.path} holds unsaved blocks: mount without --readOnly to save them`);
  }
  disk.blockCache?.resume();

  let mounted: Mounted;
  try {
    mounted = mount(config.mountpoint, config.fuse);
  } catch (err) {
    await flag?.clear(); // nothing was written
    throw err;
  }
  const code = await serveMounted(config, mounted, store, geometry, onReady, disk.blockCache);
  // Cleared only after a clean flush, so that after a failure the next mount sees the flag.
  if (code === 0 && flag) {
    await flag.clear().catch((err) => log.error(`clearing the mounted flag: ${messageOf(err)}`));
  }
  if (config.pidFile) rmSync(config.pidFile, { force: true });
  return code;
}

async function serveMounted(
  config: Config,
  mounted: Mounted,
  store: BlockStore,
  geometry: Geometry,
  onReady: () => void,
  cache: BlockCache | undefined,
): Promise<number> {
  const cachedBytes = cache ? cache.capacity * geometry.blockSize : 0;
  const memory = new MemoryBudget(cachedBytes + BUDGET_HEADROOM);
  memory.start();
  if (cache) cache.onBlockDropped = (bytes) => memory.droppedBlock(bytes);
  const fs = new SingleFileFs(new BackedFile(store), {
    filename: config.filename,
    statsFilename: config.statsFilename,
    fileMode: config.fileMode,
    uid: config.fuse.uid,
    gid: config.fuse.gid,
    readOnly: config.readOnly,
    directIO: config.directIO,
    blockSize: geometry.blockSize,
    statsText: () => statsText([...store.stats(), memory.stats()], config.statsFormat),
    resetStats: () => store.resetStats(),
    flush: () => store.flush(),
  });
  const session = new FuseSession(mounted.fd, fs, log, {
    maxReadahead: config.fuse.maxReadahead,
    readers: READERS,
    slotsPerReader: SLOTS_PER_READER,
    directSlots: DIRECT_SLOTS,
  });
  session.start();

  let unmounting = false;
  const onSignal = (signal: string) => {
    if (unmounting) return;
    unmounting = true;
    log.info(`${signal}: unmounting ${config.mountpoint}`);
    try {
      if (unmount(config.mountpoint, mounted.via) === "lazy") {
        log.warn(`${config.mountpoint} is busy (a loop device on the file?): detached; exiting once its last user lets go`);
      }
    } catch (err) {
      log.error(`unmount ${config.mountpoint}: ${messageOf(err)}`);
    }
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, onSignal);

  const first = await Promise.race([session.ready.then(() => "ready"), session.ended]);
  if (first === "ready") {
    if (process.getuid?.() === 0) {
      const why = raiseReadahead(mounted.path, config.fuse.maxReadahead);
      if (why) log.debug(`kernel read-ahead left at its default: ${why}`);
    }
    if (config.pidFile) writeFileSync(config.pidFile, `${process.pid}\n`, { mode: 0o644 }); // for anyone to signal or watch
    onReady();
    log.info(`mounted ${config.mountpoint}: ${geometry.numBlocks} blocks of ${geometry.blockSize} bytes (${session.negotiated!.maxWrite / 1024} KiB transfers)`);
  }
  const reason = await session.ended;
  session.stop();
  // A detached (lazily unmounted) connection can end as ECONNABORTED instead of ENODEV once its
  // last user lets go: the mount is gone all the same. Aborted while still mounted is an error.
  const gone = reason === "ENODEV" || (reason === "ECONNABORTED" && !isMounted(mounted.path));
  if (!gone) log.error(`FUSE device: ${reason}`);
  log.info(`unmounted ${config.mountpoint}: flushing`);

  let code = gone ? 0 : 1;
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
  return code;
}

/** While the cache writes its dirty blocks at unmount: progress on a terminal. Returns the stop. */
function showFlushProgress(cache: BlockCache | undefined, quiet: boolean): () => void {
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
