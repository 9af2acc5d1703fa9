/**
 * S3 as an object store: one object per block, named and tagged as the original s3backer does.
 * Every body read is checked against its ETag (the MD5 of a single-part object) and every write
 * carries Content-MD5.
 */
import { Errno, FsError } from "../../errors.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { blockName, parseBlockName } from "../block-names.ts";
import { md5InTurns } from "../../util/md5.ts";
import { ObjectRefused, type AcceptObject, type ObjectHead, type ObjectStore, type ObjectToStore, type StoredObject } from "../object-store.ts";
import { DamagedBody, RetryableError, type S3Client, type S3Response } from "./s3-client.ts";
import { decodeXml } from "../../util/xml.ts";
import { BulkDeleter } from "./bulk-delete.ts";
import { listKeys, type Listed } from "./listing.ts";
import { crc32ToBase64 } from "../../util/checksum.ts";
import { runtime } from "../../runtime/index.ts";
import { Counters } from "../../util/counters.ts";
import type { BufferPool } from "../../memory/buffer-pool.ts";

export const META_BLOCKSIZE = "x-amz-meta-s3backer-blocksize";
export const META_FILESIZE = "x-amz-meta-s3backer-filesize";
export const META_HMAC = "x-amz-meta-s3backer-hmac";
/** The stored body's CRC-32 (as CHECKSUM), for servers that keep no additional checksums of their own. */
export const META_CRC32 = "x-amz-meta-s3backer-crc32";
export const BLOCK_CONTENT_TYPE = "application/x-s3backer-block";

export interface S3StoreOptions {
  prefix: string;
  hashPrefix: boolean;
  blockSize: number;
  numBlocks: number;
  /** Headers every block PUT carries: ACL, storage class, server-side encryption. */
  putHeaders: Record<string, string>;
  listThreads: number;
  /** Spare block buffers (the block cache's) for GET bodies to be read into. */
  spares?: BufferPool;
}

/**
 * Blocks are stored with a CRC-32, twice: as S3's additional checksum, and as metadata of our own
 * for servers that keep none (Ceph RGW before Reef). A body that matches its CRC-32 is checked
 * without an MD5, which is what a cold read spends most of its CPU on; the ETag is then the MD5
 * the consistency guard compares. A PUT replaces an object's metadata with its body, so the two
 * cannot come from different writes. Objects with neither (written by other programs) are hashed.
 */
const CHECKSUM = "x-amz-checksum-crc32";
/** An ETag that is the body's MD5 (a multipart upload's is not). */
const MD5_HEX = /^[0-9a-f]{32}$/;
/** A whole object's CRC-32 in base64 (a multipart upload's composite one is not this). */
const WHOLE_CRC32 = /^[A-Za-z0-9+/]{6}==$/;

