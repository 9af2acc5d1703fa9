/**
 * TLS 1.3's key schedule (RFC 8446 §7.1) for SHA-256 suites: HKDF-Extract/Expand-Label,
 * Derive-Secret, the binder and Finished MACs, and traffic keys (§7.3). Each step is a function
 * of its inputs, so RFC 8448's traces check them one by one.
 */
import { createHash, createHmac } from "node:crypto";
import { concatBytes } from "../../util/bytes.ts";

export const HASH_LENGTH = 32;
const NO_BYTES = new Uint8Array(0);
const ZEROS = new Uint8Array(HASH_LENGTH);

export function sha256(...data: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const d of data) h.update(d);
  return new Uint8Array(h.digest());
}

export function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const d of data) h.update(d);
  return new Uint8Array(h.digest());
}

/** Transcript-Hash of no messages. */
export const EMPTY_HASH = sha256();

export const hkdfExtract = (salt: Uint8Array, ikm: Uint8Array) => hmacSha256(salt, ikm);

export function hkdfExpandLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const fullLabel = new TextEncoder().encode(`tls13 ${label}`);
  const info = concatBytes([Uint8Array.of(length >> 8, length & 255, fullLabel.length), fullLabel, Uint8Array.of(context.length), context]);
  const blocks: Uint8Array[] = [];
  let previous: Uint8Array = NO_BYTES;
  for (let i = 1; blocks.length * HASH_LENGTH < length; i++) {
    previous = hmacSha256(secret, previous, info, Uint8Array.of(i));
    blocks.push(previous);
  }
  return concatBytes(blocks).subarray(0, length);
}

export const deriveSecret = (secret: Uint8Array, label: string, transcriptHash: Uint8Array) => hkdfExpandLabel(secret, label, transcriptHash, HASH_LENGTH);

/** Early Secret = HKDF-Extract(0, PSK). */
export const earlySecret = (psk: Uint8Array) => hkdfExtract(ZEROS, psk);

/** The binder key: "ext binder" for an external PSK, "res binder" for a resumption one. */
export const binderKey = (early: Uint8Array, kind: "ext" | "res") => deriveSecret(early, `${kind} binder`, EMPTY_HASH);

/** HMAC(finished_key, transcript hash): a PSK binder (over the truncated ClientHello) and a Finished message's verify_data. */
export const finishedMac = (baseKey: Uint8Array, transcriptHash: Uint8Array) =>
  hmacSha256(hkdfExpandLabel(baseKey, "finished", NO_BYTES, HASH_LENGTH), transcriptHash);

/** Handshake Secret from the Early Secret and the (EC)DHE shared secret (zeros without one: psk_ke). */
export const handshakeSecret = (early: Uint8Array, shared: Uint8Array | undefined) =>
  hkdfExtract(deriveSecret(early, "derived", EMPTY_HASH), shared ?? ZEROS);

export const masterSecret = (handshake: Uint8Array) => hkdfExtract(deriveSecret(handshake, "derived", EMPTY_HASH), ZEROS);

/** An AES-128-GCM traffic key and IV from a traffic secret. */
export const trafficKeys = (secret: Uint8Array) => ({
  key: hkdfExpandLabel(secret, "key", NO_BYTES, 16),
  iv: hkdfExpandLabel(secret, "iv", NO_BYTES, 12),
});

/** The next generation of a traffic secret (KeyUpdate, §7.2). */
export const nextTrafficSecret = (secret: Uint8Array) => hkdfExpandLabel(secret, "traffic upd", NO_BYTES, HASH_LENGTH);
