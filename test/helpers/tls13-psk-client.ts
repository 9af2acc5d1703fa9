/**
 * A TLS 1.3 PSK client for tests of the server engine (src/runtime/tls13/psk-server.ts), driving
 * it in-process: ClientHellos built to order (right, or wrong in one chosen way), the server's
 * flight read and its Finished checked, then records both ways. Its key schedule is the engine's
 * own, which RFC 8448's traces check (tls13-vectors.test.ts); real clients (GnuTLS, OpenSSL)
 * check the rest.
 */
import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes } from "node:crypto";
import { concatBytes } from "../../src/util/bytes.ts";
import { Tls13PskServer } from "../../src/runtime/tls13/psk-server.ts";
import {
  binderKey, deriveSecret, earlySecret, finishedMac, handshakeSecret, masterSecret, nextTrafficSecret, sha256,
} from "../../src/runtime/tls13/key-schedule.ts";
import { RecordProtection } from "../../src/runtime/tls13/records.ts";
import { ContentType, Extension, Fields, Group, handshakeMessage, HandshakeType, u16, vector16 } from "../../src/runtime/tls13/wire.ts";

export const IDENTITY = "alice";
export const KEY = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);

export interface HelloOptions {
  identities?: string[];
  /** The key the binders are made with (a wrong one for a wrong-key client). */
  key?: Uint8Array;
  suites?: number[];
  versions?: number[];
  groups?: number[];
  /** Which key shares to send. */
  shares?: ("x25519" | "p256")[];
  /** A share's bytes replaced (a bad point). */
  shareOverride?: Map<number, Uint8Array>;
  modes?: number[] | null;
  earlyData?: boolean;
  sessionId?: Uint8Array;
  /** Extensions put before pre_shared_key, as they are. */
  extra?: [number, Uint8Array][];
  /** pre_shared_key left out. */
  noPsk?: boolean;
}

const record = (type: number, body: Uint8Array) => concatBytes([Uint8Array.of(type, 3, 3), u16(body.length), body]);

/** A ClientHello message, and what the client keeps to finish the handshake. */
export function buildClientHello(o: HelloOptions = {}) {
  const x25519 = generateKeyPairSync("x25519");
  const p256 = createECDH("prime256v1");
  const p256Public = new Uint8Array(p256.generateKeys());
  const x25519Public = new Uint8Array(Buffer.from(x25519.publicKey.export({ format: "jwk" }).x!, "base64url"));
  const shares = (o.shares ?? ["x25519"]).map((name) => {
    const group = name === "x25519" ? Group.X25519 : Group.SECP256R1;
    const bytes = o.shareOverride?.get(group) ?? (name === "x25519" ? x25519Public : p256Public);
    return concatBytes([u16(group), vector16(bytes)]);
  });
  const ext = (type: number, body: Uint8Array) => concatBytes([u16(type), vector16(body)]);
  const list16 = (values: number[]) => concatBytes(values.map(u16));
  const extensions = [
    ext(Extension.SUPPORTED_VERSIONS, concatBytes([Uint8Array.of((o.versions ?? [0x0304]).length * 2), list16(o.versions ?? [0x0304])])),
    ext(Extension.SUPPORTED_GROUPS, vector16(list16(o.groups ?? [Group.X25519, Group.SECP256R1]))),
    ext(Extension.KEY_SHARE, vector16(concatBytes(shares))),
    ...(o.modes === null ? [] : [ext(Extension.PSK_KEY_EXCHANGE_MODES, concatBytes([Uint8Array.of((o.modes ?? [1]).length), Uint8Array.from(o.modes ?? [1])]))]),
    ...(o.earlyData ? [ext(Extension.EARLY_DATA, new Uint8Array(0))] : []),
    ...(o.extra ?? []).map(([type, body]) => ext(type, body)),
  ];
  const sessionId = o.sessionId ?? new Uint8Array(randomBytes(32));
  const identities = (o.identities ?? [IDENTITY]).map((name) => new TextEncoder().encode(name));
  const key = o.key ?? KEY;
  const random = new Uint8Array(randomBytes(32));
  const body = (pskExtension: Uint8Array) => {
    const exts = concatBytes([...extensions, pskExtension]);
    const hello = concatBytes([
      u16(0x0303), random, Uint8Array.of(sessionId.length), sessionId,
      vector16(list16(o.suites ?? [0x1301])), Uint8Array.of(1, 0), vector16(exts),
    ]);
    return handshakeMessage(HandshakeType.CLIENT_HELLO, hello);
  };
  let message: Uint8Array;
  const early = earlySecret(key);
  if (o.noPsk) message = body(new Uint8Array(0));
  else {
    const ids = concatBytes(identities.map((id) => concatBytes([vector16(id), Uint8Array.of(0, 0, 0, 0)])));
    const pskExtension = (binders: Uint8Array[]) =>
      ext(Extension.PRE_SHARED_KEY, concatBytes([vector16(ids), vector16(concatBytes(binders.map((b) => concatBytes([Uint8Array.of(b.length), b]))))]));
    // The binders cover the hello up to themselves: made with placeholders first, then put in.
    const placeholder = body(pskExtension(identities.map(() => new Uint8Array(32))));
    const truncated = placeholder.subarray(0, placeholder.length - 2 - identities.length * 33);
    const binder = finishedMac(binderKey(early, "ext"), sha256(truncated));
    message = body(pskExtension(identities.map(() => binder)));
  }
  return { message, early, x25519: x25519.privateKey, p256 };
}

