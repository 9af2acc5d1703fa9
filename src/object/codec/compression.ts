/**
 * Block compression: zlib-wrapped deflate as the original's compress2() writes it (the HTTP
 * meaning of "deflate"), run on the runtime's zlib thread pool so the event loop stays free.
 * Decompression never produces more than one block, whatever the body claims.
 */
import { deflate, inflate, zstdDecompress } from "node:zlib";
import { promisify } from "node:util";
import { DEFLATE, ZSTD } from "./content-encoding.ts";

const deflateAsync = promisify(deflate);
const inflateAsync = promisify(inflate);
const zstdDecompressAsync = promisify(zstdDecompress);

/** zlib's own default level (what the original uses when --compress has no level). */
export const DEFAULT_LEVEL = 6;

export async function compress(data: Uint8Array, level: number): Promise<Uint8Array> {
  return deflateAsync(data, { level });
}

/** True for the compression layers this program can undo. */
export const isCompression = (layer: string) => layer.toLowerCase() === DEFLATE || layer.toLowerCase() === ZSTD;

/** Undoes one compression layer; throws an Error saying why when the body is not valid. */
export async function decompress(layer: string, body: Uint8Array, limit: number): Promise<Uint8Array> {
  try {
    const out = layer.toLowerCase() === ZSTD ? await zstdDecompressAsync(body, { maxOutputLength: limit }) : await inflateAsync(body, { maxOutputLength: limit });
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new Error(code === "ERR_BUFFER_TOO_LARGE" ? `${layer} data inflates beyond one block` : `${layer} data is corrupt or truncated`);
  }
}
