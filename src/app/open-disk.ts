/**
 * Opens a disk: its stack built in one run from the bottom, each layer wrapping the one below, as
 * the original's s3b_config.c does it: object store (S3, a local directory or memory) -> codec ->
 * consistency guard -> zero-block cache -> block cache. Layers that are off are left out.
 */
import { BufferPool } from "../memory/buffer-pool.ts";
import { md5Hex } from "../util/md5.ts";
import type { Config, Geometry } from "../config/settings.ts";
import type { Logger } from "../log.ts";
import type { BlockStore, VerifiedStore } from "../store/block-store.ts";
import type { MountFlagStore } from "../object/mount-flag.ts";
import { ZeroBlockCache } from "../store/zero-block-cache/zero-block-cache.ts";
import { Codec, type CodecOptions } from "../store/codec/codec.ts";
import { checkDiskEncoding } from "../store/codec/disk-check.ts";
import { ConsistencyGuard, type ConsistencyGuardOptions } from "../store/consistency-guard/consistency-guard.ts";
import { ConfigError } from "../errors.ts";
import { BlockCache, type MountedCache } from "../store/block-cache/block-cache.ts";
import { CacheFile } from "../store/block-cache/cache-file.ts";
import { totalmem } from "node:os";
import { formatSize } from "../util/size.ts";
import { Progress } from "./progress.ts";
import { openObjects, type OpenedObjects } from "./open-objects.ts";
import type { OpenedLayers } from "./layers/open-layers.ts";
import { wrappedAmong } from "./layers/keys.ts";
import { openEncryption } from "./disk-key.ts";
import type { KeyObjectStore } from "../object/key-object.ts";

export interface Disk {
  /** Top of the stack: what the FUSE side sees. */
  store: BlockStore;
  /** The codec over the object store: for listing, erasing, and checking a reloaded cache. */
  backend: VerifiedStore;
  zeroBlockCache: ZeroBlockCache | undefined;
  blockCache?: MountedCache;
  /**
   * The cache file, if any: the tokens of the mount that last used it (and of one that was setting
   * its flag when it stopped), and its unsaved blocks.
   */
  cacheFile?: { path: string; tokens: number[]; dirty: number };
  geometry: Geometry;
  /** True when a block is known to read as zeros (absent, and no write of it pending), for sparse copies. */
  knownZero(block: number): boolean;
  /** Undefined for the in-memory store. */
  flag: MountFlagStore | undefined;
  /** A mount on S3: the disk's layers, for snapshots and resizes while mounted. */
  layers?: OpenedLayers;
  /** Where the disk's wrapped data key is kept (S3 only). */
  keyObject: KeyObjectStore | undefined;
}

/**
 * Outside a mount (config.mode) the stack ends at the codec: it decodes what it reads for a scrub,
 * and for --erase and --reset-mounted-flag reads nothing.
 */
export async function openDisk(config: Config, log: Logger): Promise<Disk> {
  const mounting = config.mode === "mount";
  const reading = mounting || config.mode === "scrub";
  const bottom = await openObjects(config, log, reading);
  const { geometry, flag, keyObject } = bottom;

  const codec = new Codec(bottom.objects, await codecOptions(config, log, bottom, reading));
  if (bottom.checkEncoding) await checkDiskEncoding(bottom.objects, codec, codec.encrypts, config.codec.defaultEncoding);
  if (bottom.isNew) await codec.writeBlock(0, null); // records the disk's sizes at once, for the next mount to detect
  let store: BlockStore = codec;
  if (mounting && guarding(config, geometry)) store = new ConsistencyGuard(codec, guardOptions(config, geometry));
  // Another host may write any block at any time (--sharedDiskMode): nothing may be remembered, not even zeros.
  const zeroBlockCache = mounting && !config.sharedDisk ? new ZeroBlockCache(store) : undefined;
  if (zeroBlockCache) store = zeroBlockCache;
  const cached = mounting && config.cache.size > 0 ? openBlockCache(config, log, store, codec, geometry, bottom.spares) : undefined;
  if (cached) store = cached.cache;

  const knownZero = (block: number) => cached?.cache.cachedZero(block) ?? zeroBlockCache?.isZero(block) ?? false;
  return { store, backend: codec, zeroBlockCache, blockCache: cached?.cache, cacheFile: cached?.fromFile, geometry, knownZero, flag, keyObject, layers: bottom.layers };
}

/**
 * The codec as the flags ask: in --test mode it neither encrypts nor keeps sizes, and for --erase
 * and --reset-mounted-flag it needs no key (`reading` false). The disk's own key is its key
 * object's or the original's (disk-key.ts); a base's blocks are decrypted with the base's (keyOf).
 */
