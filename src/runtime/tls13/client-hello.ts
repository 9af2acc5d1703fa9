/**
 * A ClientHello (RFC 8446 §4.1.2) read strictly: every vector within its bounds, every extension
 * read to its end and present once, pre_shared_key last, compression "null" only. What the server
 * decides from it (versions, suites, modes, shares) is psk-server.ts's business.
 */
import { Alert, Extension, Fields, HandshakeType, TlsAlert } from "./wire.ts";

export interface OfferedPsk {
  identities: Uint8Array[];
  binders: Uint8Array[];
  /** Where the binders start in the message: the truncated ClientHello the binders cover ends here. */
  bindersOffset: number;
}

export interface ClientHello {
  sessionId: Uint8Array;
  cipherSuites: number[];
  /** supported_versions; undefined when absent (a client of TLS 1.2 or older). */
  versions: number[] | undefined;
  groups: number[] | undefined;
  /** key_share: group → the client's public value. */
  keyShares: Map<number, Uint8Array> | undefined;
  pskModes: number[] | undefined;
  earlyData: boolean;
  psk: OfferedPsk | undefined;
}

const listOf16 = (bytes: Uint8Array, what: string): number[] => {
  if (bytes.length % 2 !== 0) throw new TlsAlert(Alert.DECODE_ERROR, `${what}: odd length`);
  const f = new Fields(bytes);
  const out: number[] = [];
  while (!f.done) out.push(f.u16());
  return out;
};

/** `message` is the whole handshake message, its 4-byte header included. */
export function parseClientHello(message: Uint8Array): ClientHello {
  const f = new Fields(message);
  if (f.u8() !== HandshakeType.CLIENT_HELLO) throw new TlsAlert(Alert.UNEXPECTED_MESSAGE, "expected a ClientHello");
  const length = f.u16() * 256 + f.u8();
  if (length !== message.length - 4) throw new TlsAlert(Alert.DECODE_ERROR, "ClientHello length does not match its message");
  f.u16(); // legacy_version: ignored when supported_versions is there, and without it we refuse
  f.bytesOf(32); // random
  const sessionId = f.vector(1, 0, 32, "legacy_session_id");
  const cipherSuites = listOf16(f.vector(2, 2, 0xfffe, "cipher_suites"), "cipher_suites");
  const compression = f.vector(1, 1, 255, "legacy_compression_methods");
  if (compression.length !== 1 || compression[0] !== 0) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "TLS 1.3 allows only the null compression method");
  const hello: ClientHello = { sessionId, cipherSuites, versions: undefined, groups: undefined, keyShares: undefined, pskModes: undefined, earlyData: false, psk: undefined };
  if (f.done) return hello; // no extensions at all: a TLS 1.2 (or older) client
  const extensions = new Fields(f.vector(2, 0, 0xffff, "extensions"));
  f.end("ClientHello");
  const seen = new Set<number>();
  while (!extensions.done) {
    const type = extensions.u16();
    const data = extensions.vector(2, 0, 0xffff, `extension ${type}`);
    if (seen.has(type)) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, `extension ${type} appears twice`);
    if (hello.psk) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, "pre_shared_key is not the last extension");
    seen.add(type);
    const e = new Fields(data);
    switch (type) {
      case Extension.SUPPORTED_VERSIONS:
        hello.versions = listOf16(e.vector(1, 2, 254, "supported_versions"), "supported_versions");
        break;
      case Extension.SUPPORTED_GROUPS:
        hello.groups = listOf16(e.vector(2, 2, 0xffff, "supported_groups"), "supported_groups");
        break;
      case Extension.KEY_SHARE: {
        const shares = new Fields(e.vector(2, 0, 0xffff, "key_share"));
        hello.keyShares = new Map();
        while (!shares.done) {
          const group = shares.u16();
          const share = shares.vector(2, 1, 0xffff, "key_exchange");
          if (hello.keyShares.has(group)) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, `two key shares for group ${group}`);
          hello.keyShares.set(group, share);
        }
        break;
      }
      case Extension.PSK_KEY_EXCHANGE_MODES:
        hello.pskModes = [...e.vector(1, 1, 255, "psk_key_exchange_modes")];
        break;
      case Extension.EARLY_DATA:
        hello.earlyData = true; // empty in a ClientHello: e.end() checks it
        break;
      case Extension.PRE_SHARED_KEY: {
        const ids = new Fields(e.vector(2, 7, 0xffff, "identities"));
        const identities: Uint8Array[] = [];
        while (!ids.done) {
          identities.push(ids.vector(2, 1, 0xffff, "identity"));
          ids.u32(); // obfuscated_ticket_age: meaningless for an external PSK
        }
        const bindersOffset = data.byteOffset - message.byteOffset + e.offset;
        const list = new Fields(e.vector(2, 33, 0xffff, "binders"));
        const binders: Uint8Array[] = [];
        while (!list.done) binders.push(list.vector(1, 32, 255, "binder"));
        if (binders.length !== identities.length) throw new TlsAlert(Alert.ILLEGAL_PARAMETER, `${identities.length} PSK identities but ${binders.length} binders`);
        hello.psk = { identities, binders, bindersOffset };
        break;
      }
      default:
        continue; // not ours to read (server_name, signature_algorithms, ...)
    }
    e.end(`extension ${type}`);
  }
  return hello;
}
