/**
 * The TLS 1.3 PSK engine's parts against RFC 8448's traces: §3 (a full handshake, no PSK) for the
 * key schedule, and §4 (a resumed handshake: a PSK with its binder) for what a PSK server does:
 * the ClientHello read and its binder checked, x25519, the handshake and application secrets,
 * traffic keys, Finished, and record protection both ways, byte for byte. §4's PSK is a
 * resumption one ("res binder"); the engine takes external ones ("ext binder"), the only
 * difference being that label.
 */
import { expect, test } from "bun:test";
import { createPrivateKey } from "node:crypto";
import { parseClientHello } from "../../src/runtime/tls13/client-hello.ts";
import { x25519Exchange } from "../../src/runtime/tls13/key-exchange.ts";
import {
  binderKey, deriveSecret, earlySecret, finishedMac, handshakeSecret, hkdfExpandLabel, masterSecret, sha256, trafficKeys,
} from "../../src/runtime/tls13/key-schedule.ts";
import { RecordProtection } from "../../src/runtime/tls13/records.ts";
import { ContentType, Extension, Group } from "../../src/runtime/tls13/wire.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!, (h) => parseInt(h, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

// RFC 8448 §4, "Resumed 0-RTT Handshake".
const PSK = hex("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3");
const CLIENT_HELLO_RECORD = hex(`16 03 01 02 00 01 00 01 fc 03 03 1b
  c3 ce b6 bb e3 9c ff 93 83 55 b5 a5 0a db 6d b2 1b 7a 6a f6 49
  d7 b4 bc 41 9d 78 76 48 7d 95 00 00 06 13 01 13 03 13 02 01 00
  01 cd 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01
  00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02
  01 03 01 04 00 33 00 26 00 24 00 1d 00 20 e4 ff b6 8a c0 5f 8d
  96 c9 9d a2 66 98 34 6c 6b e1 64 82 ba dd da fe 05 1a 66 b4 f1
  8d 66 8f 0b 00 2a 00 00 00 2b 00 03 02 03 04 00 0d 00 20 00 1e
  04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02
  01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01
  00 15 00 57 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  00 00 00 00 00 00 00 00 29 00 dd 00 b8 00 b2 2c 03 5d 82 93 59
  ee 5f f7 af 4e c9 00 00 00 00 26 2a 64 94 dc 48 6d 2c 8a 34 cb
  33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be 78 5a bc
  55 cd 22 60 97 a3 a9 82 11 72 83 f8 2a 03 a1 43 ef d3 ff 5d d3
  6d 64 e8 61 be 7f d6 1d 28 27 db 27 9c ce 14 50 77 d4 54 a3 66
  4d 4e 6d a4 d2 9e e0 37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29
  51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d 8f 92 f2 28 bd a4 0d da 72
  14 70 f9 fb f2 97 b5 ae a6 17 64 6f ac 5c 03 27 2e 97 07 27 c6
  21 a7 91 41 ef 5f 7d e6 50 5e 5b fb c3 88 e9 33 43 69 40 93 93
  4a e4 d3 57 fa d6 aa cb 00 21 20 3a dd 4f b2 d8 fd f8 22 a0 ca
  3c f7 67 8e f5 e8 8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f
  9d`);
const CLIENT_HELLO = CLIENT_HELLO_RECORD.subarray(5);
const SERVER_HELLO = hex(`16 03 03 00 60 02 00 00 5c 03 03 3c
  cf d2 de c8 90 22 27 63 47 2a e8 13 67 77 c9 d7 35 87 77 bb 66
  e9 1e a5 12 24 95 f5 59 ea 2d 00 13 01 00 00 34 00 29 00 02 00
  00 00 33 00 24 00 1d 00 20 12 17 61 ee 42 c3 33 e1 b9 e7 7b 60
  dd 57 c2 05 3c d9 45 12 ab 47 f1 15 e8 6e ff 50 94 2c ea 31 00
  2b 00 02 03 04`).subarray(5);
const CLIENT_X25519_PUBLIC = hex("e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b");
const SERVER_X25519_PRIVATE = hex("de5b4476e7b490b2652d338acbf2948066f255f9440e23b98fc69835298dc107");
const SERVER_X25519_PUBLIC = hex("121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31");
const SERVER_FLIGHT_RECORD = hex(`17 03 03 00 61 dc 48 23 7b 4b 87 9f
  50 d0 d4 d2 62 ea 8b 47 16 eb 40 dd c1 eb 95 7e 11 12 6e 8a 71
  49 c2 d0 12 d3 7a 71 15 95 7e 64 ce 30 00 8b 9e 03 23 f2 c0 5a
  9c 1c 77 b4 f3 78 49 a6 95 ab 25 50 60 a3 3f ee 77 0c a9 5c b8
  48 6b fd 08 43 b8 70 24 86 5c a3 5c c4 1c 4e 51 5c 64 dc b1 36
  9f 98 63 5b c7 a5`);