/** Drives one server engine as a client would. */
export class PskClient {
  readonly server: Tls13PskServer;
  /** What the server sent, not yet read. */
  private inbox: Uint8Array = new Uint8Array(0);
  readonly received: Uint8Array[] = [];
  established: { identity: string; keyExchange: string } | undefined;
  closed: { why: string | undefined } | undefined;
  private read: RecordProtection | undefined;
  private write: RecordProtection | undefined;
  private appSecrets: { client: Uint8Array; server: Uint8Array } | undefined;
  private clientFinished: Uint8Array | undefined;
  private clientHandshake: Uint8Array | undefined;

  constructor(keys: ReadonlyMap<string, Uint8Array> = new Map([[IDENTITY, KEY]]), recordsPerKey?: number) {
    this.server = new Tls13PskServer(keys, (b) => (this.inbox = concatBytes([this.inbox, b])), {
      established: (s) => (this.established = s),
      data: (b) => this.received.push(b),
      closed: (why) => {
        if (this.closed) throw new Error("closed twice");
        this.closed = { why };
      },
    }, recordsPerKey);
  }

  /** Bytes to the server, optionally cut into pieces of these sizes in turn. */
  feed(bytes: Uint8Array, cuts: number[] = []): void {
    let at = 0;
    for (let i = 0; at < bytes.length; i++) {
      const n = cuts.length ? Math.max(1, cuts[i % cuts.length]!) : bytes.length;
      this.server.receive(bytes.slice(at, at + n));
      at += n;
    }
  }

  /** Server records waiting: [outer type, body]. */
  private records(): [number, Uint8Array, Uint8Array][] {
    const out: [number, Uint8Array, Uint8Array][] = [];
    while (this.inbox.length >= 5) {
      const length = (this.inbox[3]! << 8) | this.inbox[4]!;
      if (this.inbox.length < 5 + length) break;
      out.push([this.inbox[0]!, this.inbox.subarray(0, 5), this.inbox.subarray(5, 5 + length)]);
      this.inbox = this.inbox.subarray(5 + length);
    }
    return out;
  }

  /** The alert the server sent in the clear (before keys), if any. */
  plainAlert(): number | undefined {
    const alert = this.records().find(([type]) => type === ContentType.ALERT);
    return alert?.[2][1];
  }

