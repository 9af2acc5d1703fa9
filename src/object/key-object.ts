/**
 * The key object of a disk whose data key is wrapped by its password (--keyWrap):
 * `<prefix>s3backer-key`, beside the mounted flag. The object tier keeps its bytes and swaps them
 * only on a condition, so that of two writers racing, one wins and the other is told; what the
 * bytes mean is the codec's (store/codec/wrapped-key.ts).
 */
export const KEY_OBJECT = "s3backer-key";

export interface KeyObjectStore {
  /** Where it is, for messages (bucket/prefix/s3backer-key). */
  readonly where: string;
  /** Its bytes and ETag, or undefined when there is none. */
  read(): Promise<{ body: Uint8Array; etag: string } | undefined>;
  /** Stores it if there is none yet: false when one was there first. */
  create(body: Uint8Array): Promise<boolean>;
  /** Replaces it if it is still the version `etag`: false when it changed meanwhile. */
  replace(body: Uint8Array, etag: string): Promise<boolean>;
  delete(): Promise<void>;
  /** What a server that does not honour the condition made of it (for the log), if anything. */
  readonly warnings: string[];
}