/** An ETag as hex: quotes and a weak marker taken off. */
export const unquote = (etag: string | null) => (etag ?? "").replace(/^W\//, "").replace(/"/g, "").toLowerCase();

export class S3Store implements ObjectStore {
  readonly blockSize: number;
  numBlocks: number;
  readonly freshBodies = true; // every body is a new buffer
  private readonly deleter: BulkDeleter;
  private readonly checks = new Counters(["GET bodies CRC-checked", "GET bodies MD5-hashed"] as const);

  constructor(
    private readonly client: S3Client,
    private readonly o: S3StoreOptions,
  ) {
    this.blockSize = o.blockSize;
    this.numBlocks = o.numBlocks;
    this.deleter = new BulkDeleter(client, client.log);
  }

  key(block: number): string {
    return this.o.prefix + blockName(block, this.o.hashPrefix);
  }

  /**
   * A block's object as stored (null: none), with its MD5 in hex and the headers the codec needs.
   * The body is checked against its stored CRC-32 where the server keeps one (then the ETag is the
   * MD5), else against its ETag, hashed (so the MD5 comes without hashing twice). Then `accept`
   * checks it as its reader will: a body it refuses is asked for again, like a damaged one.
   */
  async get(block: number, accept?: AcceptObject): Promise<StoredObject | null> {
    let digest = "";
    const objectOf = (r: S3Response): StoredObject => ({ body: r.body, md5: digest, encoding: r.headers.get("content-encoding"), hmac: r.headers.get(META_HMAC) });
    let accepted: StoredObject | undefined;
    const r = await this.client.send({
      method: "GET",
      kind: "GET",
      key: this.key(block),
      headers: { "x-amz-checksum-mode": "ENABLED" },
      expect: [200, 404],
      spares: this.o.spares,
      validate: async (answer) => {
        if (answer.status !== 200) return;
        const etag = unquote(answer.headers.get("etag"));
        const crc = [answer.headers.get(CHECKSUM), answer.headers.get(META_CRC32)].find((c) => c !== null && WHOLE_CRC32.test(c));
        if (crc !== undefined && MD5_HEX.test(etag)) {
          const actual = answer.crc32 === undefined ? crc32ToBase64(runtime.crc32(answer.body)) : crc32ToBase64(answer.crc32);
          if (actual !== crc) throw new DamagedBody(`block ${block}: body does not match its CRC-32`);
          this.checks.add("GET bodies CRC-checked");
          digest = etag;
        } else {
          this.checks.add("GET bodies MD5-hashed");
          digest = Buffer.from(await md5InTurns(answer.body)).toString("hex");
          // A body that does not match its ETag was damaged on the way: ask again.
          if (MD5_HEX.test(etag) && digest !== etag) throw new DamagedBody(`block ${block}: body does not match its ETag`);
        }
        if (!accept) return;
        const object = objectOf(answer);
        try {
          await accept(object);
        } catch (err) {
          if (err instanceof ObjectRefused) throw new DamagedBody(err.message);
          throw err;
        }
        accepted = object;
      },
    });
    if (r.status === 404) return null;
    return accepted ?? objectOf(r);
  }

  /** A block's object without its body (a HEAD): its MD5 from the ETag and its Content-Encoding; null when there is none. */
  async head(block: number): Promise<ObjectHead | null> {
    const r = await this.client.send({ method: "HEAD", kind: "HEAD", key: this.key(block), expect: [200, 404] });
    return r.status === 404 ? null : { md5: unquote(r.headers.get("etag")), encoding: r.headers.get("content-encoding") };
  }

  /** Gathered with the other deletes of the moment into DeleteObjects requests (bulk-delete.ts). */
  delete(block: number): Promise<void> {
    return this.deleter.delete(this.key(block));
  }

  /** Stores a block's object and returns the MD5 in hex of what is now stored. */
  async put(block: number, object: ObjectToStore): Promise<string> {
    const key = this.key(block);
    const hashed = object.md5 !== undefined ? { digest: Buffer.from(object.md5, "hex"), staged: undefined } : await this.client.uploadMd5Of(object.body);
    const digest = Buffer.from(hashed.digest);
    const crc = crc32ToBase64(runtime.crc32(object.body));
    const headers: Record<string, string> = {
      "content-type": BLOCK_CONTENT_TYPE,
      "content-md5": digest.toString("base64"),
      [CHECKSUM]: crc,
      [META_CRC32]: crc,
      ...this.o.putHeaders,
    };
    if (object.encoding) headers["content-encoding"] = object.encoding;
    if (object.hmac) headers[META_HMAC] = object.hmac;
    if (block === 0) Object.assign(headers, this.sizeHeaders());
    const r = await this.client.send({ method: "PUT", kind: "PUT", key, headers, body: object.body, staged: hashed.staged, expect: [200] });
    const hex = digest.toString("hex");
    const etag = unquote(r.headers.get("etag"));
    if (MD5_HEX.test(etag) && etag !== hex) {
      throw new FsError(Errno.EIO, `block ${block}: the server stored something else (ETag ${etag})`);
    }
    return hex;
  }

  /**
   * Lists every block object, with its size (a layer's zero marker is empty). The key space after
   * the prefix starts with a hex digit, so it is split 16 ways and the slices are listed in
   * parallel, each following its continuation tokens.
   */
  async list(found: (block: number, size: number) => void): Promise<void> {
    const slices = [..."0123456789abcdef"];
    let next = 0;
    const worker = async () => {
      while (next < slices.length) await listKeys(this.client, this.o.prefix + slices[next++]!, (keys) => this.blocksListed(keys, found));
    };
    await Promise.all(Array.from({ length: Math.min(this.o.listThreads, slices.length) }, worker));
  }

  /** The first block a listing finds (one request), or undefined when there is none. */
  async anyBlock(): Promise<number | undefined> {
    // Block names start with a hex digit, which sorts before the mounted flag's "s3backer-mounted".
    let first: number | undefined;
    await listKeys(this.client, this.o.prefix, (keys) => this.blocksListed(keys, (block) => (first ??= block)), 20);
    return first;
  }

  /** The blocks of this disk a page of a listing names, in its order. */
  private blocksListed(keys: Listed[], found: (block: number, size: number) => void): void {
    for (const { key, size } of keys) {
      const block = parseBlockName(key.slice(this.o.prefix.length), this.o.hashPrefix);
      if (block !== undefined && block < this.numBlocks) found(block, size);
    }
  }

  /**
   * Makes this store's object of `block` a server-side copy of `from`'s (CopyObject: no body
   * through the client). Block 0 carries the disk's sizes, so its headers are written anew
   * (REPLACE) with this store's, the rest kept as stored. Returns the MD5 hex of what is now stored.
   */
  async copy(block: number, from: S3Store): Promise<string> {
    const source = from.key(block);
    const headers: Record<string, string> = { "x-amz-copy-source": `/${this.client.bucket}/${source.split("/").map(encodeURIComponent).join("/")}`, ...this.o.putHeaders };
    if (block === 0) {
      const h = await this.client.send({ method: "HEAD", kind: "HEAD", key: source, expect: [200] });
      headers["x-amz-metadata-directive"] = "REPLACE";
      headers["content-type"] = BLOCK_CONTENT_TYPE;
      for (const name of ["content-encoding", META_HMAC, META_CRC32]) {
        const value = h.headers.get(name);
        if (value !== null) headers[name] = value;
      }
      Object.assign(headers, this.sizeHeaders());
    }
    let etag = "";
    await this.client.send({
      method: "PUT", kind: "PUT", key: this.key(block), headers, expect: [200],
      // AWS may answer 200 and then an error in the body of a copy that failed on its way.
      validate: (answer) => {
        const xml = new TextDecoder().decode(answer.body);
        if (/<Error>/.test(xml)) throw new RetryableError(`copy of block ${block}: ${/<Code>([^<]*)</.exec(xml)?.[1] ?? "error"}`);
        etag = unquote(decodeXml(/<ETag>([^<]*)<\/ETag>/.exec(xml)?.[1] ?? ""));
      },
    });
    return etag;
  }

  /** The disk's sizes as block 0 carries them. */
  private sizeHeaders(): Record<string, string> {
    return { [META_BLOCKSIZE]: String(this.blockSize), [META_FILESIZE]: String(this.blockSize * this.numBlocks) };
  }

  /** The disk grew or shrank: blocks up to the new count are its own, and block 0 records the new size when next stored. */
  resize(numBlocks: number): void {
    this.numBlocks = numBlocks;
  }

  /** The key prefix of this store's objects. */
  get prefix(): string {
    return this.o.prefix;
  }

  async flush(): Promise<void> {} // every put is stored before it returns

  async close(): Promise<void> {
    this.client.close();
  }

  stats(): StatGroup[] {
    return [{ layer: "S3", values: [...this.client.stats.entries(), ...this.checks.entries()], histograms: this.client.stats.histograms() }];
  }
}