  /** Sends a ClientHello; with `finish`, reads the server's flight and answers with Finished. */
  handshake(o: HelloOptions = {}, finish = true, cuts: number[] = []): void {
    const hello = buildClientHello(o);
    this.feed(record(ContentType.HANDSHAKE, hello.message), cuts);
    if (this.closed) return;
    const records = this.records();
    const serverHello = records.find(([type]) => type === ContentType.HANDSHAKE)![2];
    const sh = new Fields(serverHello.subarray(4));
    sh.u16();
    sh.bytesOf(32);
    sh.vector(1, 0, 32, "session id");
    if (sh.u16() !== 0x1301) throw new Error("server chose another suite");
    sh.u8();
    const exts = new Fields(sh.vector(2, 0, 0xffff, "extensions"));
    let shared: Uint8Array | undefined;
    while (!exts.done) {
      const type = exts.u16();
      const data = new Fields(exts.vector(2, 0, 0xffff, "ext"));
      if (type !== Extension.KEY_SHARE) continue;
      const group = data.u16();
      const peer = data.vector(2, 1, 0xffff, "share");
      shared = group === Group.X25519
        ? new Uint8Array(diffieHellman({ privateKey: hello.x25519, publicKey: createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peer).toString("base64url") }, format: "jwk" }) }))
        : new Uint8Array(hello.p256.computeSecret(peer));
    }
    const secret = handshakeSecret(hello.early, shared);
    const helloHash = sha256(hello.message, serverHello);
    this.clientHandshake = deriveSecret(secret, "c hs traffic", helloHash);
    const serverHandshake = new RecordProtection(deriveSecret(secret, "s hs traffic", helloHash));
    const flight = records.find(([type]) => type === ContentType.APPLICATION_DATA)!;
    const { content } = serverHandshake.open(flight[1], flight[2]);
    const ee = content.subarray(0, 4 + content[3]!);
    const finished = content.subarray(ee.length);
    if (!Buffer.from(finished.subarray(4)).equals(finishedMac(serverHandshake.secret, sha256(hello.message, serverHello, ee)))) throw new Error("server Finished does not verify");
    const fullHash = sha256(hello.message, serverHello, ee, finished);
    const master = masterSecret(secret);
    this.appSecrets = { client: deriveSecret(master, "c ap traffic", fullHash), server: deriveSecret(master, "s ap traffic", fullHash) };
    this.clientFinished = handshakeMessage(HandshakeType.FINISHED, finishedMac(this.clientHandshake, fullHash));
    this.read = new RecordProtection(this.appSecrets.server);
    if (finish) this.finish(cuts);
  }

  /** Sends the client's Finished (as given, or right), after a ChangeCipherSpec if asked. */
  finish(cuts: number[] = [], finished = this.clientFinished!, changeCipherSpec = true): void {
    const handshakeKeys = new RecordProtection(this.clientHandshake!);
    const bytes = concatBytes([...(changeCipherSpec ? [record(ContentType.CHANGE_CIPHER_SPEC, Uint8Array.of(1))] : []), handshakeKeys.seal(ContentType.HANDSHAKE, finished)]);
    this.feed(bytes, cuts);
    this.write = new RecordProtection(this.appSecrets!.client);
  }

  /** Records of `type` under the client's current key (handshake keys before `finish`). */
  sealed(type: number, content: Uint8Array): Uint8Array {
    return (this.write ?? new RecordProtection(this.clientHandshake!)).seal(type, content);
  }

  send(plain: Uint8Array, cuts: number[] = []): void {
    this.feed(this.write!.seal(ContentType.APPLICATION_DATA, plain), cuts);
  }

  /** Our KeyUpdate, then our next key. */
  keyUpdate(requested: boolean): void {
    this.feed(this.write!.seal(ContentType.HANDSHAKE, handshakeMessage(HandshakeType.KEY_UPDATE, Uint8Array.of(requested ? 1 : 0))));
    this.write!.rekey(nextTrafficSecret(this.write!.secret));
  }

  /** The server's protected records opened: data joined, and what else came ("keyupdate", "alert N"). */
  readAll(): { data: Uint8Array; events: string[] } {
    const data: Uint8Array[] = [];
    const events: string[] = [];
    for (const [type, header, body] of this.records()) {
      if (type !== ContentType.APPLICATION_DATA) {
        events.push(`plain ${type}`);
        continue;
      }
      const inner = this.read!.open(header, body);
      if (inner.type === ContentType.APPLICATION_DATA) data.push(inner.content);
      else if (inner.type === ContentType.ALERT) events.push(`alert ${inner.content[1]}`);
      else if (inner.type === ContentType.HANDSHAKE && inner.content[0] === HandshakeType.KEY_UPDATE) {
        events.push(`keyupdate ${inner.content[4]}`);
        this.read!.rekey(nextTrafficSecret(this.read!.secret));
      } else events.push(`type ${inner.type}`);
    }
    return { data: concatBytes(data), events };
  }
}

export { record as plainRecord };
