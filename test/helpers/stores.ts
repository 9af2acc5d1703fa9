/** Store stacks for tests that need no server. */
import { Codec } from "../../src/object/codec/codec.ts";
import type { ObjectStore } from "../../src/object/object-store.ts";

/** Blocks over an object store with no transform (the codec as a plain disk uses it). */
export function plainCodec(objects: ObjectStore): Codec {
  return new Codec(objects, { compression: undefined, encryption: undefined, defaultEncoding: undefined, keepSizes: false });
}
