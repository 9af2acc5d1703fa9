/**
 * The bottom of the stack for S3: one object per block, named and tagged as the original s3backer
 * does. A zero block is a DELETE and a 404 reads as zeros. Every body read is checked against its
 * ETag (the MD5 of a single-part object) and every write carries Content-MD5.
 */
import { createHash } from "node:crypto";
import { Errno, FsError } from "../../errors.ts";
import type { Backend, StatGroup } from "../block-store.ts";
import { blockName, parseBlockName } from "../block-names.ts";
import { readPartOf, writePartOf } from "../partial.ts";
import { RetryableError, type S3Client } from "./s3-client.ts";

export const META_BLOCKSIZE = "x-amz-meta-s3backer-blocksize";
export const META_FILESIZE = "x-amz-meta-s3backer-filesize";
export const BLOCK_CONTENT_TYPE = "application/x-s3backer-block";

export interface S3StoreOptions {
  prefix: string;
  hashPrefix: boolean;
  blockSize: number;
  numBlocks: number;
  /** Headers every block PUT carries: ACL, storage class, server-side encryption. */
  putHeaders: Record<string, string>;
  listThreads: number;
  /** Store block 0 even when zero, to keep the disk's sizes (off for --erase). */
  keepSizes: boolean;
}

export const md5 = (data: Uint8Array) => createHash("md5").update(data).digest();
const unquote = (etag: string | null) => (etag ?? "").replace(/^W\//, "").replace(/"/g, "").toLowerCase();

export class S3Store implements Backend {
  readonly blockSize: number;
  readonly numBlocks: number;
  private readonly zero: Uint8Array;

  constructor(
    private readonly client: S3Client,
    private readonly o: S3StoreOptions,
  ) {
    this.blockSize = o.blockSize;
    this.numBlocks = o.numBlocks;
    this.zero = new Uint8Array(o.blockSize);
  }

  key(block: number): string {
    return this.o.prefix + blockName(block, this.o.hashPrefix);
  }

  async readBlock(block: number): Promise<Uint8Array> {
    return (await this.readVerified(block)).data ?? this.zero;
  }

  /**
   * A block's stored bytes (null: no object) and their MD5 in hex. The body is checked against its
   * ETag, so the MD5 comes without hashing twice where the ETag is a plain MD5.
   */
  async readVerified(block: number): Promise<{ data: Uint8Array | null; md5: string | null }> {
    let digest: string | null = null;
    const r = await this.client.send({
      method: "GET",
      kind: "GET",
      key: this.key(block),
      expect: [200, 404],
      validate: (answer) => {
        if (answer.status !== 200) return;
        const etag = unquote(answer.headers.get("etag"));
        digest = md5(answer.body).toString("hex");
        // A body that does not match its ETag was damaged on the way: ask again.
        if (/^[0-9a-f]{32}$/.test(etag) && digest !== etag) throw new RetryableError(`block ${block}: body does not match its ETag`);
      },
    });
    if (r.status === 404) return { data: null, md5: null };
    if (r.body.length !== this.blockSize) {
      throw new FsError(Errno.EIO, `block ${block}: object holds ${r.body.length} bytes, expected ${this.blockSize}`);
    }
    return { data: r.body, md5: digest };
  }

  /** The MD5 hex of the stored block from its ETag (a HEAD), or null when there is no object. */
  async storedMd5(block: number): Promise<string | null> {
    const r = await this.client.send({ method: "HEAD", kind: "HEAD", key: this.key(block), expect: [200, 404] });
    return r.status === 404 ? null : unquote(r.headers.get("etag"));
  }

  readBlockPart(block: number, offset: number, length: number) {
    return readPartOf(this, block, offset, length);
  }

  async writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    await this.writeVerified(block, data);
  }

  /** Stores a block (null: deletes it) and returns the MD5 in hex of what is now stored (null: nothing). */
  async writeVerified(block: number, data: Uint8Array | null): Promise<string | null> {
    const key = this.key(block);
    // Block 0 carries the disk's sizes, so it is stored even when zero (the original deletes it
    // and with it the only record of the sizes).
    if (!data && block === 0 && this.o.keepSizes) data = this.zero;
    if (!data) {
      await this.client.send({ method: "DELETE", kind: "DELETE", key, expect: [200, 204, 404] });
      return null;
    }
    const digest = md5(data);
    const headers: Record<string, string> = {
      "content-type": BLOCK_CONTENT_TYPE,
      "content-md5": digest.toString("base64"),
      ...this.o.putHeaders,
    };
    if (block === 0) {
      headers[META_BLOCKSIZE] = String(this.blockSize);
      headers[META_FILESIZE] = String(this.blockSize * this.numBlocks);
    }
    const r = await this.client.send({ method: "PUT", kind: "PUT", key, headers, body: data, expect: [200] });
    const hex = digest.toString("hex");
    const etag = unquote(r.headers.get("etag"));
    if (/^[0-9a-f]{32}$/.test(etag) && etag !== hex) {
      throw new FsError(Errno.EIO, `block ${block}: the server stored something else (ETag ${etag})`);
    }
    return hex;
  }

  writeBlockPart(block: number, offset: number, data: Uint8Array) {
    return writePartOf(this, block, offset, data);
  }

  /**
   * Lists every block object. The key space after the prefix starts with a hex digit, so it is
   * split 16 ways and the slices are listed in parallel, each following its continuation tokens.
   */
  async listBlocks(found: (block: number) => void): Promise<void> {
    const slices = [..."0123456789abcdef"];
    let next = 0;
    const worker = async () => {
      while (next < slices.length) await this.listSlice(this.o.prefix + slices[next++]!, found);
    };
    await Promise.all(Array.from({ length: Math.min(this.o.listThreads, slices.length) }, worker));
  }

  private async listSlice(prefix: string, found: (block: number) => void): Promise<void> {
    let token: string | undefined;
    do {
      const query: Record<string, string> = { "list-type": "2", prefix, "max-keys": "1000" };
      if (token) query["continuation-token"] = token;
      const r = await this.client.send({ method: "GET", kind: "LIST", key: "", query, expect: [200] });
      const xml = new TextDecoder().decode(r.body);
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) {
        const block = parseBlockName(decodeXml(m[1]!).slice(this.o.prefix.length), this.o.hashPrefix);
        if (block !== undefined && block < this.numBlocks) found(block);
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? decodeXml(/<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? "") : undefined;
    } while (token);
  }

  async flush(): Promise<void> {} // every write is stored before it returns

  async close(): Promise<void> {}

  stats(): StatGroup[] {
    return [{ layer: "S3", values: this.client.stats.entries() }];
  }

  resetStats(): void {
    this.client.stats.reset();
  }
}

function decodeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|apos|quot);/g, (_, e: string) => ({ lt: "<", gt: ">", amp: "&", apos: "'", quot: '"' })[e]!);
}
