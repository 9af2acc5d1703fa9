/**
 * The TLS 1.3 PSK engine against mangled input, from a printed seed (FUZZ_SEED=N replays it):
 * ClientHellos with bits flipped, bytes changed, inserted, cut or repeated, length fields off by
 * a little, fed to the parser alone and to whole server engines in random pieces; and protected
 * records mangled once a session is up. The parser must read or refuse with an alert, never
 * throw anything else; an engine must never let an error escape, close at most once, send an
 * alert when it refuses, answer only a ClientHello its binder covers unchanged, and never deliver
 * a byte from a record that was changed.
 */
import { expect, test } from "bun:test";
import { parseClientHello } from "../../src/runtime/tls13/client-hello.ts";
import { Tls13PskServer } from "../../src/runtime/tls13/psk-server.ts";
import { ContentType, TlsAlert } from "../../src/runtime/tls13/wire.ts";
import { seededRandom } from "../helpers/data.ts";
import { buildClientHello, IDENTITY, KEY, plainRecord, PskClient, type HelloOptions } from "../helpers/tls13-psk-client.ts";

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const rounds = Number(process.env.FUZZ_ROUNDS ?? 1);
console.log(`tls13 fuzz: seed ${seed} (replay with FUZZ_SEED=${seed})`);
const random = seededRandom(seed);
const below = (n: number) => Math.floor(random() * n);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const VARIANTS: HelloOptions[] = [
  {}, { shares: ["p256"] }, { shares: ["x25519", "p256"] }, { modes: [0], shares: [] }, { identities: ["x", IDENTITY] },
  { sessionId: new Uint8Array(0) }, { extra: [[0, Uint8Array.of(0, 5, 0, 0, 2, 0x61, 0x62)], [0xff01, Uint8Array.of(0)]] },
];

/** One to four changes of the kinds a broken or hostile peer makes. */
function mangle(input: Uint8Array): Uint8Array {
  let b = input.slice();
  for (let n = 1 + below(4); n > 0; n--) {
    const at = below(b.length + 1);
    switch (below(7)) {
      case 0:
        if (b.length) b[at % b.length]! ^= 1 << below(8);
        break;
      case 1:
        if (b.length) b[at % b.length] = [0, 0xff, below(256), 1][below(4)]!;
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3: {
        const extra = Uint8Array.from({ length: 1 + below(8) }, () => below(256));
        b = new Uint8Array([...b.subarray(0, at), ...extra, ...b.subarray(at)]);
        break;
      }
      case 4:
        b = new Uint8Array([...b.subarray(0, at), ...b.subarray(at + 1 + below(16))]);
        break;
      case 5:
        b = new Uint8Array([...b.subarray(0, at), ...b.subarray(at, at + 1 + below(16)), ...b.subarray(at)]);
        break;
      default: {
        // A 16-bit length field nudged: the likeliest way to walk a parser off its bounds.
        if (b.length < 2) break;
        const i = at % (b.length - 1);
        const v = ((b[i]! << 8) | b[i + 1]!) + [1, -1, 2, 255][below(4)]!;
        b[i] = (v >> 8) & 255;
        b[i + 1] = v & 255;
      }
    }
  }
  return b;
}

const cuts = () => Array.from({ length: 1 + below(4) }, () => 1 + below(300));

test(`the ClientHello parser reads or refuses 20,000 mangled ClientHellos, never anything else (seed ${seed})`, () => {
  const corpus = VARIANTS.map((o) => buildClientHello(o).message);
  let read = 0;
  let refused = 0;
  for (let i = 0; i < 20_000 * rounds; i++) {
    const m = mangle(corpus[below(corpus.length)]!);
    try {
      const hello = parseClientHello(m);
      read++;
      if (hello.psk) {
        expect(hello.psk.bindersOffset).toBeLessThan(m.length);
        expect(hello.psk.binders.length).toBe(hello.psk.identities.length);
      }
    } catch (err) {
      if (!(err instanceof TlsAlert)) throw new Error(`seed ${seed} round ${i}: ${(err as Error).message} on ${hex(m)}`);
      refused++;
    }
  }
  expect(refused).toBeGreaterThan(10_000 * rounds); // the mangling does reach the checks
  expect(read).toBeGreaterThan(0);
});

test(`server engines take 2,000 mangled ClientHello records in random pieces: an alert or a handshake its binder allows (seed ${seed})`, () => {
  const keys = new Map([[IDENTITY, KEY], ["x", KEY]]);
  let answered = 0;
  let alerts = 0;
  for (let i = 0; i < 2_000 * rounds; i++) {
    const original = buildClientHello(VARIANTS[below(VARIANTS.length)]).message;
    const sent = mangle(plainRecord(ContentType.HANDSHAKE, original));
    const out: Uint8Array[] = [];
    let closes = 0;
    const server = new Tls13PskServer(keys, (b) => out.push(b), { established() {}, data() {}, closed: () => void closes++ });
    const pieces = cuts();
    try {
      for (let at = 0, k = 0; at < sent.length; k++) {
        const n = pieces[k % pieces.length]!;
        server.receive(sent.slice(at, at + n));
        at += n;
      }
    } catch (err) {
      throw new Error(`seed ${seed} round ${i}: an error escaped: ${(err as Error).message}`);
    }
    const context = `seed ${seed} round ${i}: ${hex(sent)}`;
    expect(closes, context).toBeLessThanOrEqual(1);
    if (out[0]?.[0] === ContentType.HANDSHAKE) {
      // A ServerHello went out: the hello up to its binders must be the one the binders were made
      // over (the binders themselves are not covered: one not chosen may change).
      const covered = parseClientHello(original).psk!.bindersOffset;
      expect(hex(sent.subarray(5, 5 + covered)), context).toBe(hex(original.subarray(0, covered)));
      answered++;
    } else if (closes === 1) {
      const last = out.at(-1)!;
      expect([last[0], last.length], context).toEqual([ContentType.ALERT, 7]);
      alerts++;
    }
  }
  expect(alerts).toBeGreaterThan(500 * rounds); // about half: the rest are cut short and wait for more
  expect(answered).toBeGreaterThan(0);
});

test(`1,000 sessions each take a mangled protected record: none of its bytes is delivered, the session ends (seed ${seed})`, () => {
  const payload = Uint8Array.from({ length: 3000 }, (_, i) => i & 255);
  for (let i = 0; i < 1_000 * rounds; i++) {
    const c = new PskClient();
    c.handshake({}, true, cuts());
    expect(c.established).not.toBeUndefined();
    const record = c.sealed(ContentType.APPLICATION_DATA, payload);
    const sent = mangle(record);
    try {
      c.feed(sent, cuts());
    } catch (err) {
      throw new Error(`seed ${seed} round ${i}: an error escaped: ${(err as Error).message}`);
    }
    const context = `seed ${seed} round ${i}: ${hex(sent)}`;
    if (hex(sent).startsWith(hex(record))) {
      // The record came whole (bytes may follow it): it is delivered, exactly.
      expect(hex(Buffer.concat(c.received)), context).toBe(hex(payload));
      continue;
    }
    expect(c.received.length, context).toBe(0);
    // A record whose header says more than came waits for the rest; any other ends the session.
    const declared = (sent[3]! << 8) | sent[4]!;
    if (sent.length >= 5 && (declared > 16640 || sent.length >= 5 + declared)) expect(c.closed, context).not.toBeUndefined();
  }
});
