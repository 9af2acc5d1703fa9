/** Where the embedded S3 server keeps objects: in memory, or one file per object in a directory. */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";

export interface ServerObject {
  body: Uint8Array;
  /** Hex MD5 of the body, unquoted. */
  etag: string;
  contentType: string;
  contentEncoding: string | undefined;
  /** x-amz-meta-* headers, names in lower case. */
  meta: Record<string, string>;
  /** The CRC-32 the client sent (x-amz-checksum-crc32, base64), answered when asked for. */
  checksumCrc32?: string;
  lastModified: number;
}

export interface ServerStorage {
  hasBucket(bucket: string): boolean;
  createBucket(bucket: string): void;
  /** Removes a bucket (the caller checks it is empty). */
  deleteBucket(bucket: string): void;
  /** Every bucket, in byte order. */
  buckets(): string[];
  get(bucket: string, key: string): ServerObject | undefined;
  put(bucket: string, key: string, object: ServerObject): void;
  delete(bucket: string, key: string): void;
  /** Keys of a bucket in byte order. */
  keys(bucket: string): string[];
}

export class MemoryStorage implements ServerStorage {
  private readonly bucketMap = new Map<string, Map<string, ServerObject>>();
  /** Each bucket's keys in order, until a key comes or goes (listing a big bucket sorts once). */
  private readonly sorted = new Map<string, string[]>();

  hasBucket(bucket: string) {
    return this.bucketMap.has(bucket);
  }
  createBucket(bucket: string) {
    if (!this.bucketMap.has(bucket)) this.bucketMap.set(bucket, new Map());
  }
  deleteBucket(bucket: string) {
    this.bucketMap.delete(bucket);
    this.sorted.delete(bucket);
  }
  buckets() {
    return [...this.bucketMap.keys()].sort(byteOrder);
  }
  get(bucket: string, key: string) {
    return this.bucketMap.get(bucket)?.get(key);
  }
  put(bucket: string, key: string, object: ServerObject) {
    const objects = this.bucketMap.get(bucket)!;
    if (!objects.has(key)) this.sorted.delete(bucket);
    objects.set(key, object);
  }
  delete(bucket: string, key: string) {
    if (this.bucketMap.get(bucket)?.delete(key)) this.sorted.delete(bucket);
  }
  keys(bucket: string) {
    let keys = this.sorted.get(bucket);
    if (!keys) {
      keys = [...(this.bucketMap.get(bucket)?.keys() ?? [])].sort(byteOrder);
      this.sorted.set(bucket, keys);
    }
    return keys;
  }
}

/**
 * Each object is two files in `<dir>/<bucket>/`, named by the SHA-256 of its key: the body, and
 * `.json` beside it with the key and the metadata. No key can name a path outside the bucket's
 * folder or another object's metadata, whatever its bytes or length. The keys are indexed in
 * memory on first use. Folders of the earlier layout (`<URI-encoded key>` and `.meta`) are moved
 * to this one then.
 */
export class DirStorage implements ServerStorage {
  private readonly index = new Map<string, Map<string, string>>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private keysOf(bucket: string): Map<string, string> {
    let keys = this.index.get(bucket);
    if (keys) return keys;
    keys = new Map();
    const folder = join(this.dir, bucket);
    for (const name of existsSync(folder) ? readdirSync(folder) : []) {
      if (name.endsWith(".json")) {
        const { key } = JSON.parse(readFileSync(join(folder, name), "utf8")) as { key: string };
        keys.set(key, name.slice(0, -5));
      } else if (name.endsWith(".meta")) {
        const key = decodeURIComponent(name.slice(0, -5));
        const meta = JSON.parse(readFileSync(join(folder, name), "utf8")) as Omit<ServerObject, "body">;
        const id = idOf(key);
        renameSync(join(folder, name.slice(0, -5)), join(folder, id));
        writeFileSync(join(folder, `${id}.json`), JSON.stringify({ ...meta, key }));
        rmSync(join(folder, name));
        keys.set(key, id);
      }
    }
    this.index.set(bucket, keys);
    return keys;
  }

  hasBucket(bucket: string) {
    return existsSync(join(this.dir, bucket));
  }
  createBucket(bucket: string) {
    mkdirSync(join(this.dir, bucket), { recursive: true });
  }
  deleteBucket(bucket: string) {
    rmSync(join(this.dir, bucket), { recursive: true, force: true });
    this.index.delete(bucket);
  }
  buckets() {
    return readdirSync(this.dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort(byteOrder);
  }
  get(bucket: string, key: string): ServerObject | undefined {
    const id = this.keysOf(bucket).get(key);
    if (id === undefined) return undefined;
    const path = join(this.dir, bucket, id);
    const { key: _, ...meta } = JSON.parse(readFileSync(`${path}.json`, "utf8")) as Omit<ServerObject, "body"> & { key: string };
    return { ...meta, body: readFileSync(path) };
  }
  put(bucket: string, key: string, object: ServerObject) {
    const id = idOf(key);
    const path = join(this.dir, bucket, id);
    const { body, ...meta } = object;
    writeFileSync(`${path}.tmp`, body);
    renameSync(`${path}.tmp`, path);
    writeFileSync(`${path}.json.tmp`, JSON.stringify({ ...meta, key }));
    renameSync(`${path}.json.tmp`, `${path}.json`);
    this.keysOf(bucket).set(key, id);
  }
  delete(bucket: string, key: string) {
    const path = join(this.dir, bucket, idOf(key));
    rmSync(`${path}.json`, { force: true });
    rmSync(path, { force: true });
    this.keysOf(bucket).delete(key);
  }
  keys(bucket: string) {
    if (!this.hasBucket(bucket)) return [];
    return [...this.keysOf(bucket).keys()].sort(byteOrder);
  }
}

const idOf = (key: string) => createHash("sha256").update(key).digest("hex");

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
