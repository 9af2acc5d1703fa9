/**
 * `--base`: a new disk that reads through another (a clone). Nothing is copied: the new disk's
 * manifest names the base's levels, its own prefix takes its writes. Everything is checked before
 * anything is written (the base exists, no cycle, the same block size, the flags' encryption and
 * password against the base's blocks); then the base's dependents record is written first, the
 * base's mounted flag checked after it, and the manifest last, with If-None-Match: a crash leaves
 * at most a record without a disk, which counts as stale once old (docs/design/clones.md).
 */
import type { Config } from "../../config/settings.ts";
import { ConfigError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { blockName } from "../../object/block-names.ts";
import type { DiskRecords, FoundManifest } from "../../object/layers/disk-records.ts";
import { checkChain, FORMAT, type BaseRef, type Level, type Manifest } from "../../object/layers/manifest.ts";
import { detectGeometry } from "../../object/s3/auto-detect.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import { S3Store } from "../../object/s3/s3-store.ts";
import { formatSize } from "../../util/size.ts";
import type { KeyOf } from "./keys.ts";
import { checkLevels, levelsOf, locate } from "./chain.ts";

export function refName(records: DiskRecords, ref: BaseRef): string {
  return `${records.name(ref.disk)}${ref.snapshot === undefined ? "" : `@${ref.snapshot}`}`;
}

/** The clone `config.prefix` of `config.base`, made now; or the disk as it is, if it already is that clone. */
export async function makeClone(records: DiskRecords, config: Config, existing: FoundManifest | undefined, keyOf: KeyOf, log: Logger): Promise<FoundManifest> {
  const base = config.base!;
  const typed = config.typed.base ?? "--base";
  const disk = config.prefix;
  if (base.bucket !== config.bucket) throw new ConfigError(`${typed}: a base must be in the same bucket as the disk (${config.bucket})`);
  const located = await locate(records, base.prefix).catch((err: unknown) => {
    throw err instanceof ConfigError ? new ConfigError(`${typed}: ${err.message}`) : err;
  });
  const ref: BaseRef = located.snapshot === undefined ? { disk: located.disk } : { disk: located.disk, snapshot: located.snapshot };
  const baseName = refName(records, ref);
  if (located.disk === disk) throw new ConfigError(`${typed}: ${records.name(disk)} cannot be its own base (a cycle)`);
  if (existing) {
    const had = existing.manifest.base;
    if (had?.disk === ref.disk && had.snapshot === ref.snapshot) return existing; // a later mount repeating --base
    throw new ConfigError(`${typed}: ${records.name(disk)} already exists ${had ? `as a clone of ${refName(records, had)}` : "as a disk of its own"}: --base makes a new disk`);
  }
  if (config.readOnly) throw new ConfigError(`${typed} makes a new disk, which --readOnly cannot: mount ${baseName} itself read-only instead`);

  const s3Store = (prefix: string, hashPrefix: boolean, blockSize: number, numBlocks: number) =>
    new S3Store(records.client, { prefix, hashPrefix, blockSize, numBlocks, putHeaders: config.s3.putHeaders, listThreads: config.s3.listBlocksThreads });
  let chain: Level[];
  let blockSize: number;
  let size: number;
  let hashPrefix: boolean;
  if (located.found) {
    const m = located.found.manifest;
    const levels = levelsOf(m, located.disk, located.snapshot);
    ({ blockSize, hashPrefix } = m);
    size = levels.size;
    // The base's live layer as it is now: frozen from here on, up to its present end.
    chain = levels.levels.map((l) => ({ ...l, blocks: Math.min(l.blocks, size / blockSize) }));
  } else {
    hashPrefix = config.blockHashPrefix;
    const detected = await detectGeometry(records.client, located.disk + blockName(0, hashPrefix));
    if (typeof detected !== "object") {
      const any = await s3Store(located.disk, hashPrefix, config.blockSize ?? 4096, 2 ** 32).anyBlock();
      if (any === undefined) throw new ConfigError(`${typed}: there is no disk at ${baseName}${hashPrefix ? "" : " (if its blocks are named with a hash, add --blockHashPrefix)"}`);
      if (config.blockSize === undefined || config.fileSize === undefined) throw new ConfigError(`${typed}: ${baseName} carries no sizes in its block 0: give its --blockSize and --size`);
    }
    blockSize = typeof detected === "object" ? detected.blockSize : config.blockSize!;
    size = typeof detected === "object" ? detected.fileSize : config.fileSize!;
    chain = [{ layer: located.disk, disk: located.disk, blocks: size / blockSize }];
  }
  if (located.disk === disk || chain.some((l) => l.layer === disk || l.disk === disk)) {
    throw new ConfigError(`${typed}: ${baseName} reads through ${records.name(disk)} itself: a disk cannot be its own base (a cycle)`);
  }
  checkChain(typed, disk, chain);
  if (config.blockSize !== undefined && config.blockSize !== blockSize) {
    throw new ConfigError(`${config.typed.blockSize}: the base ${baseName} has blocks of ${formatSize(blockSize)}, and a clone has its base's block size`);
  }
  const fileSize = config.fileSize ?? size;
  if (fileSize % blockSize !== 0) throw new ConfigError(`${config.typed.size}: not a multiple of the base's block size (${formatSize(blockSize)})`);
  const own = s3Store(disk, hashPrefix, blockSize, fileSize / blockSize);
  if ((await own.anyBlock()) !== undefined) {
    throw new ConfigError(`${typed}: ${records.name(disk)} already holds blocks of a disk of its own: --base makes a new disk (pick another name, or erase that one first)`);
  }
  await checkLevels(chain.map((l) => ({ ...l, store: s3Store(l.layer, hashPrefix, blockSize, fileSize / blockSize) })), config, keyOf, records);

  // The protection first: a crash after it leaves a record without a disk, never a disk without protection.
  await records.addDependent(located.disk, { disk, ...(ref.snapshot === undefined ? {} : { snapshot: ref.snapshot }) });
  try {
    if (ref.snapshot === undefined) {
      const holder = await new S3MountFlag(records.client, located.disk).holder();
      if (holder) {
        throw new ConfigError(
          `${typed}: ${baseName} is mounted read-write (${holder}), and a base must not change under its clones: unmount it, or snapshot it and clone the snapshot (--base=${baseName}@NAME)`,
        );
      }
    }
    const manifest: Manifest = { format: FORMAT, blockSize, size: fileSize, hashPrefix, live: disk, chain, base: ref, snapshots: [], nextLayer: 1 };
    const etag = await records.replaceManifest(disk, manifest, "");
    log.info(`${records.name(disk)} made: a clone of ${baseName} (${chain.length} levels below it, nothing copied)`);
    return { manifest, etag };
  } catch (err) {
    // Another command that made this very clone meanwhile keeps the record (it is the same one).
    const now = await records.manifest(disk).catch(() => undefined);
    if (now?.manifest.base?.disk !== ref.disk) await records.removeDependent(located.disk, disk).catch(() => {});
    throw err;
  }
}
