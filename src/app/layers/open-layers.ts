/**
 * Opening a disk on S3 for a mount, layers and all (docs/design/clones.md): finds its manifest
 * (none: a plain disk, one level), or the snapshot `bucket/disk@name` names; makes a new clone when
 * `--base` is given; checks each level's encoding against the flags and the disk's key; and
 * builds the chain of levels as one object store. A read-write mount's flag also checks, once
 * set, that the disk is no base of another (a base is frozen) and that its manifest did not
 * change meanwhile.
 */
import type { Config } from "../../config/settings.ts";
import { ConfigError, Errno, errnoOf, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BufferPool } from "../../memory/buffer-pool.ts";
import { blockName } from "../../object/block-names.ts";
import { DiskRecords, type DependentRecord } from "../../object/layers/disk-records.ts";
import { LayeredObjects, type LayerLevel } from "../../object/layers/layered-objects.ts";
import { checkChain } from "../../object/layers/manifest.ts";
import type { MountFlagStore } from "../../object/mount-flag.ts";
import { detectGeometry, type Detected } from "../../object/s3/auto-detect.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import type { S3Client } from "../../object/s3/s3-client.ts";
import { S3Store } from "../../object/s3/s3-store.ts";
import { keyRing, type KeyOf } from "./keys.ts";
import { makeClone } from "./clone.ts";
import { checkLevels, levelsOf, locate } from "./chain.ts";

export interface OpenedLayers {
  objects: LayeredObjects;
  detected: Detected;
  /** The disk's own prefix: its name keys its encryption. */
  disk: string;
  keyOf: KeyOf;
  /** The other disks whose levels it reads through (its bases), nearest first. */
  baseDisks: string[];
  flag: MountFlagStore;
  /** A plain disk not created yet (block 0 is to be written at once); never a clone. */
  isNew: boolean;
  records: DiskRecords;
  /** Whether block names carry the hash prefix (the manifest's word, else --blockHashPrefix). */
  hashPrefix: boolean;
  /** The store of a layer of this disk (after `build`): for the new live layer of a snapshot. */
  storeFor(layer: string): S3Store;
  /** Builds the stores once the caller has resolved the geometry found against the flags. */
  build(blockSize: number, numBlocks: number, spares: BufferPool): Promise<void>;
}

export async function openLayers(config: Config, log: Logger, client: S3Client): Promise<OpenedLayers> {
  const records = new DiskRecords(client, log);
  let located = await locate(records, config.prefix);
  const keyOf = keyRing(config, client);
  if (config.base) {
    if (located.snapshot !== undefined) throw new ConfigError(`--base: ${records.name(located.disk)}@${located.snapshot} is a snapshot, not a new disk`);
    located = { disk: located.disk, found: await makeClone(records, config, located.found, keyOf, log) };
  }
  const { disk, snapshot, found } = located;
  // A scrub reads a snapshot as it is (and writes only a repair, to the live layer).
  if (snapshot !== undefined && !config.readOnly && config.mode === "mount") {
    throw new ConfigError(`${records.name(disk)}@${snapshot} is a snapshot, which is read-only: mount it with --readOnly, or clone it (--base=${records.name(disk)}@${snapshot})`);
  }
  const m = found?.manifest;
  if (m && config.blockHashPrefix && !m.hashPrefix) throw new ConfigError(`--blockHashPrefix: ${records.name(disk)}'s blocks are named without the hash prefix (its manifest says so)`);
  const hashPrefix = m?.hashPrefix ?? config.blockHashPrefix;
  const chain = m ? levelsOf(m, disk, snapshot) : { levels: [{ layer: disk, disk, blocks: Number.MAX_SAFE_INTEGER }], size: 0, writable: true };
  if (m) checkChain(records.name(disk), undefined, chain.levels);
  const detected: Detected = m
    ? { blockSize: m.blockSize, fileSize: chain.size }
    : config.noAutoDetect ? "no disk" : await detectGeometry(client, disk + blockName(0, hashPrefix));

  const flag = new FrozenFlag(new S3MountFlag(client, disk), records, disk, found?.etag ?? "", log);
  const opened: OpenedLayers = {
    objects: undefined as unknown as LayeredObjects,
    detected, disk, keyOf, flag, records, hashPrefix,
    baseDisks: [...new Set(chain.levels.map((l) => l.disk))].filter((d) => d !== disk),
    isNew: config.mode === "mount" && !m && detected === "no disk" && !config.readOnly && !config.noAutoDetect,
    storeFor: () => {
      throw new Error("not built");
    },
    async build(blockSize, numBlocks, spares) {
      const s3 = config.s3;
      const store = (opened.storeFor = (layer: string) =>
        new S3Store(client, { prefix: layer, hashPrefix, blockSize, numBlocks: opened.objects?.numBlocks ?? numBlocks, putHeaders: s3.putHeaders, listThreads: s3.listBlocksThreads, spares }));
      const levels: LayerLevel[] = chain.levels.map((l) => ({ store: store(l.layer), layer: l.layer, disk: l.disk, blocks: l.blocks }));
      if (m) await checkLevels(levels, config, keyOf, records);
      opened.objects = new LayeredObjects(levels, {
        disk, trustLive: !config.sharedDisk, writable: chain.writable && !config.readOnly, close: async () => client.close(),
      });
    },
  };
  return opened;
}