async function codecOptions(config: Config, log: Logger, bottom: OpenedObjects, reading: boolean): Promise<CodecOptions> {
  if (config.test) return { compression: undefined, encryption: undefined, defaultEncoding: undefined, keepSizes: false };
  const mayCreate = config.mode === "mount" && !config.readOnly;
  const layers = bottom.layers;
  const enc = config.codec.encryption;
  // A new clone of a disk whose key is wrapped gets a wrapped key too: asked only where it may be made.
  const wrappedBase = layers && enc && !enc.keyWrap && mayCreate && layers.baseDisks.length > 0 ? await wrappedAmong(config, layers.records.client, layers.baseDisks) : undefined;
  // The original's salt binds its key to the bucket and the disk's own prefix (a snapshot's disk for `disk@name`).
  const source = { anyOwnBlock: bottom.anyOwnBlock, keyObject: bottom.keyObject, salt: `${config.bucket}/${bottom.disk}`, mayCreate, wrappedBase: wrappedBase && layers!.records.name(wrappedBase), log };
  const encryption = reading ? await openEncryption(enc, source) : undefined;
  return { compression: config.codec.compression, encryption, defaultEncoding: config.codec.defaultEncoding, keepSizes: reading, keyOf: layers?.keyOf };
}

/** Whether the consistency guard is on: not with --md5CacheSize=0. */
function guarding(config: Config, geometry: Geometry): boolean {
  const ec = config.consistency;
  if (ec.md5CacheSize === 0) return false;
  // As the original: never remember more blocks than the disk has; "forever" only if all fit.
  if (ec.md5CacheTimeMs === 0 && ec.md5CacheSize < geometry.numBlocks) {
    throw new ConfigError(`--md5CacheTime=0 (forever) needs --md5CacheSize of at least the ${geometry.numBlocks} blocks of the disk`);
  }
  return true;
}

function guardOptions(config: Config, geometry: Geometry): ConsistencyGuardOptions {
  const ec = config.consistency;
  return {
    cacheSize: Math.min(ec.md5CacheSize, geometry.numBlocks), cacheTimeMs: ec.md5CacheTimeMs, minWriteDelayMs: ec.minWriteDelayMs,
    initialRetryPauseMs: config.s3.initialRetryPauseMs, maxRetryPauseMs: config.s3.maxRetryPauseMs,
  };
}

/** Slots of the cache file beyond --blockCacheSize: room for the saves in flight. */
const SPARE_SLOTS = 16;
/** The least --blockCacheMemory holds, in blocks. */
const MIN_MEMORY_BLOCKS = 64;

/** The block cache over `below`, in memory or in its --blockCacheFile (whose clean blocks are checked against `backend`). */
function openBlockCache(config: Config, log: Logger, below: BlockStore, backend: VerifiedStore, geometry: Geometry, spares: BufferPool | undefined): { cache: BlockCache; fromFile: Disk["cacheFile"] } {
  const c = config.cache;
  const { blockSize, numBlocks } = geometry;
  const size = Math.min(c.size, numBlocks);
  const path = c.file;
  const label = config.typed.blockCacheFile ?? `--blockCacheFile=${path}`;
  // A few slots more than blocks: a block's new bytes go to a free slot before the old one is freed.
  const opened = path ? CacheFile.open(path, blockSize, numBlocks, size + SPARE_SLOTS, c.fileAdvise, label) : undefined;
  if (opened?.narrowedFrom !== undefined) {
    log.warn(`${label} was readable by others (mode ${opened.narrowedFrom.toString(8)}): now ${(opened.narrowedFrom & 0o700).toString(8)}, since it holds the disk's blocks in plaintext`);
  }
  if (!path && size * blockSize > totalmem()) {
    log.warn(`--blockCacheSize=${c.size} blocks of ${formatSize(blockSize)} can grow past this machine's memory (${Math.round(totalmem() / 2 ** 20)} MiB): lower it, or keep the cache in a --blockCacheFile`);
  }
  if (opened?.damaged) log.warn(`cache file: ${opened.damaged} damaged records ignored (their blocks are read from S3)`);
  const quiet = config.quiet || !config.foreground;
  const check = c.noVerify ? undefined : {
    storedMd5: (block: number) => backend.storedMd5(block),
    zeroMd5: md5Hex(new Uint8Array(blockSize)),
    progress: new Progress("checking cached blocks", opened?.blocks.filter((b) => !b.dirty).length, quiet),
  };
  const cache = new BlockCache(below, {
    size, memoryBlocks: Math.min(size, Math.max(MIN_MEMORY_BLOCKS, Math.floor(c.memoryBytes / blockSize))),
    threads: c.threads, writeDelayMs: c.writeDelayMs, maxDirty: Math.min(c.maxDirty, numBlocks),
    timeoutMs: c.timeoutMs, sync: c.sync, readAhead: c.readAhead, readAheadTrigger: c.readAheadTrigger, numProtected: c.numProtected, log,
    spares: spares ?? new BufferPool(blockSize, true),
  }, opened && { file: opened.file, blocks: opened.blocks, check });
  const fromFile = opened && path ? { path, tokens: opened.tokens, dirty: opened.blocks.filter((b) => b.dirty).length } : undefined;
  return { cache, fromFile };
}
