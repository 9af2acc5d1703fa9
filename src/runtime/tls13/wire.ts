/**
 * TLS 1.3's code points (RFC 8446) as far as the PSK server uses them, the alert that ends a
 * handshake, and a reader of length-prefixed fields that refuses to run past its end.
 */
import { concatBytes } from "../../util/bytes.ts";

export const ContentType = { CHANGE_CIPHER_SPEC: 20, ALERT: 21, HANDSHAKE: 22, APPLICATION_DATA: 23 } as const;

export const HandshakeType = { CLIENT_HELLO: 1, SERVER_HELLO: 2, ENCRYPTED_EXTENSIONS: 8, FINISHED: 20, KEY_UPDATE: 24 } as const;

export const Extension = {
  SUPPORTED_GROUPS: 10,
  PRE_SHARED_KEY: 41,
  EARLY_DATA: 42,
  SUPPORTED_VERSIONS: 43,
  PSK_KEY_EXCHANGE_MODES: 45,
  KEY_SHARE: 51,
} as const;

export const Group = { SECP256R1: 0x0017, X25519: 0x001d } as const;
export const PskMode = { PSK_KE: 0, PSK_DHE_KE: 1 } as const;
export const TLS13 = 0x0304;
export const TLS_AES_128_GCM_SHA256 = 0x1301;

export const Alert = {
  CLOSE_NOTIFY: 0,
  UNEXPECTED_MESSAGE: 10,
  BAD_RECORD_MAC: 20,
  RECORD_OVERFLOW: 22,
  HANDSHAKE_FAILURE: 40,
  ILLEGAL_PARAMETER: 47,
  DECODE_ERROR: 50,
  DECRYPT_ERROR: 51,
  PROTOCOL_VERSION: 70,
  INTERNAL_ERROR: 80,
  USER_CANCELED: 90,
  MISSING_EXTENSION: 109,
  UNKNOWN_PSK_IDENTITY: 115,
} as const;

/** The largest plaintext fragment of a record, and how much protection may add to it. */
export const MAX_FRAGMENT = 1 << 14;
export const MAX_CIPHERTEXT = MAX_FRAGMENT + 256;
export const RECORD_HEADER = 5;

/** A failure that ends the connection with this alert to the peer. */
export class TlsAlert extends Error {
  constructor(
    readonly alert: number,
    message: string,
  ) {
    super(message);
  }
}

/** Reads fields in order from `bytes`; any read past the end is a decode_error. */
export class Fields {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  /** Where the next read starts, from the start of `bytes`. */
  get offset(): number {
    return this.at;
  }
  get done(): boolean {
    return this.at === this.bytes.length;
  }
  private need(n: number): void {
    if (n > this.bytes.length - this.at) throw new TlsAlert(Alert.DECODE_ERROR, "a field runs past the end of its message");
  }
  u8(): number {
    this.need(1);
    return this.bytes[this.at++]!;
  }
  u16(): number {
    this.need(2);
    this.at += 2;
    return (this.bytes[this.at - 2]! << 8) | this.bytes[this.at - 1]!;
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  bytesOf(n: number): Uint8Array {
    this.need(n);
    this.at += n;
    return this.bytes.subarray(this.at - n, this.at);
  }
  /** A vector with a 1- or 2-byte length of `min` to `max` bytes. */
  vector(lengthBytes: 1 | 2, min: number, max: number, what: string): Uint8Array {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    if (n < min || n > max) throw new TlsAlert(Alert.DECODE_ERROR, `${what}: ${n} bytes, expected ${min} to ${max}`);
    return this.bytesOf(n);
  }
  /** The fields must have been read to the end. */
  end(what: string): void {
    if (!this.done) throw new TlsAlert(Alert.DECODE_ERROR, `${what}: ${this.bytes.length - this.at} bytes left over`);
  }
}

export const u16 = (n: number) => Uint8Array.of(n >> 8, n & 255);
export const u24 = (n: number) => Uint8Array.of(n >> 16, (n >> 8) & 255, n & 255);

/** A vector with a 2-byte length. */
export const vector16 = (body: Uint8Array) => concatBytes([u16(body.length), body]);

/** A handshake message: type, 3-byte length, body. */
export const handshakeMessage = (type: number, body: Uint8Array) => concatBytes([Uint8Array.of(type), u24(body.length), body]);
