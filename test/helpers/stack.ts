/**
 * One builder for what tests assemble by hand: an S3 client of a test server, a disk's objects in
 * a bucket, and the block tier over any object store, layer on layer as app/open-disk.ts builds it.
 * Each starts from the test defaults here and takes overrides, so that a test names only what it
 * is about.
 */
import { Logger } from "../../src/log.ts";
import type { ObjectStore } from "../../src/object/object-store.ts";
import type { CredentialSource } from "../../src/object/s3/credentials.ts";
import { S3Client, type S3ClientOptions } from "../../src/object/s3/s3-client.ts";
import { S3Store, type S3StoreOptions } from "../../src/object/s3/s3-store.ts";
import { BlockCache, type BlockCacheOptions } from "../../src/store/block-cache/block-cache.ts";
import { CacheFile } from "../../src/store/block-cache/cache-file.ts";
import { Codec, type CodecOptions } from "../../src/store/codec/codec.ts";
import { ConsistencyGuard, type ConsistencyGuardOptions } from "../../src/store/consistency-guard/consistency-guard.ts";
import { ZeroBlockCache } from "../../src/store/zero-block-cache/zero-block-cache.ts";
import { ACCESS, SECRET } from "./s3.ts";

/** The test servers' keys (another secret: a client the server refuses). */
export function testKeys(secretAccessKey = SECRET): CredentialSource {
  return { origin: "test", get: async () => ({ accessKeyId: ACCESS, secretAccessKey }) };
}

/** A client of `bucket` at `baseURL`: the test keys, path-style URLs, quick retries, a 5 s timeout. */
export function testClient(options: Pick<S3ClientOptions, "baseURL" | "bucket"> & Partial<S3ClientOptions>): S3Client {
  return new S3Client({
    vhost: false, region: "us-east-1", credentials: testKeys(), timeoutMs: 5000, initialRetryPauseMs: 5, maxRetryPauseMs: 200,
    insecure: false, caFile: undefined, maxUploadBps: 0, maxDownloadBps: 0, debugHttp: false, keepAlive: true, log: new Logger(),
    ...options,
  });
}

/** A disk's objects through `client`, under a prefix of its own: 64 blocks of 4 KiB. */
export function testS3Store(client: S3Client, options: Partial<S3StoreOptions> = {}): S3Store {
  return new S3Store(client, { prefix: `${Math.random().toString(36).slice(2)}/`, hashPrefix: false, blockSize: 4096, numBlocks: 64, putHeaders: {}, listThreads: 4, ...options });
}

/** The layers of a stack, bottom first; a layer not named is not built (the codec always is). */
export interface Layers {
  codec?: Partial<CodecOptions>;
  guard?: Partial<ConsistencyGuardOptions>;
  zeroCache?: true;
  cache?: Partial<BlockCacheOptions>;
  /** With `cache`: the block cache keeps its blocks in a new cache file of `slots` slots (write-back started). */
  cacheFile?: { path: string; slots: number };
}

export type Stack<L extends Layers> = { codec: Codec } & (L extends { guard: object } ? { guard: ConsistencyGuard } : unknown) &
  (L extends { zeroCache: true } ? { zero: ZeroBlockCache } : unknown) & (L extends { cache: object } ? { cache: BlockCache } : unknown) &
  (L extends { cache: object; cacheFile: object } ? { file: CacheFile } : unknown);

/** No compression, no encryption: blocks as a plain disk stores them. */
const CODEC: CodecOptions = { compression: undefined, encryption: undefined, defaultEncoding: undefined, keepSizes: false };
const GUARD: ConsistencyGuardOptions = { cacheSize: 64, cacheTimeMs: 10_000, minWriteDelayMs: 0, initialRetryPauseMs: 5, maxRetryPauseMs: 2000 };
const CACHE: Omit<BlockCacheOptions, "log"> = {
  size: 16, memoryBlocks: 16, threads: 4, writeDelayMs: 0, maxDirty: 16, timeoutMs: 0, sync: false, readAhead: 0, readAheadTrigger: 2, numProtected: 0,
};

/** The block tier over `objects`: the codec, then each layer named in `layers`, each over the one below. */
export function testStack<L extends Layers>(objects: ObjectStore, layers: L = {} as L): Stack<L> {
  const codec = new Codec(objects, { ...CODEC, ...layers.codec });
  const guard = layers.guard && new ConsistencyGuard(codec, { ...GUARD, ...layers.guard });
  const zero = layers.zeroCache && new ZeroBlockCache(guard ?? codec);
  let cache: BlockCache | undefined;
  let file: CacheFile | undefined;
  if (layers.cache) {
    file = layers.cacheFile && CacheFile.open(layers.cacheFile.path, objects.blockSize, objects.numBlocks, layers.cacheFile.slots).file;
    const options = { ...CACHE, log: new Logger({ kind: "file", path: "/dev/null" }), ...layers.cache };
    cache = new BlockCache(zero ?? guard ?? codec, options, file && { file, blocks: [], check: undefined });
    if (file) cache.resume();
  }
  return { codec, guard, zero, cache, file } as Stack<L>;
}
