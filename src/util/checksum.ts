/** The value of an S3 `x-amz-checksum-crc32` header: the big-endian CRC-32 of the body, in base64. */
import { runtime } from "../runtime/index.ts";

export function crc32Base64(data: Uint8Array): string {
  return crc32ToBase64(runtime.crc32(data));
}

/** A CRC-32 already taken, in that header's form. */
export function crc32ToBase64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0);
  return b.toString("base64");
}
