/**
 * The (EC)DHE part of a PSK handshake (RFC 8446 §4.2.8, §7.4): x25519 or secp256r1 with the
 * client's key share, each share checked (length, form, the point, the all-zero secret); psk_ke
 * (the PSK alone) only when the client allows it and sent no share we take.
 */
import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from "node:crypto";
import { concatBytes } from "../../util/bytes.ts";
import type { ClientHello } from "./client-hello.ts";
import { Alert, Group, PskMode, TlsAlert, u16, vector16 } from "./wire.ts";

/** ECDHE with the client's x25519 or secp256r1 share when it allows it; else psk_ke if it allows that. */
export function keyExchange(hello: ClientHello): { name: string; shared: Uint8Array | undefined; share: Uint8Array | undefined } {
  const modes = hello.pskModes!;
  const shares = hello.keyShares ?? new Map<number, Uint8Array>();
  for (const group of shares.keys()) {
    if (!hello.groups!.includes(group)) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, `a key share for group ${group}, which supported_groups does not list`);
  }
  if (modes.includes(PskMode.PSK_DHE_KE)) {
    const x25519 = shares.get(Group.X25519);
    if (x25519) return { name: "psk_dhe_ke x25519", ...x25519Exchange(x25519) };
    const p256 = shares.get(Group.SECP256R1);
    if (p256) return { name: "psk_dhe_ke secp256r1", ...p256Exchange(p256) };
  }
  if (modes.includes(PskMode.PSK_KE)) return { name: "psk_ke", shared: undefined, share: undefined };
  throw new TlsAlert(Alert.HANDSHAKE_FAILURE, "no key exchange in common: psk_dhe_ke needs an x25519 or secp256r1 key share (HelloRetryRequest is not supported)");
}

/** X25519 with the client's public value: the shared secret, and our KeyShareEntry. `privateKey` is fresh but for tests. */
export function x25519Exchange(peer: Uint8Array, privateKey: KeyObject = generateKeyPairSync("x25519").privateKey): { shared: Uint8Array; share: Uint8Array } {
  if (peer.length !== 32) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "an x25519 key share that is not 32 bytes");
  const peerKey = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peer).toString("base64url") }, format: "jwk" });
  let shared: Uint8Array;
  try {
    shared = new Uint8Array(diffieHellman({ privateKey, publicKey: peerKey }));
  } catch {
    shared = new Uint8Array(32); // OpenSSL and BoringSSL refuse an all-zero result themselves
  }
  // RFC 8446 §7.4.2: an all-zero secret means a point of low order.
  if (shared.every((b) => b === 0)) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "an x25519 key share of low order");
  const mine = new Uint8Array(Buffer.from(createPublicKey(privateKey).export({ format: "jwk" }).x!, "base64url"));
  return { shared, share: concatBytes([u16(Group.X25519), vector16(mine)]) };
}

function p256Exchange(peer: Uint8Array): { shared: Uint8Array; share: Uint8Array } {
  if (peer.length !== 65 || peer[0] !== 4) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "a secp256r1 key share that is not an uncompressed point");
  const ecdh = createECDH("prime256v1");
  const mine = new Uint8Array(ecdh.generateKeys());
  let shared: Uint8Array;
  try {
    shared = new Uint8Array(ecdh.computeSecret(peer)); // refuses a point not on the curve
  } catch {
    throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "a secp256r1 key share not on the curve");
  }
  return { shared, share: concatBytes([u16(Group.SECP256R1), vector16(mine)]) };
}
