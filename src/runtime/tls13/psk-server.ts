/**
 * The server side of TLS 1.3 (RFC 8446) with external pre-shared keys, and nothing else: neither
 * Bun's nor Deno's TLS takes a PSK (both ignore node:tls's pskCallback), and qemu, libnbd and
 * nbdkit clients (GnuTLS) use psktool's keys over TLS 1.3. A byte-in/byte-out engine: `receive`
 * takes what the socket delivered, `send` gets what must go to the socket.
 *
 * What it implements, exactly:
 * - TLS 1.3 only, one suite: TLS_AES_128_GCM_SHA256 (GnuTLS binds psktool keys to SHA-256).
 * - External PSKs ("ext binder"), identities looked up by their UTF-8 text; the first identity
 *   offered that is known is chosen, and its binder must verify (compared in constant time).
 * - Key exchange psk_dhe_ke with x25519 (preferred) or secp256r1, from the client's first key
 *   share; psk_ke only when the client offers it and no usable share came.
 * - A ServerHello (supported_versions, pre_shared_key, key_share), a compatibility
 *   ChangeCipherSpec when the client sent a session id, empty EncryptedExtensions, Finished; the
 *   client's one ChangeCipherSpec and its Finished (constant-time compare).
 * - Application data both ways; KeyUpdate both ways (answering update_requested), and one of its
 *   own every `recordsPerKey` records sent (2^24 by default, under AES-GCM's 2^24.5 limit);
 *   close_notify both ways; a fatal alert out on every error, and any alert in ends the session.
 * It refuses, with an alert: TLS 1.2 and older (protocol_version), other suites, clients without
 * a PSK or with certificates only (handshake_failure), unknown identities (unknown_psk_identity),
 * a wrong key (decrypt_error), 0-RTT early data offered (handshake_failure), anything that would
 * need a HelloRetryRequest (handshake_failure), resumption tickets (none are ever issued),
 * renegotiation and every message out of place (unexpected_message), malformed or oversized input
 * (decode_error, record_overflow). No certificates, no session tickets, no post-handshake auth.
 * The handshake's time limit is the caller's (runtime/psk-tls.ts). Secrets are not wiped from
 * memory: JavaScript gives no way to be sure of it.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { concatBytes } from "../../util/bytes.ts";
import { parseClientHello, type ClientHello } from "./client-hello.ts";
import { keyExchange } from "./key-exchange.ts";
import { binderKey, deriveSecret, earlySecret, finishedMac, handshakeSecret, HASH_LENGTH, masterSecret, nextTrafficSecret, sha256 } from "./key-schedule.ts";
import { RecordProtection } from "./records.ts";
import {
  Alert, ContentType, Extension, handshakeMessage, HandshakeType, MAX_CIPHERTEXT, MAX_FRAGMENT, RECORD_HEADER, TLS13, TLS_AES_128_GCM_SHA256,
  TlsAlert, u16, vector16,
} from "./wire.ts";

/** A ClientHello longer than this is not one worth reading (a few KiB in practice). */
const MAX_HANDSHAKE_MESSAGE = 1 << 16;
export const RECORDS_PER_KEY = 1 << 24;

export interface PskSession {
  identity: string;
  /** "psk_dhe_ke x25519", "psk_dhe_ke secp256r1" or "psk_ke". */
  keyExchange: string;
}

export interface PskServerEvents {
  /** The client proved it holds the key: application data may flow. */
  established(session: PskSession): void;
  data(plain: Uint8Array): void;
  /** The session is over: `why` is undefined after the client's close_notify. Nothing follows. */
  closed(why: string | undefined): void;
}

type State = "hello" | "finished" | "open" | "closed";

/** A client's identity for the log: quoted, control characters escaped, at most 64 characters. */
const quoted = (identity: string) =>
  `'${identity.slice(0, 64).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}${identity.length > 64 ? "..." : ""}'`;

const constantTimeEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);

export class Tls13PskServer {
  private state: State = "hello";
  private inbox: Uint8Array = new Uint8Array(0);
  private handshake: Uint8Array = new Uint8Array(0);
  private read: RecordProtection | undefined;
  private write: RecordProtection | undefined;
  private sawChangeCipherSpec = false;
  /** Between our Finished and the client's: what its Finished must say, and the keys after it. */
  private pending: { clientFinished: Uint8Array; clientSecret: Uint8Array; session: PskSession } | undefined;

