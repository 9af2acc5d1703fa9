/**
 * Opens a disk: its store stack, its geometry (from the flags or auto-detected) and its mounted
 * flag. The stack, from the bottom: an object store (S3, a local directory or memory) -> codec ->
 * consistency guard -> zero-block cache -> block cache.
 */
import { BufferPool } from "../util/buffer-pool.ts";
import { md5Hex } from "../util/md5.ts";
import type { Config, Geometry } from "../config/settings.ts";
import { DEFAULT_BLOCK_SIZE, MAX_BLOCKS, resolveGeometry } from "../config/geometry.ts";
import { MEMORY_BUCKET } from "../config/build-config.ts";
import type { Logger } from "../log.ts";
import type { BlockStore, VerifiedStore } from "../store/block-store.ts";
import { blockName } from "../object/block-names.ts";
import { LocalDirStore, LocalMountFlag } from "../object/local-dir.ts";
import { MemoryObjects } from "../object/memory-objects.ts";
import { FaultyObjects } from "../object/test-faults.ts";
import type { MountFlagStore } from "../object/mount-flag.ts";
import { detectGeometry, type Detected } from "../object/s3/auto-detect.ts";
import { credentialSource } from "../object/s3/credentials.ts";
import { S3Client } from "../object/s3/s3-client.ts";
import { S3MountFlag } from "../object/s3/mount-flag.ts";
import { S3Store } from "../object/s3/s3-store.ts";
import { ZeroBlockCache } from "../store/zero-block-cache/zero-block-cache.ts";
import { Codec } from "../object/codec/codec.ts";
import { BlockEncryption } from "../object/codec/block-encryption.ts";
import { checkDiskEncoding } from "../object/codec/disk-check.ts";
import { ConsistencyGuard } from "../object/consistency-guard/consistency-guard.ts";
import { ConfigError } from "../errors.ts";
import { BlockCache, type MountedCache } from "../store/block-cache/block-cache.ts";
import { CacheFile } from "../store/block-cache/cache-file.ts";
import { totalmem } from "node:os";
import { formatSize } from "../util/size.ts";
import { Progress } from "./progress.ts";

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
  /** Spare block buffers the store's GETs read bodies into, for the block cache to fill (S3 only). */
  spares?: BufferPool;
}

export async function openDisk(config: Config, log: Logger): Promise<Disk> {
  const disk = await openBackend(config, log);
  if (config.mode !== "mount" || config.cache.size === 0) return disk;
  const c = config.cache;
  const { blockSize, numBlocks } = disk.geometry;
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
  const backend = disk.backend;
  const check = config.cache.noVerify ? undefined : {
    storedMd5: (block: number) => backend.storedMd5(block),
    zeroMd5: md5Hex(new Uint8Array(blockSize)),
    progress: new Progress("checking cached blocks", opened?.blocks.filter((b) => !b.dirty).length, quiet),
  };
  const cache = new BlockCache(disk.store, {
    size, memoryBlocks: Math.min(size, Math.max(MIN_MEMORY_BLOCKS, Math.floor(c.memoryBytes / blockSize))),
    threads: c.threads, writeDelayMs: c.writeDelayMs, maxDirty: Math.min(c.maxDirty, numBlocks),
    timeoutMs: c.timeoutMs, sync: c.sync, readAhead: c.readAhead, readAheadTrigger: c.readAheadTrigger, numProtected: c.numProtected, log,
    spares: disk.spares ?? new BufferPool(blockSize, true),
  }, opened && { file: opened.file, blocks: opened.blocks, check });
  const fromFile = opened && path ? { path, tokens: opened.tokens, dirty: opened.blocks.filter((b) => b.dirty).length } : undefined;
  const below = disk.knownZero;
  const knownZero = (block: number) => cache.cachedZero(block) ?? below(block);
  return { ...disk, store: cache, blockCache: cache, cacheFile: fromFile, knownZero };
}

/** Slots of the cache file beyond --blockCacheSize: room for the saves in flight. */
const SPARE_SLOTS = 16;
/** The least --blockCacheMemory holds, in blocks. */
const MIN_MEMORY_BLOCKS = 64;