const EARLY_DATA_RECORD = hex("17 03 03 00 17 ab 1d f4 20 e7 5c 45 7a 7c c5 d2 84 4f 76 d5 ae e4 b4 ed bf 04 9b e0");
const END_OF_EARLY_DATA_RECORD = hex("17 03 03 00 15 ac a6 fc 94 48 41 29 8d f9 95 93 72 5f 9b f9 75 44 29 b1 2f 09");
const CLIENT_FINISHED_RECORD = hex(`17 03 03 00 35 00 f8 b4 67 d1 4c f2
  2a 4b 3f 0b 6a e0 d8 e6 cc 8d 08 e0 db 35 15 ef 5c 2b df 19 22
  ea fb b7 00 09 96 47 16 d8 34 fb 70 c3 d2 a5 6c 5b 1f 5f 6b db
  a6 c3 33 cf`);
const CLIENT_DATA_RECORD = hex(`17 03 03 00 43 b1 ce bc e2 42 aa 20
  1b e9 ae 5e 1c b2 a9 aa 4b 33 d4 e8 66 af 1e db 06 89 19 23 77
  41 aa 03 1d 7a 74 d4 91 c9 9b 9d 4e 23 2b 74 20 6b c6 fb aa 04
  fe 78 be 44 a9 b4 f5 43 20 a1 7e b7 69 92 af ac 31 03`);
const SERVER_DATA_RECORD = hex(`17 03 03 00 43 27 5e 9f 20 ac ff 57
  bc 00 06 57 d3 86 7d f0 39 cc cf 79 04 78 84 cf 75 77 17 46 f7
  40 b5 a8 3f 46 2a 09 54 c3 58 13 93 a2 03 a2 5a 7d d1 41 41 ef
  1a 37 90 0c db 62 ff 62 de e1 ba 39 ab 25 90 cb f1 94`);
const CLIENT_ALERT_RECORD = hex("17 03 03 00 13 0f ac ce 32 46 bd fc 63 69 83 8d 6a 82 ae 6d e5 d4 22 dc");
const SERVER_ALERT_RECORD = hex("17 03 03 00 13 5b 18 af 44 4e 8e 1e ec 71 58 fb 62 d8 f2 57 7d 37 ba 5d");

const open = (p: RecordProtection, record: Uint8Array) => p.open(record.subarray(0, 5), record.subarray(5));
/** The 50 bytes 00 01 .. 31 both sides send in the trace. */
const APP_DATA = Uint8Array.from({ length: 50 }, (_, i) => i);