/**
 * The mounted flag of a layered disk: once set (so that no snapshot or clone can start
 * meanwhile), a read-write mount also checks that no disk reads through this one's live layer,
 * and that the manifest is the one the mount opened. Either refused clears the flag again.
 */
class FrozenFlag implements MountFlagStore {
  constructor(
    private readonly inner: S3MountFlag,
    private readonly records: DiskRecords,
    private readonly disk: string,
    private readonly etag: string,
    private readonly log: Logger,
  ) {}

  holder(): Promise<string | undefined> {
    return this.inner.holder();
  }

  token(): Promise<number | undefined> {
    return this.inner.token();
  }

  async acquire(force: boolean, token: number): Promise<string | undefined> {
    const warning = await this.inner.acquire(force, token);
    try {
      const frozen = (await this.dependents()).find((d) => d.snapshot === undefined);
      if (frozen) {
        throw new ConfigError(`${this.records.name(this.disk)} is the base of ${this.records.name(frozen.disk)}, so it is read-only: mount it with --readOnly (or flatten or erase ${this.records.name(frozen.disk)} first)`);
      }
      const now = (await this.records.manifest(this.disk))?.etag ?? "";
      if (now !== this.etag) throw new ConfigError(`${this.records.name(this.disk)} changed while it was being mounted (a snapshot or clone meanwhile): mount it again`);
    } catch (err) {
      await this.inner.clear();
      throw err;
    }
    return warning;
  }

  clear(): Promise<void> {
    return this.inner.clear();
  }

  /** The disks reading through this one; none known where the credentials may not list the records. */
  private async dependents(): Promise<DependentRecord[]> {
    try {
      return await this.records.dependents(this.disk);
    } catch (err) {
      if (errnoOf(err) !== Errno.EACCES) throw err;
      this.log.warn(`cannot check whether ${this.records.name(this.disk)} is the base of other disks (${messageOf(err)}): mounted read-write all the same`);
      return [];
    }
  }
}

/** Every level listed in the background, as --listBlocks does: from then on a read costs at most one GET. */
export function listLevelsInBackground(objects: LayeredObjects, log: Logger): void {
  const started = performance.now();
  void objects
    .listLevels((layer, err) => log.warn(`listing layer ${layer || "(root)"} failed (${messageOf(err)}): its blocks are looked up one by one`))
    .then(() => log.info(`listed the disk's layers in ${((performance.now() - started) / 1000).toFixed(1)} s: reads now go straight to each block's level`));
}
