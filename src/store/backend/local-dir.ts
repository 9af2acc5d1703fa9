/**
 * `--test` mode: each block is one file in a local directory, named like its S3 object would be.
 *
 * A block is written to a temporary file and renamed into place, so a reader never sees half a
 * block; `flush` fsyncs the files and directories touched since the last flush.
 */
import { md5Hex } from "../../util/md5.ts";
import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { Backend, StatGroup } from "../block-store.ts";
import { blockName, parseBlockName } from "../block-names.ts";
import { Counters } from "../counters.ts";
import { flagText, MOUNTED_FLAG, mountedError, type MountFlagStore } from "../mount-flag.ts";
import { readPartOf, writePartOf } from "../partial.ts";

export interface LocalDirOptions {
  dir: string;
  prefix: string;
  blockSize: number;
  numBlocks: number;
  hashPrefix: boolean;
}

export class LocalDirStore implements Backend {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly freshReads = true; // every read is a new buffer
  private readonly zero: Uint8Array;
  private readonly unsynced = new Set<string>();
  private readonly counters = new Counters(["reads", "zero reads", "writes", "deletes", "bytes read", "bytes written", "errors"] as const);

  private constructor(private readonly options: LocalDirOptions) {
    this.blockSize = options.blockSize;
    this.numBlocks = options.numBlocks;
    this.zero = new Uint8Array(options.blockSize);
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

  async readBlock(block: number): Promise<Uint8Array> {
    const path = this.path(block);
    let data: Uint8Array;
    try {
      data = await readFile(path);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") {
        this.counters.add("zero reads");
        return this.zero;
      }
      throw this.fail(`read block ${block}`, err);
    }
    if (data.length !== this.blockSize) {
      throw this.fail(`read block ${block}`, `${path} holds ${data.length} bytes, expected ${this.blockSize}`);
    }
    this.counters.add("reads");
    this.counters.add("bytes read", data.length);
    return data;
  }

  async storedMd5(block: number): Promise<string | null> {
    const data = await this.readBlock(block);
    return data === this.zero ? null : md5Hex(data);
  }

  readBlockPart(block: number, offset: number, length: number) {
    return readPartOf(this, block, offset, length);
  }

  async writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    const path = this.path(block);
    try {
      if (data) {
        const temp = `${path}.tmp`;
        await writeFile(temp, data);
        await rename(temp, path);
        this.unsynced.add(path);
        this.counters.add("writes");
        this.counters.add("bytes written", data.length);
      } else {
        await unlink(path).catch((err) => {
          if (err.code !== "ENOENT") throw err;
        });
        this.unsynced.delete(path);
        this.counters.add("deletes");
      }
      this.unsynced.add(dirname(path));
    } catch (err) {
      throw this.fail(`write block ${block}`, err);
    }
  }

  writeBlockPart(block: number, offset: number, data: Uint8Array) {
    return writePartOf(this, block, offset, data);
  }

  async listBlocks(found: (block: number) => void): Promise<void> {
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

  resetStats(): void {
    this.counters.reset();
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
    return (await this.lines())?.slice(0, 2).join(" since ") || undefined;
  }

  async token(): Promise<number | undefined> {
    const lines = await this.lines();
    return lines ? parseInt(lines[2] ?? "0", 16) || 0 : undefined;
  }

  async acquire(force: boolean, token: number): Promise<void> {
    try {
      await writeFile(this.path, flagText(token), { flag: force ? "w" : "wx" });
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST") throw mountedError(this.path, (await this.holder()) ?? "unknown");
      throw err;
    }
  }

  async clear(): Promise<void> {
    await unlink(this.path).catch(() => {});
  }
}

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
