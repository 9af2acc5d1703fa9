/**
 * A disk over a chain of layers, as one object store: the live layer on top takes every write;
 * the read-only levels below it (a base's layers, the disk's own snapshots) are read through. A
 * block is read from the nearest level that has it; a zero marker (an empty object) in a level
 * means zeros there and hides every level below. The codec and the consistency guard above see one
 * disk: a block's object, wherever it lives, with its MD5, and which disk's key encrypted it.
 *
 * A block's home is known without asking each level in turn once every level is listed (in the
 * background, from the mount on; read-only levels never change, and the live layer's own writes
 * keep its map true): a read then costs at most one GET, and none for a zero block. Until then a
 * read falls through with a request per level. With one level (a plain disk) it is a pass-through.
 *
 * Writing zeros deletes the block when nothing below it shows through, else writes a marker. A
 * snapshot (`switchLive`) holds writes back, then puts a new empty layer on top.
 */
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { Counters } from "../../util/counters.ts";
import type { AcceptObject, ObjectHead, ObjectStore, ObjectToStore, StoredObject } from "../object-store.ts";
import { LevelMap, type BlockState } from "./level-map.ts";

/** The MD5 of nothing: the ETag of a zero marker. */
export const EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e";
const NO_BODY = new Uint8Array(0);

export interface LayerLevel {
  store: ObjectStore;
  /** Its key prefix, for the stats and the log. */
  layer: string;
  /** The disk that wrote it: objects from another disk than the top's say so (its key decrypts them). */
  disk: string;
  /** Blocks of it that are visible. */
  blocks: number;
}

export interface LayeredOptions {
  /** The disk whose blocks these are (the live layer's disk): objects from other disks are marked. */
  disk: string;
  /** False with --sharedDiskMode: others write the live layer too, so only a GET tells its state. */
  trustLive: boolean;
  /** False for a snapshot or a read-only mount: writes are refused. */
  writable: boolean;
  /** Releases what the levels share (the S3 client). */
  close: () => Promise<void>;
}

interface Level extends LayerLevel {
  map: LevelMap | undefined;
}

export class LayeredObjects implements ObjectStore {
  readonly blockSize: number;
  numBlocks: number;
  private levels: Level[];
  private readonly counters = new Counters(["reads from the live layer", "reads from lower levels", "zero reads from markers", "lookups that fell through", "zero markers written"] as const);
  /** Writes in flight, and the hold a snapshot puts on new ones. */
  private writes = 0;
  private writesDone: (() => void) | undefined;
  private held: Promise<void> | undefined;
  private listing: Promise<void> | undefined;

  constructor(
    levels: LayerLevel[],
    private readonly o: LayeredOptions,
  ) {
    const top = levels[0]!.store;
    this.blockSize = top.blockSize;
    this.numBlocks = top.numBlocks;
    this.levels = levels.map((l, i) => ({ ...l, map: levels.length > 1 && (i > 0 || o.trustLive) ? new LevelMap(top.numBlocks) : undefined }));
  }

  get freshBodies(): boolean {
    return this.levels[0]!.store.freshBodies;
  }

  /** The live layer's prefix. */
  get live(): string {
    return this.levels[0]!.layer;
  }

  /** The live layer's store (for a resize's rewrite of block 0's sizes, during a `hold`). */
  get liveStore(): ObjectStore {
    return this.levels[0]!.store;
  }

  /** False for a snapshot or a read-only mount. */
  get writable(): boolean {
    return this.o.writable;
  }

  /** True when the disk reads through levels below its own. */
  get layered(): boolean {
    return this.levels.length > 1;
  }

  /**
   * Lists every level not listed yet, one after another (the live layer first), so that reads stop
   * asking each level in turn. Resolves when all are; a failed listing leaves its level unknown.
   */
  listLevels(onError: (layer: string, err: unknown) => void): Promise<void> {
    this.listing ??= (async () => {
      for (const level of this.levels) {
        if (!level.map || level.map.listed) continue;
        const map = level.map;
        await map.load((found) => level.store.list(found)).catch((err) => onError(level.layer, err));
      }
    })().finally(() => (this.listing = undefined));
    return this.listing;
  }

  async get(block: number, accept?: AcceptObject): Promise<StoredObject | null> {
    for (let i = 0; i < this.levels.length; i++) {
      const level = this.levels[i]!;
      const state = this.stateAt(level, block);
      if (state === "absent") continue;
      if (state === "marker") return this.zeroFromMarker();
      // The reader checks a body with the key of the disk that wrote it; a zero marker holds none to check.
      const checked = accept && ((o: StoredObject) => (o.body.length === 0 ? Promise.resolve() : accept(this.owned(o, level))));
      const object = await level.store.get(block, checked);
      if (!object) {
        if (this.levels.length > 1) this.counters.add("lookups that fell through");
        continue;
      }
      if (object.body.length === 0) return this.zeroFromMarker();
      this.counters.add(i === 0 ? "reads from the live layer" : "reads from lower levels");
      return this.owned(object, level);
    }
    return null;
  }

  /** An object of another disk's level names that disk, whose key decrypts it. */
  private owned(object: StoredObject, level: Level): StoredObject {
    if (level.disk !== this.o.disk) object.disk = level.disk;
    return object;
  }

  async head(block: number): Promise<ObjectHead | null> {
    for (const level of this.levels) {
      const state = this.stateAt(level, block);
      if (state === "absent") continue;
      if (state === "marker") return null;
      const head = await level.store.head(block);
      if (!head) continue;
      return head.md5 === EMPTY_MD5 ? null : head;
    }
    return null;
  }

