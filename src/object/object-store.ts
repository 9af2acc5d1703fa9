/**
 * The seam below the block tier: where objects are kept, one per block, each with the MD5 of its
 * body. S3, a local directory and memory implement it; the codec turns blocks into objects above
 * it, and the consistency guard compares MD5s through the codec. An object store knows nothing of
 * zero blocks, encodings or caches: it keeps bytes and says what it holds.
 */
import type { StatGroup } from "../util/stat-group.ts";
import { md5Hex } from "../util/md5.ts";

/** An object as the codec hands it down: the body and the headers that say how to read it. */
export interface ObjectToStore {
  body: Uint8Array;
  /** Content-Encoding, e.g. "deflate, encrypt-AES-128-CBC". */
  encoding?: string;
  /** The authentication header's value, quotes included as the original writes it. */
  hmac?: string;
  /** The MD5 hex of `body`, when the caller has taken it (the store need not hash it again). */
  md5?: string;
}

export interface ObjectHead {
  /** MD5 hex of the body. */
  md5: string;
  encoding: string | null;
}

/** An object as read. A store that keeps no MD5 (a directory, memory) may hash its body when `md5` is first read. */
export interface StoredObject extends ObjectHead {
  body: Uint8Array;
  hmac: string | null;
  /** Set when another disk wrote it (a base of a layered disk): that disk's name keys its encryption. */
  disk?: string;
}

/** A stored object whose MD5 is hashed from its body when first asked for (and then kept). */
export class HashedLater implements StoredObject {
  private digest: string | undefined;
  constructor(
    readonly body: Uint8Array,
    readonly encoding: string | null,
    readonly hmac: string | null,
  ) {}
  get md5(): string {
    return (this.digest ??= md5Hex(this.body));
  }
}

/**
 * Thrown by a reader's check of a body (`get`'s `accept`) that finds it is not the object asked
 * for (another block's, answered by mistake): the store fetches it again where it retries
 * (S3: within the same backoff and budget as a body that fails its checksum).
 */
export class ObjectRefused extends Error {}

/** A reader's check of an object as fetched; throws ObjectRefused to have it fetched again. */
export type AcceptObject = (object: StoredObject) => Promise<void>;

export interface ObjectStore {
  readonly blockSize: number;
  readonly numBlocks: number;
  /** True when every body `get` returns is new and kept by nobody else. */
  readonly freshBodies: boolean;
  /**
   * A block's object (null: none); its body checked against the MD5 the store holds for it, then
   * by `accept` where the store retries (S3), fetched again while that refuses it. A store that
   * never fetches twice may leave `accept` out: the caller checks what it is given anyway.
   */
  get(block: number, accept?: AcceptObject): Promise<StoredObject | null>;
  /** A block's object without its body (null: none). */
  head(block: number): Promise<ObjectHead | null>;
  /**
   * Stores a block's object (the body is only lent). Returns the MD5 hex of the body now stored
   * where the store has it without hashing again (S3: the upload's Content-MD5), else undefined.
   */
  put(block: number, object: ObjectToStore): Promise<string | undefined>;
  delete(block: number): Promise<void>;
  /**
   * Calls `found` for every block that has an object (in no particular order), with the object's
   * size where the listing tells it (S3 does; a layer's zero marker is an empty object).
   */
  list(found: (block: number, size?: number) => void): Promise<void>;
  /** Some block that has an object (cheaper than a whole listing where the store can), or undefined. */
  anyBlock(): Promise<number | undefined>;
  /** Makes every completed put and delete durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
  stats(): StatGroup[];
}
