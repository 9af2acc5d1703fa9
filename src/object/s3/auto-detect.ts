/** Block and file size of an existing disk, from block 0's metadata (a HEAD, as the original does). */
import type { S3Client } from "./s3-client.ts";
import { META_BLOCKSIZE, META_FILESIZE } from "./s3-store.ts";

export type Detected = { blockSize: number; fileSize: number } | "no disk" | "no metadata";

export async function detectGeometry(client: S3Client, block0Key: string): Promise<Detected> {
  const r = await client.send({ method: "HEAD", kind: "HEAD", key: block0Key, expect: [200, 404] });
  if (r.status === 404) return "no disk";
  const blockSize = Number(r.headers.get(META_BLOCKSIZE));
  const fileSize = Number(r.headers.get(META_FILESIZE));
  if (!Number.isSafeInteger(blockSize) || !Number.isSafeInteger(fileSize) || blockSize <= 0 || fileSize <= 0) return "no metadata";
  return { blockSize, fileSize };
}
