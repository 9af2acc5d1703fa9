/** The codec over objects in memory: what it hands down to the store with each block. */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectToStore } from "../../src/object/object-store.ts";
import { testStack } from "../helpers/stack.ts";

test("an MD5 handed down with a block reaches the store only when the object is the block's own bytes", async () => {
  const carried: (string | undefined)[] = [];
  class Recording extends MemoryObjects {
    override async put(block: number, object: ObjectToStore): Promise<undefined> {
      carried.push(object.md5);
      return super.put(block, object);
    }
  }
  const c = testStack(new Recording(4096, 16), { codec: { compression: { algorithm: "deflate", level: 6 } } }).codec;
  const md5 = (data: Uint8Array) => createHash("md5").update(data).digest("hex");
  const compressible = new Uint8Array(4096).fill(7);
  const random = crypto.getRandomValues(new Uint8Array(4096)); // stored raw: it does not compress
  expect(await c.writeVerified(1, compressible, md5(compressible))).not.toBe(md5(compressible));
  expect(await c.writeVerified(2, random, md5(random))).toBe(md5(random));
  expect(carried).toEqual([undefined, md5(random)]);
});
