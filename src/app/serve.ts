/**
 * The life of a mount, whatever the front end: open the disk, set its mounted flag, serve it (FUSE
 * or NBD; with --listBlocks, listing the bucket meanwhile) until unmounted or signalled, then store
 * every dirty block (however long storage is away: final-store.ts), close, and clear the flag.
 * The exit code says whether everything reached storage.
 */
import type { Config } from "../config/settings.ts";
import { ConfigError, messageOf } from "../errors.ts";
import { checkMountpoint } from "../fuse/mount.ts";
import { log } from "../log.ts";
import { statsLogLines, statsText } from "./stats-text.ts";
import { StatsView } from "./stats-view.ts";
import { MetricsServer } from "./metrics-server.ts";
import { metricsText } from "./metrics-text.ts";
import { runtime } from "../runtime/index.ts";
import { VERSION } from "../version.ts";
import { GIVE_UP_SIGNALS, MountSignals } from "./signals.ts";
import { untilStored } from "./final-store.ts";
import { BUDGET_HEADROOM, MemoryBudget } from "../memory/memory-budget.ts";
import { openDisk, type Disk } from "./open-disk.ts";
import { newToken, SHARED_TOKEN, type MountFlagStore } from "../object/mount-flag.ts";
import type { MountedCache } from "../store/block-cache/block-cache.ts";
import { Progress } from "./progress.ts";
import type { FrontEnd } from "./front-end.ts";
import { startFuse } from "./fuse-front-end.ts";
import { checkNbdTarget, startNbd } from "./nbd-front-end.ts";
import { StatsMirror } from "./stats-mirror.ts";
import { PidFile } from "./own-files.ts";
import type { ZeroBlockCache } from "../store/zero-block-cache/zero-block-cache.ts";
import { startControl } from "./layers/mounted-ops.ts";

export async function serve(config: Config, onReady: (readyMessage: string) => void): Promise<number> {
  if (config.nbd) checkNbdTarget(config.nbd);
  else checkMountpoint(config.mountpoint);
  // Opened before anything is mounted or flagged: one that cannot be written changes nothing.
  const pidFile = config.pidFile === undefined ? undefined : PidFile.open(config.typed.pidFile!, config.pidFile);
  try {
    const stats = new StatsView();
    // Listening before the disk is opened: a port that is taken changes nothing.
    const metrics = config.metrics && new MetricsServer(config.metrics, config.typed.metrics!, () => metricsText(stats.totals(), { version: VERSION, runtime: runtime.name }));
    try {
      return await serveDisk(config, (message) => onReady(metrics ? `${message}; metrics at ${metrics.url}` : message), pidFile, stats);
    } finally {
      await metrics?.stop();
    }
  } finally {
    pidFile?.remove();
  }
}

async function serveDisk(config: Config, onReady: (readyMessage: string) => void, pidFile: PidFile | undefined, stats: StatsView): Promise<number> {
  const signals = new MountSignals(() => statsLogLines(stats.sinceReset()));
  const disk = await openDisk(config, log);
  const { store, geometry } = disk;
  const flag = config.readOnly ? undefined : disk.flag;
  let flagHeld = 0;
  let token: number | undefined;
  if (flag) {
    // Checked with --force too: it mounts despite the flag, never with another mount's blocks.
    const own = await recoveringOwnCrash(config, disk.cacheFile, flag);
    token = config.sharedDisk ? SHARED_TOKEN : newToken();
    // The cache file learns the token first, so that a crash at any instant leaves it matching the flag.
    disk.blockCache?.announceFileToken(token);
    const warning = await flag.acquire(config.force || own, token);
    flagHeld = 1;
    if (warning) log.warn(warning);
    disk.blockCache?.setFileToken(token);
  } else if (disk.cacheFile?.dirty) {
    throw new ConfigError(`${disk.cacheFile.path} holds unsaved blocks: mount without --readOnly to save them`);
  }
  disk.blockCache?.resume();

  const cache = disk.blockCache;
  const memory = new MemoryBudget((cache ? cache.memoryCapacity * geometry.blockSize : 0) + BUDGET_HEADROOM);
  stats.source = () => [...store.stats(), memory.stats(), { layer: "mount", values: [["flag held", flagHeld]] }];
  const statsNow = () => statsText(stats.sinceReset(), config.statsFormat);
  const context = { config, disk, statsText: statsNow, resetStats: () => stats.reset() };
  let front: FrontEnd;
  try {
    front = config.nbd ? await startNbd(context) : startFuse(context);
  } catch (err) {
    if (!config.sharedDisk) await flag?.clear(); // nothing was written
    throw err;
  }
  memory.start();
  const control = await startControl(config, disk, token, () => front.resized?.() ?? Promise.resolve(), log);
  if (config.listBlocks && disk.zeroBlockCache) listInBackground(disk.zeroBlockCache, geometry.numBlocks);
  if (cache) cache.onBlockDropped = (bytes) => memory.droppedBlock(bytes);
  const mirror = config.statsFileMirror === undefined ? undefined : new StatsMirror(config.statsFileMirror, config.typed.statsFileMirror!, config.statsFileMirrorIntervalMs, statsNow, context.resetStats);

  signals.serving((signal) => front.stop(signal));
  if (await front.ready) {
    try {
      pidFile?.write();
    } catch (err) {
      log.error(`${config.typed.pidFile}: ${messageOf(err)}`); // the mount serves on all the same
    }
    onReady(front.readyMessage());
  }
  const endedOk = await front.ended;
  control?.close();
  let code = endedOk ? 0 : 1;
  mirror?.stop();
  signals.storingNow();
  const limit = config.unmountTimeoutMs > 0
    ? setTimeout(() => signals.giveUp.abort(`--unmountTimeout=${config.unmountTimeoutMs / 1000} reached`), config.unmountTimeoutMs)
    : undefined;
  const howToGiveUp = `${GIVE_UP_SIGNALS}${limit ? " or --unmountTimeout" : ""}`;
  const stopProgress = showFlushProgress(cache, config.quiet || !config.foreground);
  try {
    // A front end that failed leaves the flag set, for the next mount to see.
    const flagToClear = endedOk ? flag : undefined;
    if (!(await storeAndClose(config, disk, flagToClear, signals.giveUp.signal, howToGiveUp))) code = 1;
    else if (flagToClear && !config.sharedDisk) flagHeld = 0;
  } finally {
    stopProgress();
    clearTimeout(limit);
  }
  signals.remove();
  memory.stop();
  return code;
}

