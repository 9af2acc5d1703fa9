/**
 * A disk's chain of layers as its manifest gives it: where a disk argument points (a disk, or one
 * of its snapshots: `bucket/disk@name`), the levels it reads through, and a check of each level's
 * encoding against the flags and the key of the disk that wrote it.
 */
import type { Config } from "../../config/settings.ts";
import { ConfigError, messageOf } from "../../errors.ts";
import type { DiskRecords, FoundManifest } from "../../object/layers/disk-records.ts";
import type { LayerLevel } from "../../object/layers/layered-objects.ts";
import type { Level, Manifest } from "../../object/layers/manifest.ts";
import type { ObjectStore } from "../../object/object-store.ts";
import { Codec } from "../../store/codec/codec.ts";
import { checkDiskEncoding } from "../../store/codec/disk-check.ts";
import type { KeyOf } from "./keys.ts";

/** Where a disk argument points: a disk, maybe one of its snapshots, and its manifest if it has one. */
export interface Located {
  disk: string;
  snapshot?: string;
  found?: FoundManifest;
}

/**
 * `prefix` as a disk: its manifest if it has one; else, if its last part is `name@snap` and
 * `name` has that snapshot, the snapshot; else a plain disk (a name may hold an '@').
 */
export async function locate(records: DiskRecords, prefix: string): Promise<Located> {
  const found = await records.manifest(prefix);
  if (found) return { disk: prefix, found };
  const m = /^(.*?)([^/]*)@([^/@]+)\/$/.exec(prefix);
  if (!m) return { disk: prefix };
  const disk = m[1]! + (m[2] ? `${m[2]}/` : "");
  const owner = await records.manifest(disk);
  if (!owner) return { disk: prefix };
  const snapshot = m[3]!;
  if (!owner.manifest.snapshots.some((s) => s.name === snapshot)) {
    const names = owner.manifest.snapshots.map((s) => s.name).join(", ") || "none";
    throw new ConfigError(`${records.name(disk)} has no snapshot '${snapshot}' (its snapshots: ${names})`);
  }
  return { disk, snapshot, found: owner };
}

/** The levels a manifest reads through, top first, for the disk or one of its snapshots. */
export function levelsOf(m: Manifest, disk: string, snapshot: string | undefined): { levels: Level[]; size: number; writable: boolean } {
  if (snapshot === undefined) return { levels: [{ layer: m.live, disk, blocks: Number.MAX_SAFE_INTEGER }, ...m.chain], size: m.size, writable: true };
  const s = m.snapshots.find((x) => x.name === snapshot)!;
  return { levels: s.levels, size: s.size, writable: false };
}

/**
 * Each disk of the chain, at its nearest level, against --encrypt and the key its name gives:
 * one GET each. A mismatch is one line naming that disk.
 */
export async function checkLevels(levels: LayerLevel[], config: Config, keyOf: KeyOf, records: DiskRecords): Promise<void> {
  const seen = new Set<string>();
  for (const level of levels) {
    if (seen.has(level.disk)) continue;
    seen.add(level.disk);
    await checkOneLevel(level.store, level.disk, config, keyOf, records.name(level.disk));
  }
}

export async function checkOneLevel(store: ObjectStore, disk: string, config: Config, keyOf: KeyOf, name: string): Promise<void> {
  const encryption = config.codec.encryption ? await keyOf(disk) : undefined;
  const codec = new Codec(store, { compression: undefined, encryption, defaultEncoding: config.codec.defaultEncoding, keepSizes: false });
  // A zero marker (an empty object) holds nothing to check.
  const noMarkers = {
    get: async (b: number) => ((await store.get(b))?.body.length ? store.get(b) : null),
    head: async (b: number) => store.head(b),
    anyBlock: () => store.anyBlock(),
  } as unknown as ObjectStore;
  try {
    await checkDiskEncoding(noMarkers, codec, encryption !== undefined, config.codec.defaultEncoding);
  } catch (err) {
    throw new ConfigError(`${name}: ${messageOf(err)}`);
  }
}

