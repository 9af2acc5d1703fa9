/** Where the embedded S3 server keeps objects: in memory, or one file per object in a directory. */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface StoredObject {
  body: Uint8Array;
  /** Hex MD5 of the body, unquoted. */
  etag: string;
  contentType: string;
  contentEncoding: string | undefined;
  /** x-amz-meta-* headers, names in lower case. */
  meta: Record<string, string>;
  lastModified: number;
}

export interface ObjectStore {
  hasBucket(bucket: string): boolean;
  createBucket(bucket: string): void;
  get(bucket: string, key: string): StoredObject | undefined;
  put(bucket: string, key: string, object: StoredObject): void;
  delete(bucket: string, key: string): void;
  /** Keys of a bucket in byte order. */
  keys(bucket: string): string[];
}

export class MemoryObjects implements ObjectStore {
  private readonly buckets = new Map<string, Map<string, StoredObject>>();

  hasBucket(bucket: string) {
    return this.buckets.has(bucket);
  }
  createBucket(bucket: string) {
    if (!this.buckets.has(bucket)) this.buckets.set(bucket, new Map());
  }
  get(bucket: string, key: string) {
    return this.buckets.get(bucket)?.get(key);
  }
  put(bucket: string, key: string, object: StoredObject) {
    this.buckets.get(bucket)!.set(key, object);
  }
  delete(bucket: string, key: string) {
    this.buckets.get(bucket)?.delete(key);
  }
  keys(bucket: string) {
    return [...(this.buckets.get(bucket)?.keys() ?? [])].sort(byteOrder);
  }
}

/** Each object is `<dir>/<bucket>/<key, URI-encoded>` plus a `.meta` JSON file beside it. */
export class DirObjects implements ObjectStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private path(bucket: string, key: string) {
    return join(this.dir, bucket, encodeURIComponent(key));
  }
  hasBucket(bucket: string) {
    return existsSync(join(this.dir, bucket));
  }
  createBucket(bucket: string) {
    mkdirSync(join(this.dir, bucket), { recursive: true });
  }
  get(bucket: string, key: string): StoredObject | undefined {
    const path = this.path(bucket, key);
    if (!existsSync(`${path}.meta`)) return undefined;
    const meta = JSON.parse(readFileSync(`${path}.meta`, "utf8")) as Omit<StoredObject, "body">;
    return { ...meta, body: readFileSync(path) };
  }
  put(bucket: string, key: string, object: StoredObject) {
    const path = this.path(bucket, key);
    const { body, ...meta } = object;
    writeFileSync(`${path}.tmp`, body);
    renameSync(`${path}.tmp`, path);
    writeFileSync(`${path}.meta.tmp`, JSON.stringify(meta));
    renameSync(`${path}.meta.tmp`, `${path}.meta`);
  }
  delete(bucket: string, key: string) {
    const path = this.path(bucket, key);
    rmSync(`${path}.meta`, { force: true });
    rmSync(path, { force: true });
  }
  keys(bucket: string) {
    if (!this.hasBucket(bucket)) return [];
    return readdirSync(join(this.dir, bucket))
      .filter((n) => n.endsWith(".meta"))
      .map((n) => decodeURIComponent(n.slice(0, -5)))
      .sort(byteOrder);
  }
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
