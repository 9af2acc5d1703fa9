/**
 * Record protection for TLS_AES_128_GCM_SHA256 (RFC 8446 §5.2-5.3): one direction's key, IV and
 * sequence number. A record's nonce is the IV XOR its sequence number; the additional data is the
 * record header; the inner plaintext is the content, its type, and no padding (padding received is
 * stripped).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { concatBytes } from "../../util/bytes.ts";
import { trafficKeys } from "./key-schedule.ts";
import { Alert, ContentType, MAX_CIPHERTEXT, MAX_FRAGMENT, RECORD_HEADER, TlsAlert } from "./wire.ts";

const TAG = 16;

export class RecordProtection {
  private key!: Uint8Array;
  private iv!: Uint8Array;
  private seq = 0;
  /** The traffic secret in use (KeyUpdate derives the next one from it). */
  secret!: Uint8Array;

  constructor(secret: Uint8Array) {
    this.rekey(secret);
  }

  /** Records protected with the current key so far. */
  get sequence(): number {
    return this.seq;
  }

  rekey(secret: Uint8Array): void {
    this.secret = secret;
    ({ key: this.key, iv: this.iv } = trafficKeys(secret));
    this.seq = 0;
  }

  private nonce(): Uint8Array {
    const nonce = this.iv.slice();
    // The sequence number, 64 bits big-endian, into the IV's last 8 bytes (it stays below 2^53).
    const high = Math.floor(this.seq / 0x100000000);
    const low = this.seq >>> 0;
    for (let i = 0; i < 4; i++) {
      nonce[11 - i]! ^= (low >>> (8 * i)) & 255;
      nonce[7 - i]! ^= (high >>> (8 * i)) & 255;
    }
    this.seq++;
    return nonce;
  }

  /** `content` of `type` as protected records of at most 2^14 plaintext bytes each, in one array (one record if empty). */
  seal(type: number, content: Uint8Array): Uint8Array {
    const count = Math.max(1, Math.ceil(content.length / MAX_FRAGMENT));
    const out = new Uint8Array(content.length + count * (RECORD_HEADER + 1 + TAG));
    let at = 0;
    for (let i = 0; i < count; i++) {
      const fragment = content.subarray(i * MAX_FRAGMENT, (i + 1) * MAX_FRAGMENT);
      const length = fragment.length + 1 + TAG;
      const header = Uint8Array.of(ContentType.APPLICATION_DATA, 3, 3, length >> 8, length & 255);
      out.set(header, at);
      const cipher = createCipheriv("aes-128-gcm", this.key, this.nonce());
      cipher.setAAD(header);
      let body = at + RECORD_HEADER;
      for (const part of [cipher.update(fragment), cipher.update(Uint8Array.of(type)), cipher.final(), cipher.getAuthTag()]) {
        out.set(part, body);
        body += part.length;
      }
      at = body;
    }
    return out;
  }

  /** One protected record's content and true type; a record that does not verify is bad_record_mac. */
  open(header: Uint8Array, body: Uint8Array): { type: number; content: Uint8Array } {
    if (body.length < 1 + TAG) throw new TlsAlert(Alert.BAD_RECORD_MAC, "a protected record too short to hold its tag");
    if (body.length > MAX_CIPHERTEXT) throw new TlsAlert(Alert.RECORD_OVERFLOW, "a protected record over 2^14+256 bytes");
    const decipher = createDecipheriv("aes-128-gcm", this.key, this.nonce());
    decipher.setAAD(header);
    decipher.setAuthTag(body.subarray(body.length - TAG));
    const first = decipher.update(body.subarray(0, body.length - TAG));
    let last: Uint8Array;
    try {
      last = decipher.final();
    } catch {
      throw new TlsAlert(Alert.BAD_RECORD_MAC, "a record does not verify (wrong key, or changed on the way)");
    }
    const plain = last.length === 0 ? new Uint8Array(first.buffer, first.byteOffset, first.length) : concatBytes([first, last]);
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    if (end === 0) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "a protected record with no content type");
    if (end - 1 > MAX_FRAGMENT) throw new TlsAlert(Alert.RECORD_OVERFLOW, "a record's content over 2^14 bytes");
    return { type: plain[end - 1]!, content: plain.subarray(0, end - 1) };
  }
}