test("RFC 8448 §3: the key schedule of a handshake without a PSK (the early secret from zeros)", () => {
  const early = earlySecret(new Uint8Array(32));
  expect(toHex(early)).toBe("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");
  const hs = handshakeSecret(early, hex("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d"));
  expect(toHex(hs)).toBe("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac");
  const helloHash = hex("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8");
  const clientHs = deriveSecret(hs, "c hs traffic", helloHash);
  const serverHs = deriveSecret(hs, "s hs traffic", helloHash);
  expect(toHex(clientHs)).toBe("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
  expect(toHex(serverHs)).toBe("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
  const master = masterSecret(hs);
  expect(toHex(master)).toBe("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919");
  const fullHash = hex("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13");
  expect(toHex(deriveSecret(master, "c ap traffic", fullHash))).toBe("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
  expect(toHex(deriveSecret(master, "s ap traffic", fullHash))).toBe("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  const keys = trafficKeys(serverHs);
  expect([toHex(keys.key), toHex(keys.iv)]).toEqual(["3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"]);
  const clientKeys = trafficKeys(clientHs);
  expect([toHex(clientKeys.key), toHex(clientKeys.iv)]).toEqual(["dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f"]);
  // The resumption secret §4 starts from: HKDF-Expand-Label(res master, "resumption", nonce 0000).
  const resumptionMaster = hex("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c");
  expect(hkdfExpandLabel(resumptionMaster, "resumption", hex("0000"), 32)).toEqual(PSK);
});

test("RFC 8448 §4: the ClientHello is read field by field, and its PSK binder verifies", () => {
  const hello = parseClientHello(CLIENT_HELLO);
  expect(hello.cipherSuites).toEqual([0x1301, 0x1303, 0x1302]);
  expect(hello.versions).toEqual([0x0304]);
  expect(hello.groups).toEqual([Group.X25519, Group.SECP256R1, 0x18, 0x19, 0x100, 0x101, 0x102, 0x103, 0x104]);
  expect(hello.keyShares).toEqual(new Map([[Group.X25519, CLIENT_X25519_PUBLIC]]));
  expect(hello.pskModes).toEqual([1]);
  expect(hello.earlyData).toBe(true);
  expect(hello.sessionId.length).toBe(0);
  const psk = hello.psk!;
  expect(psk.identities.length).toBe(1);
  expect(psk.identities[0]!.length).toBe(0xb2);
  expect(toHex(psk.binders[0]!)).toBe("3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d");
  // The truncated ClientHello ends where the binders start.
  expect(psk.bindersOffset).toBe(CLIENT_HELLO.length - 2 - 1 - 32);
  const truncatedHash = sha256(CLIENT_HELLO.subarray(0, psk.bindersOffset));
  expect(toHex(truncatedHash)).toBe("63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14");

  const early = earlySecret(PSK);
  expect(toHex(early)).toBe("9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c");
  const key = binderKey(early, "res");
  expect(toHex(key)).toBe("69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256");
  expect(finishedMac(key, truncatedHash)).toEqual(psk.binders[0]!);
  // The engine's label, for an external PSK, gives another binder: the label matters.
  expect(finishedMac(binderKey(early, "ext"), truncatedHash)).not.toEqual(psk.binders[0]!);
});

test("RFC 8448 §4: x25519 with the server's key gives the trace's shared secret and key share", () => {
  const privateKey = createPrivateKey({
    key: { kty: "OKP", crv: "X25519", d: Buffer.from(SERVER_X25519_PRIVATE).toString("base64url"), x: Buffer.from(SERVER_X25519_PUBLIC).toString("base64url") },
    format: "jwk",
  });
  const { shared, share } = x25519Exchange(CLIENT_X25519_PUBLIC, privateKey);
  expect(toHex(shared)).toBe("f44194756ff9ec9d25180635d66ea6824c6ab3bf179977be37f723570e7ccb2e");
  // The ServerHello's key_share extension holds exactly this entry.
  const at = SERVER_HELLO.findIndex((_, i) => SERVER_HELLO[i] === 0 && SERVER_HELLO[i + 1] === Extension.KEY_SHARE);
  expect(SERVER_HELLO.subarray(at + 4, at + 4 + share.length) as Uint8Array).toEqual(share);
});

test("RFC 8448 §4: handshake secrets, the server's flight sealed byte for byte, both Finished MACs", () => {
  const hs = handshakeSecret(earlySecret(PSK), hex("f44194756ff9ec9d25180635d66ea6824c6ab3bf179977be37f723570e7ccb2e"));
  expect(toHex(hs)).toBe("005cb112fd8eb4ccc623bb88a07c64b3ede1605363fc7d0df8c7ce4ff0fb4ae6");
  const helloHash = sha256(CLIENT_HELLO, SERVER_HELLO);
  expect(toHex(helloHash)).toBe("f736cb34fe25e701551bee6fd24c1cc7102a7daf9405cb15d97aafe16f757d03");
  const clientHs = deriveSecret(hs, "c hs traffic", helloHash);
  const serverHs = deriveSecret(hs, "s hs traffic", helloHash);
  expect(toHex(clientHs)).toBe("2faac08f851d35fea3604fcb4de82dc62c9b164a70974d0462e27f1ab278700f");
  expect(toHex(serverHs)).toBe("fe927ae271312e8bf0275b581c54eef020450dc4ecffaa05a1a35d27518e7803");
  const keys = trafficKeys(serverHs);
  expect([toHex(keys.key), toHex(keys.iv)]).toEqual(["27c6bdc0a3dcea39a47326d79bc9e4ee", "9569ecdd4d0536705e9ef725"]);

  // The server's EncryptedExtensions and Finished: opened, checked, and sealed again to the same bytes.
  const flight = open(new RecordProtection(serverHs), SERVER_FLIGHT_RECORD);
  expect(flight.type).toBe(ContentType.HANDSHAKE);
  const encryptedExtensions = flight.content.subarray(0, 4 + flight.content[3]!);
  const serverFinished = flight.content.subarray(encryptedExtensions.length);
  expect(serverFinished.subarray(0, 4)).toEqual(hex("14000020"));
  expect(finishedMac(serverHs, sha256(CLIENT_HELLO, SERVER_HELLO, encryptedExtensions))).toEqual(serverFinished.subarray(4));
  expect(new RecordProtection(serverHs).seal(ContentType.HANDSHAKE, flight.content)).toEqual(SERVER_FLIGHT_RECORD);
  const serverFinishedHash = sha256(CLIENT_HELLO, SERVER_HELLO, encryptedExtensions, serverFinished);
  expect(toHex(serverFinishedHash)).toBe("b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3");

  // The client's early data and EndOfEarlyData (records 0 and 1 under its early key: the engine
  // refuses 0-RTT, the key schedule agrees all the same), then its Finished under its handshake key.
  const clientEarly = deriveSecret(earlySecret(PSK), "c e traffic", sha256(CLIENT_HELLO));
  expect(toHex(clientEarly)).toBe("3fbbe6a60deb66c30a32795aba0eff7eaa10105586e7be5c09678d63b6caab62");
  const early = new RecordProtection(clientEarly);
  expect(open(early, EARLY_DATA_RECORD)).toEqual({ type: ContentType.APPLICATION_DATA, content: hex("414243444546") });
  const endOfEarlyData = open(early, END_OF_EARLY_DATA_RECORD);
  expect(endOfEarlyData).toEqual({ type: ContentType.HANDSHAKE, content: hex("05000000") });
  const clientFinished = open(new RecordProtection(clientHs), CLIENT_FINISHED_RECORD);
  expect(clientFinished.type).toBe(ContentType.HANDSHAKE);
  expect(clientFinished.content.subarray(0, 4)).toEqual(hex("14000020"));
  const transcript = sha256(CLIENT_HELLO, SERVER_HELLO, encryptedExtensions, serverFinished, endOfEarlyData.content);
  expect(finishedMac(clientHs, transcript)).toEqual(clientFinished.content.subarray(4));
});

test("RFC 8448 §4: application secrets and keys; data and close_notify both ways, sealed byte for byte", () => {
  const hs = handshakeSecret(earlySecret(PSK), hex("f44194756ff9ec9d25180635d66ea6824c6ab3bf179977be37f723570e7ccb2e"));
  const fullHash = hex("b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3");
  const master = masterSecret(hs);
  const clientAp = deriveSecret(master, "c ap traffic", fullHash);
  const serverAp = deriveSecret(master, "s ap traffic", fullHash);
  expect(toHex(clientAp)).toBe("2abbf2b8e381d23dbebe1dd2a7d16a8bf484cb4950d23fb7fb7fa8547062d9a1");
  expect(toHex(serverAp)).toBe("cc21f1bf8feb7dd5fa505bd9c4b468a9984d554a993dc49e6d285598fb672691");
  const serverKeys = trafficKeys(serverAp);
  expect([toHex(serverKeys.key), toHex(serverKeys.iv)]).toEqual(["e857c690a34c5a9129d833619684f95e", "0685d6b561aab9ef1013faf9"]);
  const clientKeys = trafficKeys(clientAp);
  expect([toHex(clientKeys.key), toHex(clientKeys.iv)]).toEqual(["3cf122f301c6358ca7989553250efd72", "ab1aec26aa78b8fc1176b9ac"]);

  const fromClient = new RecordProtection(clientAp);
  expect(open(fromClient, CLIENT_DATA_RECORD)).toEqual({ type: ContentType.APPLICATION_DATA, content: APP_DATA });
  expect(open(fromClient, CLIENT_ALERT_RECORD)).toEqual({ type: ContentType.ALERT, content: hex("0100") });
  const toClient = new RecordProtection(serverAp);
  expect(toClient.seal(ContentType.APPLICATION_DATA, APP_DATA)).toEqual(SERVER_DATA_RECORD);
  expect(toClient.seal(ContentType.ALERT, hex("0100"))).toEqual(SERVER_ALERT_RECORD);
  // The same record at the wrong sequence number, or with a bit flipped, does not verify.
  expect(() => open(new RecordProtection(clientAp), CLIENT_ALERT_RECORD)).toThrow("does not verify");
  const flipped = CLIENT_DATA_RECORD.slice();
  flipped[20]! ^= 1;
  expect(() => open(new RecordProtection(clientAp), flipped)).toThrow("does not verify");
});