async function openBackend(config: Config, log: Logger): Promise<Disk> {
  const maintenance = config.mode !== "mount";
  if (config.test) {
    const geometry = maintenance && config.fileSize === undefined ? anyGeometry(config) : resolveGeometry(config, undefined, config.force);
    const { blockSize, numBlocks } = geometry;
    const inMemory = config.bucket === MEMORY_BUCKET;
    const store = inMemory
      ? new MemoryObjects(blockSize, numBlocks)
      : await LocalDirStore.open({ dir: config.bucket, prefix: config.prefix, blockSize, numBlocks, hashPrefix: config.blockHashPrefix });
    const f = config.testFaults;
    const objects = f.errors || f.delays || f.discard ? new FaultyObjects(store, f) : store;
    const codec = new Codec(objects, { compression: undefined, encryption: undefined, defaultEncoding: undefined, keepSizes: false });
    return guarded(config, codec, geometry, inMemory ? undefined : new LocalMountFlag(config.bucket, config.prefix), maintenance);
  }

  const s3 = config.s3;
  const credentials = credentialSource(s3);
  log.debug(`S3 ${s3.baseURL} bucket ${config.bucket}, region ${s3.region}, credentials from ${credentials.origin}`);
  const client = new S3Client({
    baseURL: s3.baseURL, bucket: config.bucket, vhost: s3.vhost, region: s3.region, credentials,
    timeoutMs: s3.timeoutMs, initialRetryPauseMs: s3.initialRetryPauseMs, maxRetryPauseMs: s3.maxRetryPauseMs,
    insecure: s3.insecure, caFile: s3.cacert, maxUploadBps: s3.maxUploadBps, maxDownloadBps: s3.maxDownloadBps,
    debugHttp: s3.debugHttp, keepAlive: s3.keepAlive, log,
  });
  let geometry: Geometry;
  let detected: Detected | undefined;
  if (maintenance) geometry = anyGeometry(config);
  else {
    detected = config.noAutoDetect ? "no disk" : await detectGeometry(client, config.prefix + blockName(0, config.blockHashPrefix));
    if (detected === "no metadata") log.warn("block 0 carries no size metadata: using the sizes given on the command line");
    geometry = resolveGeometry(config, typeof detected === "object" ? detected : undefined, config.force);
    if (typeof detected === "object") log.debug(`auto-detected ${detected.blockSize}-byte blocks, file size ${detected.fileSize}`);
  }
  const spares = new BufferPool(geometry.blockSize, !maintenance);
  const objects = new S3Store(client, {
    prefix: config.prefix, hashPrefix: config.blockHashPrefix, blockSize: geometry.blockSize, numBlocks: geometry.numBlocks,
    putHeaders: s3.putHeaders, listThreads: s3.listBlocksThreads, spares,
  });
  const enc = maintenance ? undefined : config.codec.encryption;
  // The salt binds the key to the bucket and prefix, as in the original.
  const encryption = enc && (await BlockEncryption.create(enc.cipher, enc.password!, `${config.bucket}/${config.prefix}`, enc.keyLength));
  const backend = new Codec(objects, {
    compression: config.codec.compression, encryption, defaultEncoding: config.codec.defaultEncoding, keepSizes: !maintenance,
  });
  if (!maintenance) await checkDiskEncoding(objects, backend, encryption !== undefined, config.codec.defaultEncoding);
  // A new disk records its sizes at once (in block 0), so the next mount can detect them.
  if (detected === "no disk" && !config.readOnly && !config.noAutoDetect) await backend.writeBlock(0, null);
  return { ...guarded(config, backend, geometry, new S3MountFlag(client, config.prefix), maintenance), spares };
}

/** The consistency guard over the codec, unless it is off (--md5CacheSize=0) or the disk is not mounted. */
function guarded(config: Config, backend: VerifiedStore, geometry: Geometry, flag: MountFlagStore | undefined, maintenance: boolean): Disk {
  const ec = config.consistency;
  if (maintenance || ec.md5CacheSize === 0) return stack(backend, backend, geometry, flag, maintenance, config.sharedDisk);
  // As the original: never remember more blocks than the disk has; "forever" only if all fit.
  if (ec.md5CacheTimeMs === 0 && ec.md5CacheSize < geometry.numBlocks) {
    throw new ConfigError(`--md5CacheTime=0 (forever) needs --md5CacheSize of at least the ${geometry.numBlocks} blocks of the disk`);
  }
  const guard = new ConsistencyGuard(backend, {
    cacheSize: Math.min(ec.md5CacheSize, geometry.numBlocks), cacheTimeMs: ec.md5CacheTimeMs, minWriteDelayMs: ec.minWriteDelayMs,
    initialRetryPauseMs: config.s3.initialRetryPauseMs, maxRetryPauseMs: config.s3.maxRetryPauseMs,
  });
  return stack(backend, guard, geometry, flag, maintenance, config.sharedDisk);
}

/** The zero-block cache over `below` (the backend, or the consistency guard over it). */
function stack(backend: VerifiedStore, below: BlockStore, geometry: Geometry, flag: MountFlagStore | undefined, maintenance: boolean, sharedDisk: boolean): Disk {
  // Another host may write any block at any time: nothing may be remembered, not even zeros.
  if (sharedDisk && !maintenance) return { store: below, backend, zeroBlockCache: undefined, geometry, flag, knownZero: () => false };
  if (maintenance) return { store: backend, backend, zeroBlockCache: undefined, geometry, flag, knownZero: () => false };
  const zeroBlockCache = new ZeroBlockCache(below);
  return { store: zeroBlockCache, backend, zeroBlockCache, geometry, flag, knownZero: (block) => zeroBlockCache.isZero(block) };
}

/** For --erase and --reset-mounted-flag, which need no size: every block name counts. */
function anyGeometry(config: Config): Geometry {
  const blockSize = config.blockSize ?? DEFAULT_BLOCK_SIZE;
  return { blockSize, fileSize: blockSize * MAX_BLOCKS, numBlocks: MAX_BLOCKS };
}
