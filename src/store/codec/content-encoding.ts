/**
 * The Content-Encoding values the original s3backer writes: "deflate" (or, since 2.x, "zstd")
 * for compression and "encrypt-<CIPHER>" for encryption, listed in the order they were applied,
 * e.g. "deflate, encrypt-AES-128-CBC". They are undone from the last to the first.
 */
export const DEFLATE = "deflate";
export const ZSTD = "zstd";
const ENCRYPT_PREFIX = "encrypt-";

/** The layers of a Content-Encoding value, in the order they were applied. */
export function parseEncoding(value: string | null | undefined): string[] {
  return (value ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
}

export function formatEncoding(layers: readonly string[]): string {
  return layers.join(", ");
}

export const encryptionLayer = (cipher: string) => ENCRYPT_PREFIX + cipher;

/** The cipher named by an "encrypt-<CIPHER>" layer, or undefined for any other layer. */
export function cipherOfLayer(layer: string): string | undefined {
  return layer.toLowerCase().startsWith(ENCRYPT_PREFIX) ? layer.slice(ENCRYPT_PREFIX.length) : undefined;
}