/**
 * Stores every dirty block, however long storage is away (final-store.ts), closes the store, and
 * only then clears the mounted flag (the shared one stays, as in the original: other shared mounts
 * may still be using the disk). Given up, the blocks not stored stay in the cache file if there is
 * one, the flag stays set (so that they can be recovered), and the log says which. False if
 * anything is left undone.
 */
async function storeAndClose(config: Config, disk: Disk, flag: MountFlagStore | undefined, giveUp: AbortSignal, howToGiveUp: string): Promise<boolean> {
  const cache = disk.blockCache;
  const why = await untilStored("storing at unmount", () => disk.store.flush(), () => `${cache?.dirtyCount ?? 0} blocks not stored yet`, giveUp, howToGiveUp);
  if (why !== undefined) {
    await keepUnstored(config, cache, why);
    return false;
  }
  try {
    await disk.store.close();
  } catch (err) {
    log.error(`closing the disk: ${messageOf(err)}`);
    return false;
  }
  if (flag && !config.sharedDisk) {
    const flagWhy = await untilStored("clearing the mounted flag", () => flag.clear(), () => "the mounted flag not cleared yet", giveUp, howToGiveUp);
    if (flagWhy !== undefined) {
      log.error(`${flagWhy}: every block is stored, but the mounted flag is still set: clear it with --reset-mounted-flag`);
      return false;
    }
  }
  log.info("all data stored; exiting");
  return true;
}

/** Given up storing: what the cache file can keep of the blocks not stored, and a plain word on the rest. */
async function keepUnstored(config: Config, cache: MountedCache | undefined, why: string): Promise<void> {
  const total = cache?.dirtyCount ?? 0;
  const file = config.cache.file;
  if (!cache || total === 0) return log.error(`${why}: everything written is stored, but the mounted flag is still set: clear it with --reset-mounted-flag`);
  if (!file) return log.error(`${why}: ${total} blocks written to the disk were never stored and are lost`);
  const { kept, lost } = await cache.keepUnstored();
  const recover = `mount again with --blockCacheFile=${file} --blockCacheRecoverDirtyBlocks to store them (the mounted flag stays set until then)`;
  if (lost === 0) return log.error(`${why}: ${total} blocks not stored: kept in ${file}; ${recover}`);
  log.error(`${why}: ${total} blocks not stored: ${kept} kept in ${file} (${recover}), ${lost} lost (they could not be written to it)`);
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
 * overwrite newer data. The flag held by another mount says someone did; a cleared flag cannot
 * say, so there --force is the user's word that nobody did.
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
    if (held !== undefined && !ours) {
      throw new ConfigError(
        `${cacheFile.path} holds ${cacheFile.dirty} unsaved blocks, but the disk was mounted elsewhere since: they could overwrite newer data, so they are not recovered (delete the file to drop them)`,
      );
    }
    // A cleared flag says nothing of what happened since: only the user can.
    if (!ours && !config.force) {
      throw new ConfigError(
        `${cacheFile.path} holds ${cacheFile.dirty} unsaved blocks, but the mounted flag was cleared since (--reset-mounted-flag, or another mount that ended): ` +
          "if nobody mounted the disk since they were written, add --force to store them; else delete the file to drop them (they would overwrite newer data)",
      );
    }
    if (!ours) log.warn(`--force: storing ${cacheFile.dirty} blocks left unsaved by a crash, though the mounted flag was cleared since`);
    else log.warn(`recovering ${cacheFile.dirty} blocks left unsaved by a crash`);
  }
  return ours;
}
