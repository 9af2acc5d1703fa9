/**
 * The bottom of a disk's stack: its object store (S3, a local directory or memory, with the --test
 * faults over it), the disk's geometry (from the flags, or auto-detected from block 0), its
 * mounted flag and its key object.
 */
import { BufferPool } from "../memory/buffer-pool.ts";
import type { Config, Geometry } from "../config/settings.ts";
import { DEFAULT_BLOCK_SIZE, MAX_BLOCKS, resolveGeometry } from "../config/geometry.ts";
import { MEMORY_BUCKET } from "../config/build-config.ts";
import type { Logger } from "../log.ts";
import { LocalDirStore, LocalMountFlag } from "../object/local-dir.ts";
import { MemoryObjects } from "../object/memory-objects.ts";
import type { MountFlagStore } from "../object/mount-flag.ts";
import type { ObjectStore } from "../object/object-store.ts";
import { credentialSource } from "../object/s3/credentials.ts";
import { S3Client } from "../object/s3/s3-client.ts";
import { S3MountFlag } from "../object/s3/mount-flag.ts";
import { S3Store } from "../object/s3/s3-store.ts";
import { S3KeyObject } from "../object/s3/key-object.ts";
import type { KeyObjectStore } from "../object/key-object.ts";
import { FaultyObjects } from "../object/test-faults.ts";
import { listLevelsInBackground, openLayers, type OpenedLayers } from "./layers/open-layers.ts";

export interface OpenedObjects {
  objects: ObjectStore;
  geometry: Geometry;
  /** Undefined for the in-memory store. */
  flag: MountFlagStore | undefined;
  /** Where the disk's wrapped data key is kept, under its own prefix (S3 only: --test stores blocks as they are). */
  keyObject: KeyObjectStore | undefined;
  /** A block the disk stored itself (not one of a base), if any. */
  anyOwnBlock: () => Promise<number | undefined>;
  /** Spare block buffers the store's GETs read bodies into, for the block cache to fill (S3 only). */
  spares: BufferPool | undefined;
  /** A disk not created yet: block 0 is to be written at once, to record its sizes for the next mount. */
  isNew: boolean;
  /** Whether a stored block is to be checked against --encrypt before anything is written (S3 only). */
  checkEncoding: boolean;
  /** The disk's own prefix, whose name keys its encryption (a snapshot's disk for `disk@name`). */
  disk: string;
  /** A mounted disk on S3: its chain of layers (one level for a plain disk), for snapshots and resizes. */
  layers?: OpenedLayers;
}

/** A scrub asks this many times for a body that fails its checks: damage in storage fails every time (app/scrub.ts). */
const SCRUB_BODY_ATTEMPTS = 3;

/**
 * `sized`: the disk's sizes are needed, and its blocks are read (a mount, a scrub); --erase,
 * --reset-mounted-flag and passwd need neither. Only a mount makes a new disk.
 */
export function openObjects(config: Config, log: Logger, sized: boolean): Promise<OpenedObjects> {
  return config.test ? openLocal(config, sized) : openS3(config, log, sized);
}

async function openLocal(config: Config, sized: boolean): Promise<OpenedObjects> {
  const geometry = !sized && config.fileSize === undefined ? anyGeometry(config) : resolveGeometry(config, undefined, config.force);
  const { blockSize, numBlocks } = geometry;
  const inMemory = config.bucket === MEMORY_BUCKET;
  const store = inMemory
    ? new MemoryObjects(blockSize, numBlocks)
    : await LocalDirStore.open({ dir: config.bucket, prefix: config.prefix, blockSize, numBlocks, hashPrefix: config.blockHashPrefix });
  const f = config.testFaults;
  const objects = f.errors || f.delays || f.discard ? new FaultyObjects(store, f) : store;
  const flag = inMemory ? undefined : new LocalMountFlag(config.bucket, config.prefix);
  const anyOwnBlock = () => objects.anyBlock();
  return { objects, geometry, flag, keyObject: undefined, anyOwnBlock, spares: undefined, isNew: false, checkEncoding: false, disk: config.prefix };
}

/** An S3 client as the flags set it up. */
export function s3Client(config: Config, log: Logger): S3Client {
  const s3 = config.s3;
  const credentials = credentialSource(s3);
  log.debug(`S3 ${s3.baseURL} bucket ${config.bucket}, region ${s3.region}, credentials from ${credentials.origin}`);
  return new S3Client({
    baseURL: s3.baseURL, bucket: config.bucket, vhost: s3.vhost, region: s3.region, credentials,
    timeoutMs: s3.timeoutMs, initialRetryPauseMs: s3.initialRetryPauseMs, maxRetryPauseMs: s3.maxRetryPauseMs,
    damagedBodyAttempts: config.mode === "scrub" ? SCRUB_BODY_ATTEMPTS : undefined,
    insecure: s3.insecure, caFile: s3.cacert, maxUploadBps: s3.maxUploadBps, maxDownloadBps: s3.maxDownloadBps,
    debugHttp: s3.debugHttp, keepAlive: s3.keepAlive, log,
  });
}

async function openS3(config: Config, log: Logger, sized: boolean): Promise<OpenedObjects> {
  const s3 = config.s3;
  const client = s3Client(config, log);
  if (sized) return openS3Layers(config, log, client);
  const geometry = anyGeometry(config);
  const spares = new BufferPool(geometry.blockSize, false);
  const objects = new S3Store(client, {
    prefix: config.prefix, hashPrefix: config.blockHashPrefix, blockSize: geometry.blockSize, numBlocks: geometry.numBlocks,
    putHeaders: s3.putHeaders, listThreads: s3.listBlocksThreads, spares,
  });
  const keyObject = new S3KeyObject(client, config.bucket, config.prefix);
  const anyOwnBlock = () => objects.anyBlock();
  return { objects, geometry, flag: new S3MountFlag(client, config.prefix), keyObject, anyOwnBlock, spares, isNew: false, checkEncoding: false, disk: config.prefix };
}

/** A disk to mount or scrub: its layers (docs/design/clones.md), its geometry from its manifest or block 0. */
async function openS3Layers(config: Config, log: Logger, client: S3Client): Promise<OpenedObjects> {
  const layers = await openLayers(config, log, client);
  const detected = layers.detected;
  if (detected === "no metadata") log.warn("block 0 carries no size metadata: using the sizes given on the command line");
  const geometry = resolveGeometry(config, typeof detected === "object" ? detected : undefined, config.force);
  if (typeof detected === "object") log.debug(`auto-detected ${detected.blockSize}-byte blocks, file size ${detected.fileSize}`);
  const mounting = config.mode === "mount";
  const spares = new BufferPool(geometry.blockSize, mounting);
  await layers.build(geometry.blockSize, geometry.numBlocks, spares);
  const objects = layers.objects;
  if (objects.layered && mounting) listLevelsInBackground(objects, log); // a scrub lists them itself
  const keyObject = new S3KeyObject(client, config.bucket, layers.disk);
  const anyOwnBlock = () => objects.anyBlockOf(layers.disk);
  return { objects, geometry, flag: layers.flag, keyObject, anyOwnBlock, spares, isNew: layers.isNew, checkEncoding: !objects.layered, disk: layers.disk, layers };
}

/** For --erase, --reset-mounted-flag and passwd, which need no size: every block name counts. */
function anyGeometry(config: Config): Geometry {
  const blockSize = config.blockSize ?? DEFAULT_BLOCK_SIZE;
  return { blockSize, fileSize: blockSize * MAX_BLOCKS, numBlocks: MAX_BLOCKS };
}
