/**
 * Block compression, as the original writes it: "deflate" is zlib-wrapped deflate (compress2(),
 * the HTTP meaning of the word), "zstd" a Zstandard frame (ZSTD_compress()). Both run on the
 * runtime's zlib thread pool so the event loop stays free. Decompression never produces more than
 * one block, whatever the body claims.
 */
import { constants, deflate, inflate, zstdCompress, zstdDecompress } from "node:zlib";
import { promisify } from "node:util";
import { DEFLATE, ZSTD } from "./content-encoding.ts";

const deflateAsync = promisify(deflate);
const inflateAsync = promisify(inflate);
const zstdCompressAsync = promisify(zstdCompress);
const zstdDecompressAsync = promisify(zstdDecompress);

export type Algorithm = typeof DEFLATE | typeof ZSTD;

export interface Compression {
  algorithm: Algorithm;
  level: number;
}

/** Each algorithm's levels and default (zlib's 6, zstd's ZSTD_CLEVEL_DEFAULT 3). */
export const LEVELS: Readonly<Record<Algorithm, { min: number; max: number; default: number }>> = {
  [DEFLATE]: { min: 1, max: 9, default: 6 },
  [ZSTD]: { min: -131072, max: 22, default: 3 }, // ZSTD_minCLevel() to ZSTD_maxCLevel()
};

export async function compress(data: Uint8Array, how: Compression): Promise<Uint8Array> {
  const out =
    how.algorithm === ZSTD
      ? // The size pledged goes into the frame header, as ZSTD_compress() puts it (Deno leaves it out otherwise).
        await zstdCompressAsync(data, { params: { [constants.ZSTD_c_compressionLevel]: how.level }, pledgedSrcSize: data.length })
      : await deflateAsync(data, { level: how.level });
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** True for the compression layers this program can undo. */
export const isCompression = (layer: string) => layer.toLowerCase() === DEFLATE || layer.toLowerCase() === ZSTD;

/** Undoes one compression layer; throws an Error saying why when the body is not valid. */
export async function decompress(layer: string, body: Uint8Array, limit: number): Promise<Uint8Array> {
  const zstd = layer.toLowerCase() === ZSTD;
  let out: Uint8Array;
  try {
    out = zstd ? await zstdDecompressAsync(body, { maxOutputLength: limit }) : await inflateAsync(body, { maxOutputLength: limit });
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new Error(code === "ERR_BUFFER_TOO_LARGE" ? `${layer} data inflates beyond one block` : `${layer} data is corrupt or truncated`);
  }
  // The runtimes' zstd returns what it decoded of a cut-off frame without an error: the size the
  // frame declares is the check (the codec also checks that a block decodes to a whole block).
  const declared = zstd ? zstdContentSize(body) : undefined;
  if (declared !== undefined && declared !== out.length) throw new Error(`${layer} data is corrupt or truncated`);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Frame_Content_Size from a zstd frame header (RFC 8878, 3.1.1.1), or undefined if it has none. */
export function zstdContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 6 || frame[0] !== 0x28 || frame[1] !== 0xb5 || frame[2] !== 0x2f || frame[3] !== 0xfd) return undefined;
  const descriptor = frame[4]!;
  const singleSegment = (descriptor >> 5) & 1;
  const fcsBytes = [singleSegment, 2, 4, 8][descriptor >> 6]!;
  if (fcsBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  if (frame.length < at + fcsBytes) return undefined;
  let size = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) size = size * 256 + frame[at + i]!;
  return fcsBytes === 2 ? size + 256 : size;
}
