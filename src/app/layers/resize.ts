/**
 * `s3backer resize bucket/disk SIZE`: a new size for a disk. Mounted on this host, the mount grows
 * it (mounted-ops.ts: the FUSE file follows, NBD clients see it at their next connection). Not
 * mounted, the command does it holding the disk's flag: the size goes into the manifest, or into
 * block 0's metadata for a plain disk (stored again as it is). Shrinking refuses while any data
 * lies past the new end, unless --force, which deletes the disk's own blocks there first (so a
 * later growth shows zeros) and hides its bases' for good; then the size is recorded. A disk that
 * others read through is frozen: no resize at all, grow or shrink, --force or not.
 */
import type { Config } from "../../config/settings.ts";
import type { Logger } from "../../log.ts";
import { MAX_BLOCKS } from "../../config/geometry.ts";
import { ConfigError, UsageError } from "../../errors.ts";
import type { Manifest } from "../../object/layers/manifest.ts";
import { formatSize, parseSize } from "../../util/size.ts";
import { geometryOf, holdingFlag, openCommandDisk, throughMount, type CommandDisk } from "./command-disk.ts";
import { levelsOf } from "./chain.ts";
import { listLevels, levelStore, type Geometry } from "./level-listing.ts";


export async function resizeCommand(config: Config, log: Logger): Promise<number> {
  const cd = await openCommandDisk(config, log);
  if (cd.located.snapshot !== undefined) throw new ConfigError(`${cd.name}@${cd.located.snapshot} is a snapshot: its size cannot change`);
  const size = parseSize(cd.rest[0]!);
  if (size === undefined || size === 0) throw new UsageError(`'${cd.rest[0]}' is not a size (such as 20G)`);
  const message = (await throughMount(cd, { op: "resize", size }, "a resize")) ?? (await holdingFlag(cd, () => resizeOffline(cd, size), { what: "a resize", liveOnly: true }));
  process.stderr.write(`s3backer: ${message}\n`);
  return 0;
}

async function resizeOffline(cd: CommandDisk, size: number): Promise<string> {
  const { records, located } = cd;
  const found = await records.manifest(located.disk);
  const g: Geometry = found ? { blockSize: found.manifest.blockSize, size: found.manifest.size, hashPrefix: found.manifest.hashPrefix } : await geometryOf(cd);
  if (size % g.blockSize !== 0) throw new ConfigError(`${formatSize(size)} is not a whole number of the disk's ${formatSize(g.blockSize)} blocks`);
  const blocks = size / g.blockSize;
  if (blocks > MAX_BLOCKS) throw new ConfigError(`${formatSize(size)} needs more than ${MAX_BLOCKS} blocks of ${formatSize(g.blockSize)}: block names have 8 hex digits`);
  const old = g.size / g.blockSize;
  if (blocks === old) return `${cd.name} is already ${formatSize(size)}`;
  const m = found?.manifest;
  if (blocks < old) await dropPastEnd(cd, m, g, blocks);
  if (m) {
    const chain = m.chain.map((l) => ({ ...l, blocks: Math.min(l.blocks, blocks) }));
    await records.replaceManifest(located.disk, { ...m, size, chain }, found!.etag);
  } else {
    await recordSize(cd, g, blocks);
  }
  return `${cd.name} ${blocks > old ? "grew" : "shrank"} from ${formatSize(g.size)} to ${formatSize(size)}`;
}

/** Refuses a shrink that would drop data, unless --force: then deletes the disk's own objects past the end. */
async function dropPastEnd(cd: CommandDisk, m: Manifest | undefined, g: Geometry, blocks: number): Promise<void> {
  const levels = m ? levelsOf(m, cd.located.disk, undefined).levels : [{ layer: cd.located.disk, disk: cd.located.disk, blocks: Number.MAX_SAFE_INTEGER }];
  const listed = await listLevels(cd, levels, g);
  const past: number[] = [];
  let data: { block: number; layer: string } | undefined;
  listed.forEach((level, i) => {
    for (let b = blocks; b < Math.min(level.blocks, g.size / g.blockSize); b++) {
      const state = level.map.state(b);
      if (i === 0 && state !== "absent") past.push(b);
      if (state === "data") data ??= { block: b, layer: level.layer };
    }
  });
  if (data && !cd.config.force) {
    throw new ConfigError(`${cd.name} holds data past ${formatSize(blocks * g.blockSize)} (block ${data.block}, in ${data.layer || "the bucket's root"}): shrinking would drop it; --force drops it`);
  }
  const live = listed[0]!.store;
  await Promise.all(past.map((b) => live.delete(b)));
}

/** A plain disk's size is block 0's metadata: block 0 stored again, as it is, with the new size. */
async function recordSize(cd: CommandDisk, g: Geometry, blocks: number): Promise<void> {
  const store = levelStore(cd, cd.located.disk, g, blocks);
  const block0 = await store.get(0);
  if (!block0 || block0.body.length === 0) {
    throw new ConfigError(`${cd.name} has no block 0 to keep its size in (the original deletes a zero block 0): mount it once with --size=${formatSize(blocks * g.blockSize)} --force instead`);
  }
  await store.put(0, { body: block0.body, encoding: block0.encoding ?? undefined, hmac: block0.hmac ?? undefined, md5: block0.md5 });
}