  constructor(
    private readonly keys: ReadonlyMap<string, Uint8Array>,
    private readonly send: (bytes: Uint8Array) => void,
    private readonly events: PskServerEvents,
    private readonly recordsPerKey = RECORDS_PER_KEY,
  ) {}

  get isOpen(): boolean {
    return this.state === "open";
  }

  private get isClosed(): boolean {
    return this.state === "closed";
  }

  /** Bytes from the socket, in order. */
  receive(bytes: Uint8Array): void {
    if (this.isClosed) return;
    this.inbox = this.inbox.length === 0 ? bytes : concatBytes([this.inbox, bytes]);
    try {
      while (this.inbox.length >= RECORD_HEADER && !this.isClosed) {
        const length = (this.inbox[3]! << 8) | this.inbox[4]!;
        if (length > MAX_CIPHERTEXT) throw new TlsAlert(Alert.RECORD_OVERFLOW, `a record of ${length} bytes`);
        if (this.inbox.length < RECORD_HEADER + length) break;
        const header = this.inbox.subarray(0, RECORD_HEADER);
        const body = this.inbox.subarray(RECORD_HEADER, RECORD_HEADER + length);
        this.inbox = this.inbox.subarray(RECORD_HEADER + length);
        this.record(header, body);
      }
    } catch (err) {
      if (err instanceof TlsAlert) this.fail(err.alert, err.message);
      else this.fail(Alert.INTERNAL_ERROR, `internal error: ${(err as Error).message}`);
    }
  }

  /** Application bytes to protect and send; only once established. */
  writeData(plain: Uint8Array): void {
    if (this.state !== "open") throw new Error(`TLS session is ${this.state}: cannot send data`);
    let at = 0;
    do {
      // A key protects at most recordsPerKey records.
      if (this.write!.sequence >= this.recordsPerKey) this.sendKeyUpdate();
      const part = plain.subarray(at, at + (this.recordsPerKey - this.write!.sequence) * MAX_FRAGMENT);
      this.send(this.write!.seal(ContentType.APPLICATION_DATA, part));
      at += part.length;
    } while (at < plain.length);
  }

  /** Ends the session from our side: close_notify when keys are set. No events follow. */
  close(): void {
    if (this.state === "closed") return;
    if (this.write) this.send(this.write.seal(ContentType.ALERT, Uint8Array.of(1, Alert.CLOSE_NOTIFY)));
    this.state = "closed";
  }

  private fail(alert: number, why: string): void {
    this.inbox = new Uint8Array(0);
    if (this.state === "closed") return;
    const body = Uint8Array.of(2, alert);
    this.send(this.write ? this.write.seal(ContentType.ALERT, body) : concatBytes([Uint8Array.of(ContentType.ALERT, 3, 3, 0, 2), body]));
    this.state = "closed";
    this.events.closed(why);
  }