  private stateAt(level: Level, block: number): BlockState {
    if (block >= level.blocks) return "absent";
    return level.map?.state(block) ?? "unknown";
  }

  private zeroFromMarker(): null {
    this.counters.add("zero reads from markers");
    return null;
  }

  async put(block: number, object: ObjectToStore): Promise<string | undefined> {
    return this.writing(block, "data", () => this.levels[0]!.store.put(block, object));
  }

  /** A zero block: deleted, or a marker where a level below would show through. */
  async delete(block: number): Promise<void> {
    if (this.levels.length > 1 && this.showsThrough(block)) {
      this.counters.add("zero markers written");
      await this.writing(block, "marker", () => this.levels[0]!.store.put(block, { body: NO_BODY, md5: EMPTY_MD5 }));
      return;
    }
    await this.writing(block, "absent", () => this.levels[0]!.store.delete(block));
  }

  /** Whether a level below the live layer may hold data for `block` (unknown counts as may). */
  private showsThrough(block: number): boolean {
    for (let i = 1; i < this.levels.length; i++) {
      const state = this.stateAt(this.levels[i]!, block);
      if (state === "marker") return false;
      if (state !== "absent") return true;
    }
    return false;
  }

  private async writing<T>(block: number, now: "data" | "marker" | "absent", write: () => Promise<T>): Promise<T> {
    if (!this.o.writable) throw new FsError(Errno.EROFS, "a read-only layer");
    while (this.held) await this.held;
    const top = this.levels[0]!;
    this.writes++;
    top.map?.writing(block);
    try {
      const result = await write();
      top.map?.wrote(block, now);
      return result;
    } finally {
      if (--this.writes === 0) this.writesDone?.();
    }
  }

  /**
   * Holds every new write back and waits for those in flight: what is stored is then the disk's
   * state until `release` is called. For a snapshot: the manifest changes in between.
   */
  async hold(): Promise<() => void> {
    while (this.held) await this.held;
    let release!: () => void;
    this.held = new Promise<void>((resolve) => (release = resolve));
    if (this.writes > 0) await new Promise<void>((resolve) => (this.writesDone = resolve));
    this.writesDone = undefined;
    return () => {
      this.held = undefined;
      release();
    };
  }

  /**
   * Puts a new, empty layer on top (during a `hold`): the live layer joins the read-only levels,
   * its map kept (it was true), or listed later if it had none.
   */
  switchLive(store: ObjectStore, layer: string): void {
    const old = this.levels[0]!;
    old.blocks = this.numBlocks;
    old.map ??= new LevelMap(this.numBlocks);
    for (const level of this.levels) level.map ??= new LevelMap(this.numBlocks);
    this.levels.unshift({ store, layer, disk: old.disk, blocks: Number.MAX_SAFE_INTEGER, map: this.o.trustLive ? LevelMap.empty(this.numBlocks) : undefined });
  }

  /** The disk grew (during a `hold`): the live layer's blocks reach the new end; lower levels keep theirs. */
  grow(numBlocks: number): void {
    this.numBlocks = numBlocks;
    for (const level of this.levels) {
      (level.store as { resize?: (n: number) => void }).resize?.(numBlocks);
      level.map?.grow(numBlocks);
    }
  }

  async list(found: (block: number, size?: number) => void): Promise<void> {
    if (this.levels.length === 1) return this.levels[0]!.store.list(found);
    const failed: string[] = [];
    await this.listLevels((layer, err) => failed.push(`${layer}: ${messageOf(err)}`));
    if (failed.length > 0) throw new FsError(Errno.EIO, `listing failed (${failed.join("; ")})`);
    for (let block = 0; block < this.numBlocks; block++) {
      if (this.resolved(block) !== "absent") found(block);
    }
  }

  /** What a read of `block` would find, from the maps alone: "unknown" where a GET must tell. */
  private resolved(block: number): BlockState {
    for (const level of this.levels) {
      const state = this.stateAt(level, block);
      if (state === "marker") return "absent";
      if (state !== "absent") return state;
    }
    return "absent";
  }

  /** A block stored in any level of `disk` itself (its live layer or its own frozen ones). */
  async anyBlockOf(disk: string): Promise<number | undefined> {
    for (const level of this.levels) {
      const block = level.disk === disk ? await level.store.anyBlock() : undefined;
      if (block !== undefined) return block;
    }
    return undefined;
  }

  async anyBlock(): Promise<number | undefined> {
    for (const level of this.levels) {
      const block = await level.store.anyBlock();
      if (block !== undefined) return block;
    }
    return undefined;
  }

  flush(): Promise<void> {
    return this.levels[0]!.store.flush();
  }

  async close(): Promise<void> {
    await this.flush();
    await this.o.close();
  }

  stats(): StatGroup[] {
    const levels = this.levels.map((l, i) => [`level ${i}${i === 0 ? " (live)" : ""}`, `${l.layer || "(root)"}: ${describe(l.map)}`] as const);
    return [{ layer: "layers", values: [...levels, ...this.counters.entries()] }, ...this.levels[0]!.store.stats()];
  }
}

function describe(map: LevelMap | undefined): string {
  if (!map) return "read through";
  if (map.listed) {
    const { data, markers } = map.counts();
    return `${map.progress} (${data} blocks, ${markers} zero markers)`;
  }
  if (map.progress === "listing") return `listing (${map.found} blocks so far; reads ask until done)`;
  return map.progress;
}
