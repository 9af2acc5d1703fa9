/** The value of an S3 `x-amz-checksum-crc32` header: the big-endian CRC-32 of the body (taken by the runtime), in base64. */
export function crc32ToBase64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0);
  return b.toString("base64");
}
