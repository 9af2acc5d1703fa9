/**
 * `--test` mode: each block's object is one file in a local directory, named like its S3 object.
 * The body is the file; the MD5 is hashed on reading (a directory keeps no ETags). Only plain
 * objects are kept (--compress and --encrypt are for S3 disks): one with an encoding is refused.
 *
 * An object is written to a temporary file and renamed into place, so a reader never sees half of
 * one; `flush` fsyncs the files and directories touched since the last flush.
 */
import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DataError, Errno, FsError, messageOf } from "../errors.ts";
import type { StatGroup } from "../util/stat-group.ts";
import { HashedLater, type ObjectHead, type ObjectStore, type ObjectToStore, type StoredObject } from "./object-store.ts";
import { blockName, parseBlockName } from "./block-names.ts";
import { Counters } from "../util/counters.ts";
import { checkHeld, flagText, MOUNTED_FLAG, mountedError, type MountFlagStore } from "./mount-flag.ts";

export interface LocalDirOptions {
  dir: string;
  prefix: string;
  blockSize: number;
  numBlocks: number;
  hashPrefix: boolean;
}

export class LocalDirStore implements ObjectStore {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly freshBodies = true; // every read is a new buffer
  private readonly unsynced = new Set<string>();
  private readonly counters = new Counters(["reads", "absent reads", "writes", "deletes", "bytes read", "bytes written", "errors"] as const);

  private constructor(private readonly options: LocalDirOptions) {
    this.blockSize = options.blockSize;
    this.numBlocks = options.numBlocks;
  }

  /** Opens the store; the directory must exist (as the bucket must), a prefix's subdirectories are made. */
  static async open(options: LocalDirOptions): Promise<LocalDirStore> {
    const store = new LocalDirStore(options);
    const dir = dirname(store.path(0));
    try {
      await readdir(options.dir);
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new FsError(Errno.ENOENT, `test directory ${options.dir}: ${messageOf(err)}`);
    }
    return store;
  }

  private path(block: number): string {
    return join(this.options.dir, this.options.prefix + blockName(block, this.options.hashPrefix));
  }

  async get(block: number): Promise<StoredObject | null> {
    const path = this.path(block);
    let body: Uint8Array;
    try {
      body = await readFile(path);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") {
        this.counters.add("absent reads");
        return null;
      }
      throw this.fail(`read block ${block}`, err);
    }
    if (body.length !== this.blockSize) {
      this.counters.add("errors");
      throw new DataError(`read block ${block}: ${path} holds ${body.length} bytes, expected ${this.blockSize}`);
    }
    this.counters.add("reads");
    this.counters.add("bytes read", body.length);
    return new HashedLater(body, null, null);
  }

  async head(block: number): Promise<ObjectHead | null> {
    const object = await this.get(block);
    return object && { md5: object.md5, encoding: null };
  }

  async put(block: number, object: ObjectToStore): Promise<undefined> {
    if (object.encoding) throw this.fail(`write block ${block}`, `a local directory keeps plain blocks, not '${object.encoding}'`);
    const path = this.path(block);
    try {
      const temp = `${path}.tmp`;
      await writeFile(temp, object.body);
      await rename(temp, path);
      this.unsynced.add(path);
      this.unsynced.add(dirname(path));
      this.counters.add("writes");
      this.counters.add("bytes written", object.body.length);
    } catch (err) {
      throw this.fail(`write block ${block}`, err);
    }
  }

  async delete(block: number): Promise<void> {
    const path = this.path(block);
    try {
      await unlink(path).catch((err) => {
        if (err.code !== "ENOENT") throw err;
      });
      this.unsynced.delete(path);
      this.unsynced.add(dirname(path));
      this.counters.add("deletes");
    } catch (err) {
      throw this.fail(`delete block ${block}`, err);
    }
  }

  async anyBlock(): Promise<number | undefined> {
    let any: number | undefined;
    await this.list((block) => (any ??= block));
    return any;
  }

  async list(found: (block: number) => void): Promise<void> {
    // The prefix may end inside a file name ("disk1-"): list its directory and match the rest.
    const sample = join(this.options.dir, `${this.options.prefix}#`);
    const dir = dirname(sample);
    const namePrefix = basename(sample).slice(0, -1);
    for (const name of await readdir(dir)) {
      if (!name.startsWith(namePrefix)) continue;
      const block = parseBlockName(name.slice(namePrefix.length), this.options.hashPrefix);
      if (block !== undefined && block < this.numBlocks) found(block);
    }
  }

  async flush(): Promise<void> {
    const paths = [...this.unsynced];
    this.unsynced.clear();
    try {
      await Promise.all(paths.map(syncPath));
    } catch (err) {
      for (const p of paths) this.unsynced.add(p);
      throw this.fail("flush", err);
    }
  }

  close(): Promise<void> {
    return this.flush();
  }

  stats(): StatGroup[] {
    return [{ layer: "local directory", values: this.counters.entries() }];
  }

  private fail(what: string, err: unknown): FsError {
    this.counters.add("errors");
    return new FsError(Errno.EIO, `${what}: ${messageOf(err)}`);
  }
}

/** --test mode's mounted flag: a file named like the original's flag object. */
export class LocalMountFlag implements MountFlagStore {
  private readonly path: string;
  constructor(dir: string, prefix: string) {
    this.path = join(dir, prefix + MOUNTED_FLAG);
  }

  private async lines(): Promise<string[] | undefined> {
    try {
      return (await readFile(this.path, "utf8")).trim().split("\n");
    } catch {
      return undefined;
    }
  }

  async holder(): Promise<string | undefined> {
    const lines = await this.lines();
    return lines && holderOf(lines);
  }

  async token(): Promise<number | undefined> {
    const lines = await this.lines();
    return lines && tokenOf(lines);
  }

  async acquire(force: boolean, token: number): Promise<undefined> {
    const lines = await this.lines();
    const held = lines && { holder: holderOf(lines), token: tokenOf(lines) };
    if (checkHeld(this.path, held, token, force)) return undefined;
    try {
      await writeFile(this.path, flagText(token), { flag: force || held ? "w" : "wx" });
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST") throw mountedError(this.path, (await this.holder()) ?? "unknown");
      throw err;
    }
    return undefined;
  }

  async clear(): Promise<void> {
    await unlink(this.path).catch(() => {});
  }
}

/** The flag file's lines: host, time, token (as flagText writes them). */
const holderOf = (lines: string[]) => lines.slice(0, 2).join(" since ") || "unknown";
const tokenOf = (lines: string[]) => parseInt(lines[2] ?? "0", 16) || 0;

async function syncPath(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return; // deleted since: nothing to make durable
    throw err;
  }
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
