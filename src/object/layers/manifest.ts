/**
 * A layered disk's manifest: the one object (`<disk>/s3backer-layers`, JSON) that says which
 * prefix takes the disk's writes (its live layer), the read-only layers below it (nearest first),
 * its snapshots, and what `--base` named. A disk with neither base nor snapshot has none, and keeps
 * the original s3backer's layout exactly. Every change of a manifest is one conditional PUT of a
 * whole new one, so a crash leaves the old or the new (docs/design/clones.md).
 *
 * Prefixes here are key prefixes inside the bucket ("golden/", "" for the bucket's root); a
 * level's `disk` is the prefix of the disk that wrote it, whose name salts its encryption key.
 */
import { ConfigError } from "../../errors.ts";

export const MANIFEST_NAME = "s3backer-layers";
/** Layers made by snapshots live under the disk's prefix: `<disk>s3backer-layer-<n>/`. */
export const LAYER_NAME = "s3backer-layer-";
export const FORMAT = 1;

/** One read-only level of a chain. */
export interface Level {
  /** Key prefix of its objects. */
  layer: string;
  /** The disk that wrote it (its encryption key comes from this disk's name). */
  disk: string;
  /** Blocks of it that are visible (a later shrink hides the rest for good). */
  blocks: number;
}

export interface Snapshot {
  name: string;
  /** Its levels, nearest first: the disk as it was. */
  levels: Level[];
  /** The disk's size then, in bytes. */
  size: number;
  taken: string;
}

/** What `--base` named: the disk whose dependents record holds this one. */
export interface BaseRef {
  disk: string;
  snapshot?: string;
}

export interface Manifest {
  format: number;
  blockSize: number;
  size: number;
  hashPrefix: boolean;
  /** Where writes go. */
  live: string;
  /** Read-only levels below the live layer, nearest first. */
  chain: Level[];
  base?: BaseRef;
  snapshots: Snapshot[];
  /** The number of the next snapshot layer. */
  nextLayer: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A snapshot name: letters, digits, '.', '_', '-', up to 64, not starting with a sign. */
export function checkSnapshotName(name: string, what: string): void {
  if (!NAME.test(name)) throw new ConfigError(`${what}: '${name}' is not a snapshot name (letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit)`);
}

export function layerPrefix(disk: string, n: number): string {
  return `${disk}${LAYER_NAME}${n}/`;
}

export function manifestKey(disk: string): string {
  return disk + MANIFEST_NAME;
}

/** The manifest of a disk that had none (a plain disk): its own prefix is its only layer. */
export function plainManifest(disk: string, blockSize: number, size: number, hashPrefix: boolean): Manifest {
  return { format: FORMAT, blockSize, size, hashPrefix, live: disk, chain: [], snapshots: [], nextLayer: 1 };
}

/** Every layer a manifest names: live, chain, and the snapshots'. */
export function layersOf(m: Manifest): string[] {
  return [...new Set([m.live, ...m.chain.map((l) => l.layer), ...m.snapshots.flatMap((s) => s.levels.map((l) => l.layer))])];
}

/**
 * The manifest as a new snapshot leaves it: the live layer joins the chain (frozen from now on),
 * and writes go to a new, empty layer. The snapshot is the chain as it now is.
 */
export function withSnapshot(m: Manifest, disk: string, name: string, taken: string): Manifest {
  if (m.snapshots.some((s) => s.name === name)) throw new ConfigError(`the disk already has a snapshot named '${name}'`);
  const blocks = m.size / m.blockSize;
  const levels = [{ layer: m.live, disk, blocks }, ...m.chain];
  return {
    ...m,
    live: layerPrefix(disk, m.nextLayer),
    chain: levels,
    snapshots: [...m.snapshots, { name, levels, size: m.size, taken }],
    nextLayer: m.nextLayer + 1,
  };
}

export function serialize(m: Manifest): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(m, null, 1)}\n`);
}

/** A manifest read back, every field checked; a damaged or foreign one is one line naming its key. */
export function parseManifest(key: string, body: Uint8Array): Manifest {
  const bad = (why: string) => new ConfigError(`${key}: not a manifest s3backer can use (${why})`);
  let m: Manifest;
  try {
    m = JSON.parse(new TextDecoder().decode(body)) as Manifest;
  } catch {
    throw bad("not JSON");
  }
  if (typeof m !== "object" || m === null) throw bad("not an object");
  if (m.format !== FORMAT) throw bad(`format ${String(m.format)}; this s3backer reads format ${FORMAT}`);
  const count = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (!count(m.blockSize) || m.blockSize === 0 || !count(m.size) || m.size % m.blockSize !== 0) throw bad("sizes");
  if (typeof m.hashPrefix !== "boolean" || !isPrefix(m.live) || !count(m.nextLayer)) throw bad("fields");
  const level = (l: Level) => isPrefix(l?.layer) && isPrefix(l?.disk) && count(l?.blocks);
  if (!Array.isArray(m.chain) || !m.chain.every(level)) throw bad("chain");
  if (!Array.isArray(m.snapshots)) throw bad("snapshots");
  for (const s of m.snapshots) {
    if (typeof s?.name !== "string" || !NAME.test(s.name) || !Array.isArray(s.levels) || !s.levels.every(level) || !count(s.size)) throw bad("snapshots");
  }
  if (new Set(m.snapshots.map((s) => s.name)).size !== m.snapshots.length) throw bad("two snapshots of one name");
  if (m.base !== undefined && (!isPrefix(m.base.disk) || (m.base.snapshot !== undefined && !NAME.test(m.base.snapshot)))) throw bad("base");
  checkChain(key, m.live, m.chain);
  return m;
}

/** A chain may not name a layer twice, nor the live layer: that would be a cycle. */
export function checkChain(what: string, live: string | undefined, chain: Level[]): void {
  const seen = new Set<string>(live === undefined ? [] : [live]);
  for (const l of chain) {
    if (seen.has(l.layer)) throw new ConfigError(`${what}: the chain of layers has a cycle (${l.layer || "the bucket's root"} comes twice)`);
    seen.add(l.layer);
  }
}

const isPrefix = (p: unknown): p is string => typeof p === "string" && (p === "" || (p.endsWith("/") && !p.startsWith("/") && !p.includes("//")));
