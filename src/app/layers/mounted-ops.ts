/**
 * What a mount does when the `snapshot` or `resize` command reaches it over its control socket,
 * one request at a time:
 *
 * - snapshot: every dirty block is stored, new writes are held and those in flight finished, the
 *   manifest gains the snapshot and a new live layer (one conditional PUT: the commit), then writes
 *   go on into the new layer. Writes are held until the manifest's fate is known, however long
 *   storage takes to tell: none may reach the old layer once the new manifest may be in force.
 * - resize (grow only): the new size is stored first (the manifest, or block 0's metadata on a
 *   plain disk, one PUT), then the stack and the front end see it (FUSE: the kernel is told).
 */
import { MAX_BLOCKS } from "../../config/geometry.ts";
import { ConfigError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { checkSnapshotName, plainManifest, withSnapshot } from "../../object/layers/manifest.ts";
import type { Codec } from "../../store/codec/codec.ts";
import { formatSize } from "../../util/size.ts";
import type { Disk } from "../open-disk.ts";
import type { Config } from "../../config/settings.ts";
import { controlPath, listenControl, type ControlRequest } from "./control.ts";
import { listLevelsInBackground, type OpenedLayers } from "./open-layers.ts";

export class MountedOps {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly disk: Disk,
    private readonly layers: OpenedLayers,
    private readonly log: Logger,
    /** Tells the front end the disk's size changed. */
    private readonly resized: () => Promise<void>,
  ) {}

  handle(request: ControlRequest): Promise<string> {
    const run = () => (request.op === "snapshot" ? this.snapshot(String(request.name)) : this.grow(Number(request.size)));
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }

  private get name(): string {
    return this.layers.records.name(this.layers.disk);
  }

  private async snapshot(name: string): Promise<string> {
    checkSnapshotName(name, "snapshot");
    const { records, disk, objects } = this.layers;
    const { blockSize } = this.disk.geometry;
    await this.disk.store.flush();
    const release = await objects.hold();
    let live: string;
    try {
      const found = await records.manifest(disk);
      const m = found?.manifest ?? plainManifest(disk, blockSize, objects.numBlocks * blockSize, this.layers.hashPrefix);
      if (m.live !== objects.live) throw new ConfigError(`${this.name}: its manifest names another live layer (${m.live}) than this mount writes (${objects.live}): unmount it and mount it again`);
      const next = withSnapshot(m, disk, name, new Date().toISOString());
      await records.checkNewLayer(disk, next.live);
      await records.replaceManifest(disk, next, found?.etag ?? "", true);
      objects.switchLive(this.layers.storeFor(next.live), next.live);
      live = next.live;
    } finally {
      release();
    }
    listLevelsInBackground(objects, this.log);
    const message = `${this.name}@${name}: snapshot taken; writes now go to ${live}`;
    this.log.info(message);
    return message;
  }

  private async grow(size: number): Promise<string> {
    const { records, disk, objects } = this.layers;
    const { blockSize } = this.disk.geometry;
    if (!Number.isSafeInteger(size) || size <= 0 || size % blockSize !== 0) throw new ConfigError(`${size}: not a whole number of the disk's ${formatSize(blockSize)} blocks`);
    const blocks = size / blockSize;
    const now = objects.numBlocks;
    if (blocks === now) return `${this.name} is already ${formatSize(size)}`;
    if (blocks < now) throw new ConfigError(`${this.name} is mounted: it can grow now, but shrinking needs it unmounted`);
    if (blocks > MAX_BLOCKS) throw new ConfigError(`${formatSize(size)} needs more than ${MAX_BLOCKS} blocks of ${formatSize(blockSize)}`);
    await this.disk.store.flush();
    const release = await objects.hold();
    try {
      const found = await records.manifest(disk);
      if (found) {
        await records.replaceManifest(disk, { ...found.manifest, size }, found.etag, true);
        objects.grow(blocks);
      } else {
        objects.grow(blocks);
        try {
          await this.recordSizeInBlock0();
        } catch (err) {
          objects.grow(now);
          throw err;
        }
      }
      this.disk.geometry.numBlocks = blocks;
      this.disk.geometry.fileSize = size;
    } finally {
      release();
    }
    await this.resized();
    const message = `${this.name} grew from ${formatSize(now * blockSize)} to ${formatSize(size)}`;
    this.log.info(message);
    return message;
  }

  /** A plain disk keeps its size in block 0's metadata: block 0 is stored again, as it is, with the new size. */
  private async recordSizeInBlock0(): Promise<void> {
    const live = this.layers.objects.liveStore;
    const block0 = await live.get(0);
    if (block0 && block0.body.length > 0) {
      await live.put(0, { body: block0.body, encoding: block0.encoding ?? undefined, hmac: block0.hmac ?? undefined, md5: block0.md5 });
    } else {
      // The original deletes a zero block 0: ours stores it, to keep the sizes.
      await live.put(0, await (this.disk.backend as Codec).encode(0, new Uint8Array(this.disk.geometry.blockSize)));
    }
  }
}

/**
 * The control socket of a read-write mount on S3 (none for --readOnly or --sharedDiskMode: a
 * snapshot needs one writer), named by the token of the flag it holds, answered by MountedOps;
 * `resized` tells the front end.
 */
export function startControl(config: Config, disk: Disk, token: number | undefined, resized: () => Promise<void>, log: Logger): Promise<{ close(): void } | undefined> {
  const layers = disk.layers;
  if (!layers || token === undefined || config.readOnly || config.sharedDisk) return Promise.resolve(undefined);
  const ops = new MountedOps(disk, layers, log, resized);
  return listenControl(controlPath(config.bucket, layers.disk, token), (r) => ops.handle(r), log);
}
