/** The value of an S3 `x-amz-checksum-crc32` header: the big-endian CRC-32 of the body, in base64. */
import { runtime } from "../runtime/index.ts";

export function crc32Base64(data: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(runtime.crc32(data) >>> 0);
  return b.toString("base64");
}