  private record(header: Uint8Array, body: Uint8Array): void {
    const type = header[0]!;
    if (type === ContentType.CHANGE_CIPHER_SPEC) {
      // Middlebox compatibility (RFC 8446 §5): one plaintext 0x01, only before the client's Finished.
      if (this.state !== "finished" || this.sawChangeCipherSpec || body.length !== 1 || body[0] !== 1 || this.handshake.length > 0) {
        throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "a ChangeCipherSpec out of place");
      }
      this.sawChangeCipherSpec = true;
      return;
    }
    // A client that gives up during the handshake may not have keys yet: its alert comes in the clear.
    if (type === ContentType.ALERT && this.state !== "open") return this.alert(body);
    if (!this.read) {
      if (type !== ContentType.HANDSHAKE) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, `a record of type ${type} before the ClientHello`);
      if (body.length === 0 || body.length > MAX_FRAGMENT) throw new TlsAlert(Alert.DECODE_ERROR, `a plaintext handshake record of ${body.length} bytes`);
      return this.handshakeBytes(body);
    }
    if (type !== ContentType.APPLICATION_DATA) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, `an unprotected record of type ${type} after the ServerHello`);
    const inner = this.read.open(header, body);
    if (this.handshake.length > 0 && inner.type !== ContentType.HANDSHAKE) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "a record inside a split handshake message");
    switch (inner.type) {
      case ContentType.APPLICATION_DATA:
        if (this.state !== "open") throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "application data before the handshake ended");
        if (inner.content.length > 0) this.events.data(inner.content);
        return;
      case ContentType.HANDSHAKE:
        if (inner.content.length === 0) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "an empty handshake record");
        return this.handshakeBytes(inner.content);
      case ContentType.ALERT:
        return this.alert(inner.content);
      default:
        throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, `a protected record of type ${inner.type}`);
    }
  }

  private alert(body: Uint8Array): void {
    if (body.length !== 2) throw new TlsAlert(Alert.DECODE_ERROR, "an alert that is not 2 bytes");
    const description = body[1]!;
    if (description === Alert.USER_CANCELED) return; // a close_notify follows
    this.state = "closed";
    this.events.closed(description === Alert.CLOSE_NOTIFY ? undefined : `the client sent TLS alert ${description}`);
  }

  private handshakeBytes(bytes: Uint8Array): void {
    this.handshake = this.handshake.length === 0 ? bytes : concatBytes([this.handshake, bytes]);
    while (this.handshake.length >= 4 && !this.isClosed) {
      const length = (this.handshake[1]! << 16) | (this.handshake[2]! << 8) | this.handshake[3]!;
      if (length > MAX_HANDSHAKE_MESSAGE) throw new TlsAlert(Alert.DECODE_ERROR, `a handshake message of ${length} bytes`);
      if (this.handshake.length < 4 + length) return;
      const message = this.handshake.slice(0, 4 + length);
      this.handshake = this.handshake.subarray(4 + length);
      this.handshakeMessage(message);
    }
  }

  private handshakeMessage(m: Uint8Array): void {
    const type = m[0]!;
    const keysChangeAfter = () => {
      // RFC 8446 §5.1: the message before a key change must end its record.
      if (this.handshake.length > 0) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, `more handshake data in the record of message ${type}`);
    };
    if (this.state === "hello" && type === HandshakeType.CLIENT_HELLO) {
      keysChangeAfter();
      return this.clientHello(m);
    }
    if (this.state === "finished" && type === HandshakeType.FINISHED) {
      keysChangeAfter();
      return this.clientFinished(m);
    }
    if (this.state === "open" && type === HandshakeType.KEY_UPDATE) {
      keysChangeAfter();
      return this.keyUpdate(m);
    }
    throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, `handshake message ${type} where it has no place (${this.state})`);
  }

  private clientHello(m: Uint8Array): void {
    const hello = parseClientHello(m);
    if (!hello.versions?.includes(TLS13)) throw new TlsAlert(Alert.PROTOCOL_VERSION, "the client does not offer TLS 1.3 (TLS 1.2 and older are not supported with PSK)");
    if (!hello.cipherSuites.includes(TLS_AES_128_GCM_SHA256)) throw new TlsAlert(Alert.HANDSHAKE_FAILURE, "the client does not offer TLS_AES_128_GCM_SHA256");
    if (!hello.psk) throw new TlsAlert(Alert.HANDSHAKE_FAILURE, "the client offers no pre-shared key (this server takes PSK clients only)");
    if (!hello.pskModes) throw new TlsAlert(Alert.MISSING_EXTENSION, "pre_shared_key without psk_key_exchange_modes");
    if (hello.keyShares && !hello.groups) throw new TlsAlert(Alert.MISSING_EXTENSION, "key_share without supported_groups");
    if (hello.earlyData) throw new TlsAlert(Alert.HANDSHAKE_FAILURE, "0-RTT early data is not supported");
    const { identity, index, key } = this.chooseKey(hello);
    const early = earlySecret(key);
    const binder = finishedMac(binderKey(early, "ext"), sha256(m.subarray(0, hello.psk.bindersOffset)));
    if (!constantTimeEqual(hello.psk.binders[index]!, binder)) throw new TlsAlert(Alert.DECRYPT_ERROR, `wrong key for PSK identity ${quoted(identity)}`);
    const exchange = keyExchange(hello);

    const extensions = concatBytes([
      u16(Extension.SUPPORTED_VERSIONS), vector16(u16(TLS13)),
      u16(Extension.PRE_SHARED_KEY), vector16(u16(index)),
      ...(exchange.share ? [u16(Extension.KEY_SHARE), vector16(exchange.share)] : []),
    ]);
    const serverHello = handshakeMessage(HandshakeType.SERVER_HELLO, concatBytes([
      u16(0x0303), new Uint8Array(randomBytes(32)), Uint8Array.of(hello.sessionId.length), hello.sessionId,
      u16(TLS_AES_128_GCM_SHA256), Uint8Array.of(0), vector16(extensions),
    ]));
    this.send(concatBytes([Uint8Array.of(ContentType.HANDSHAKE, 3, 3), u16(serverHello.length), serverHello]));
    if (hello.sessionId.length > 0) this.send(Uint8Array.of(ContentType.CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1));

    const secret = handshakeSecret(early, exchange.shared);
    const helloHash = sha256(m, serverHello);
    const clientHandshake = deriveSecret(secret, "c hs traffic", helloHash);
    const serverHandshake = deriveSecret(secret, "s hs traffic", helloHash);
    this.read = new RecordProtection(clientHandshake);
    this.write = new RecordProtection(serverHandshake);
    const encryptedExtensions = handshakeMessage(HandshakeType.ENCRYPTED_EXTENSIONS, vector16(new Uint8Array(0)));
    const finished = handshakeMessage(HandshakeType.FINISHED, finishedMac(serverHandshake, sha256(m, serverHello, encryptedExtensions)));
    this.send(this.write.seal(ContentType.HANDSHAKE, concatBytes([encryptedExtensions, finished])));

    const master = masterSecret(secret);
    const fullHash = sha256(m, serverHello, encryptedExtensions, finished);
    this.write.rekey(deriveSecret(master, "s ap traffic", fullHash));
    this.pending = {
      clientFinished: finishedMac(clientHandshake, fullHash),
      clientSecret: deriveSecret(master, "c ap traffic", fullHash),
      session: { identity, keyExchange: exchange.name },
    };
    this.state = "finished";
  }

  /** The first identity offered that this server knows, with its key. */
  private chooseKey(hello: ClientHello): { identity: string; index: number; key: Uint8Array } {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const names: string[] = [];
    for (const [index, bytes] of hello.psk!.identities.entries()) {
      let identity: string;
      try {
        identity = decoder.decode(bytes);
      } catch {
        continue;
      }
      const key = this.keys.get(identity);
      if (key) return { identity, index, key };
      names.push(quoted(identity));
    }
    throw new TlsAlert(Alert.UNKNOWN_PSK_IDENTITY, `unknown PSK identity ${names.join(", ") || "(not UTF-8)"}`);
  }

  private clientFinished(m: Uint8Array): void {
    const p = this.pending!;
    if (m.length !== 4 + HASH_LENGTH || !constantTimeEqual(m.subarray(4), p.clientFinished)) {
      throw new TlsAlert(Alert.DECRYPT_ERROR, "the client's Finished does not verify");
    }
    this.read!.rekey(p.clientSecret);
    this.pending = undefined;
    this.state = "open";
    this.events.established(p.session);
  }

  private keyUpdate(m: Uint8Array): void {
    if (m.length !== 5) throw new TlsAlert(Alert.DECODE_ERROR, "a KeyUpdate that is not 1 byte");
    const requested = m[4]!;
    if (requested > 1) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, `KeyUpdate request_update ${requested}`);
    this.read!.rekey(nextTrafficSecret(this.read!.secret));
    if (requested === 1) this.sendKeyUpdate();
  }

  /** Our KeyUpdate (update_not_requested), then our next key. */
  private sendKeyUpdate(): void {
    this.send(this.write!.seal(ContentType.HANDSHAKE, handshakeMessage(HandshakeType.KEY_UPDATE, Uint8Array.of(0))));
    this.write!.rekey(nextTrafficSecret(this.write!.secret));
  }
}
