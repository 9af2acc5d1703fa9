/**
 * The objects of a disk's layers, listed one layer at a time, for the commands that look at or
 * rewrite them all (info, flatten, resize, erase): which blocks hold data, which a zero marker (an
 * empty object), and how many bytes each layer stores. A bit per block and level, as a mount keeps.
 */
import { LevelMap } from "../../object/layers/level-map.ts";
import type { Level } from "../../object/layers/manifest.ts";
import { S3Store } from "../../object/s3/s3-store.ts";
import type { CommandDisk } from "./command-disk.ts";

export interface Geometry {
  blockSize: number;
  size: number;
  hashPrefix: boolean;
}

export interface ListedLevel extends Level {
  store: S3Store;
  map: LevelMap;
  /** Bytes its objects hold. */
  bytes: number;
}

export function levelStore(cd: CommandDisk, layer: string, g: Geometry, numBlocks = g.size / g.blockSize): S3Store {
  const s3 = cd.config.s3;
  return new S3Store(cd.client, { prefix: layer, hashPrefix: g.hashPrefix, blockSize: g.blockSize, numBlocks, putHeaders: s3.putHeaders, listThreads: s3.listBlocksThreads });
}

/** Lists each level, up to `numBlocks` (the disk's end unless said); a level's own `blocks` bound is applied by homeOf. */
export async function listLevels(cd: CommandDisk, levels: Level[], g: Geometry, numBlocks = g.size / g.blockSize): Promise<ListedLevel[]> {
  const listed: ListedLevel[] = [];
  for (const level of levels) {
    const store = levelStore(cd, level.layer, g, numBlocks);
    const map = new LevelMap(numBlocks);
    let bytes = 0;
    await map.load((found) =>
      store.list((block, size) => {
        bytes += Math.max(0, size ?? 0);
        found(block, size);
      }),
    );
    listed.push({ ...level, store, map, bytes });
  }
  return listed;
}

/** Where a read of `block` finds it: the index of the nearest level holding data or a marker there, or -1. */
export function homeOf(levels: ListedLevel[], block: number): number {
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (block < level.blocks && level.map.state(block) !== "absent") return i;
  }
  return -1;
}
