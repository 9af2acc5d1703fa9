/**
 * The TLS 1.3 PSK server engine, driven in-process by a client of the tests' own
 * (helpers/tls13-psk-client.ts): the handshakes it completes, and each thing it must refuse,
 * with the alert RFC 8446 names for it.
 */
import { describe, expect, test } from "bun:test";
import { Alert, ContentType, Extension, Group, handshakeMessage, HandshakeType, TLS_AES_128_GCM_SHA256 } from "../../src/runtime/tls13/wire.ts";
import { buildClientHello, IDENTITY, KEY, plainRecord, PskClient } from "../helpers/tls13-psk-client.ts";

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

describe("handshakes the engine completes", () => {
  test("psk_dhe_ke with x25519: data both ways, in records of at most 2^14 bytes, then close_notify", () => {
    const c = new PskClient();
    c.handshake();
    expect(c.established).toEqual({ identity: IDENTITY, keyExchange: "psk_dhe_ke x25519" });
    const big = bytes(100_000);
    c.send(big, [7, 1000, 3]); // arriving in odd pieces
    expect(Buffer.concat(c.received)).toEqual(Buffer.from(big));
    c.server.writeData(big);
    expect(c.readAll().data).toEqual(big);
    c.feed(c.sealed(ContentType.ALERT, Uint8Array.of(1, Alert.CLOSE_NOTIFY)));
    expect(c.closed).toEqual({ why: undefined });
  });

  test("secp256r1 when it is the only share; psk_ke when the client allows only that", () => {
    const p256 = new PskClient();
    p256.handshake({ shares: ["p256"] });
    expect(p256.established?.keyExchange).toBe("psk_dhe_ke secp256r1");
    const ke = new PskClient();
    ke.handshake({ modes: [0], shares: [] });
    expect(ke.established?.keyExchange).toBe("psk_ke");
  });

  test("the first known identity is chosen; an empty session id gets no ChangeCipherSpec", () => {
    const c = new PskClient(new Map([["bob", KEY]]));
    c.handshake({ identities: ["mallory", "bob"], sessionId: new Uint8Array(0) });
    expect(c.established?.identity).toBe("bob");
  });

  test("a ClientHello and a Finished cut into 1-byte pieces", () => {
    const c = new PskClient();
    c.handshake({}, true, [1]);
    expect(c.established).not.toBeUndefined();
  });

  test("KeyUpdate: the client's (with update_requested, answered), and the server's own every recordsPerKey records", () => {
    const c = new PskClient(undefined, 3);
    c.handshake();
    c.keyUpdate(true);
    c.send(bytes(10));
    expect(c.received.length).toBe(1);
    c.server.writeData(bytes(5 * 16384 + 1)); // 6 records: a KeyUpdate before the fourth
    const got = c.readAll();
    expect(got.events).toEqual(["keyupdate 0", "keyupdate 0"]);
    expect(got.data).toEqual(bytes(5 * 16384 + 1));
  });
});

describe("what it refuses, with the alert", () => {
  const refused = (o: Parameters<PskClient["handshake"]>[0], alert: number, why: RegExp, keys?: Map<string, Uint8Array>) => {
    const c = new PskClient(keys);
    c.handshake(o, false);
    expect(c.established).toBeUndefined();
    expect(c.closed?.why).toMatch(why);
    expect(c.plainAlert()).toBe(alert);
  };
  test("a wrong key: decrypt_error", () => refused({ key: new Uint8Array(32).fill(9) }, Alert.DECRYPT_ERROR, /wrong key for PSK identity 'alice'/));
  test("an unknown identity: unknown_psk_identity", () => refused({ identities: ["mallory"] }, Alert.UNKNOWN_PSK_IDENTITY, /unknown PSK identity 'mallory'/));
  test("an identity with a line break in it is named escaped, for the log", () =>
    refused({ identities: ["evil\nFAKE LOG LINE"] }, Alert.UNKNOWN_PSK_IDENTITY, /^unknown PSK identity 'evil\\x0aFAKE LOG LINE'$/));
  test("TLS 1.2 only: protocol_version", () => refused({ versions: [0x0303] }, Alert.PROTOCOL_VERSION, /does not offer TLS 1.3/));
  test("no TLS_AES_128_GCM_SHA256: handshake_failure", () => refused({ suites: [0x1302] }, Alert.HANDSHAKE_FAILURE, /TLS_AES_128_GCM_SHA256/));
  test("no pre-shared key (a certificate client): handshake_failure", () => refused({ noPsk: true }, Alert.HANDSHAKE_FAILURE, /no pre-shared key/));
  test("0-RTT early data offered: handshake_failure", () => refused({ earlyData: true }, Alert.HANDSHAKE_FAILURE, /0-RTT/));
  test("a PSK without psk_key_exchange_modes: missing_extension", () => refused({ modes: null }, Alert.MISSING_EXTENSION, /psk_key_exchange_modes/));
  test("psk_dhe_ke with no share it takes (would need HelloRetryRequest): handshake_failure", () =>
    refused({ shares: [], modes: [1] }, Alert.HANDSHAKE_FAILURE, /HelloRetryRequest/));
  test("a share for a group supported_groups does not list: illegal_parameter", () =>
    refused({ groups: [Group.SECP256R1] }, Alert.ILLEGAL_PARAMETER, /supported_groups does not list/));
  test("an x25519 share of low order (all-zero secret): illegal_parameter", () =>
    refused({ shareOverride: new Map([[Group.X25519, new Uint8Array(32)]]) }, Alert.ILLEGAL_PARAMETER, /low order/));
  test("a secp256r1 share off the curve: illegal_parameter", () => {
    const bad = new Uint8Array(65).fill(7);
    bad[0] = 4;
    refused({ shares: ["p256"], shareOverride: new Map([[Group.SECP256R1, bad]]) }, Alert.ILLEGAL_PARAMETER, /not on the curve/);
  });
  test("an extension twice: illegal_parameter", () =>
    refused({ extra: [[0, new Uint8Array(0)], [0, new Uint8Array(0)]] }, Alert.ILLEGAL_PARAMETER, /appears twice/));
  test("an extension with bytes left over: decode_error", () =>
    refused({ extra: [[Extension.EARLY_DATA, Uint8Array.of(0)]] }, Alert.DECODE_ERROR, /left over/));

  test("pre_shared_key not last: illegal_parameter", () => {
    const c = new PskClient();
    const { message } = buildClientHello();
    // Moves a server_name-like extension after pre_shared_key: append one and fix the lengths.
    const extra = Uint8Array.of(0xff, 0x01, 0, 0);
    const fixed = new Uint8Array([...message, ...extra]);
    const length = message.length - 4 + extra.length;
    fixed.set([length >> 16, (length >> 8) & 255, length & 255], 1);
    const extLengthAt = 4 + 2 + 32 + 1 + 32 + 2 + 2 + 2; // header, version, random, session id, suites, compression
    const extLength = ((fixed[extLengthAt]! << 8) | fixed[extLengthAt + 1]!) + extra.length;
    fixed.set([extLength >> 8, extLength & 255], extLengthAt);
    c.feed(plainRecord(ContentType.HANDSHAKE, fixed));
    expect(c.closed?.why).toMatch(/not the last extension/);
    expect(c.plainAlert()).toBe(Alert.ILLEGAL_PARAMETER);
  });

  test("a ClientHello followed by more handshake bytes in its record: unexpected_message", () => {
    const c = new PskClient();
    const { message } = buildClientHello();
    c.feed(plainRecord(ContentType.HANDSHAKE, new Uint8Array([...message, 1, 0, 0, 0])));
    expect(c.closed?.why).toMatch(/more handshake data/);
  });

  test("application data before the client's Finished: unexpected_message", () => {
    const c = new PskClient();
    c.handshake({}, false);
    c.feed(c.sealed(ContentType.APPLICATION_DATA, bytes(10)));
    expect(c.closed?.why).toMatch(/before the handshake ended/);
    expect(c.received).toEqual([]);
  });

  test("a wrong client Finished: decrypt_error, and no data is taken", () => {
    const c = new PskClient();
    c.handshake({}, false);
    c.finish([], handshakeMessage(HandshakeType.FINISHED, new Uint8Array(32)));
    expect(c.established).toBeUndefined();
    expect(c.closed?.why).toMatch(/Finished does not verify/);
  });

  test("a second ClientHello once established (renegotiation): unexpected_message", () => {
    const c = new PskClient();
    c.handshake();
    c.feed(c.sealed(ContentType.HANDSHAKE, buildClientHello().message));
    expect(c.closed?.why).toMatch(/no place/);
    expect(c.readAll().events).toEqual([`alert ${Alert.UNEXPECTED_MESSAGE}`]);
  });

  test("a ChangeCipherSpec once established, or a second one: unexpected_message", () => {
    const late = new PskClient();
    late.handshake();
    late.feed(plainRecord(ContentType.CHANGE_CIPHER_SPEC, Uint8Array.of(1)));
    expect(late.closed?.why).toMatch(/ChangeCipherSpec out of place/);
    const twice = new PskClient();
    twice.handshake({}, false);
    twice.feed(plainRecord(ContentType.CHANGE_CIPHER_SPEC, Uint8Array.of(1)));
    twice.finish();
    expect(twice.closed?.why).toMatch(/ChangeCipherSpec out of place/);
  });

  test("a record over 2^14+256 bytes: record_overflow; a changed record: bad_record_mac", () => {
    const big = new PskClient();
    big.handshake();
    big.feed(Uint8Array.of(ContentType.APPLICATION_DATA, 3, 3, 0x41, 0x01));
    expect(big.closed?.why).toMatch(/record of 16641 bytes/);
    const changed = new PskClient();
    changed.handshake();
    const sealed = changed.sealed(ContentType.APPLICATION_DATA, bytes(100));
    sealed[50]! ^= 0x80;
    changed.feed(sealed);
    expect(changed.closed?.why).toMatch(/does not verify/);
    expect(changed.received).toEqual([]);
  });

  test("a KeyUpdate with request_update 2: illegal_parameter", () => {
    const c = new PskClient();
    c.handshake();
    c.feed(c.sealed(ContentType.HANDSHAKE, handshakeMessage(HandshakeType.KEY_UPDATE, Uint8Array.of(2))));
    expect(c.closed?.why).toMatch(/request_update 2/);
  });

  test("a fatal alert from the client ends the session; nothing is taken after it", () => {
    const c = new PskClient();
    c.handshake();
    c.feed(c.sealed(ContentType.ALERT, Uint8Array.of(2, Alert.INTERNAL_ERROR)));
    expect(c.closed?.why).toBe("the client sent TLS alert 80");
    c.send(bytes(10));
    expect(c.received).toEqual([]);
  });

  test("data cannot be sent before the handshake ends", () => {
    const c = new PskClient();
    c.handshake({}, false);
    expect(() => c.server.writeData(bytes(1))).toThrow(/cannot send data/);
    expect(TLS_AES_128_GCM_SHA256).toBe(0x1301);
  });
});
