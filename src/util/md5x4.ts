/**
 * MD5 of up to four inputs of one length side by side, one input per 32-bit lane of WebAssembly
 * SIMD. MD5 of a single input is a chain of dependent steps (the runtime's native MD5 does about
 * 700 MB/s on one core); four chains in one vector cost little more than one, so four 1 MiB blocks
 * hash at about 1.3 GB/s in all. The module is put together here from its instructions (no
 * compiled artefact is shipped): the 64 MD5 steps of RFC 1321 unrolled over vectors of four lanes.
 *
 * Memory: [0, 64) the four state words, each a vector of the lanes' values; [64, 320) the chunk's
 * 16 message words, each a vector; then one window per lane that the inputs are copied through.
 */

const STATE = 0;
const WORDS = 64;
const LANES_AT = 320;
/** Bytes of each input copied into the module per call: small enough to stay in the CPU's cache. */
const WINDOW = 32 * 1024;

const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const SINES = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
const INITIAL = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

// ---- just enough of the WebAssembly binary format ----
const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    const low = n & 0x7f;
    n >>>= 7;
    out.push(n ? low | 0x80 : low);
  } while (n);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const low = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(low & 0x40)) || (n === -1 && low & 0x40)) return [...out, low];
    out.push(low | 0x80);
  }
};
const simd = (op: number, ...immediates: number[]) => [0xfd, ...uleb(op), ...immediates];
const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  i32: (n: number) => [0x41, ...sleb(n | 0)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Eqz: [0x45],
  /** v128.load / v128.store at a constant address (align 2^4). */
  load: (at: number) => [0x41, 0, ...simd(0x00, 4, ...uleb(at))],
  store: (at: number) => simd(0x0b, 4, ...uleb(at)),
  load32Splat: (offset: number) => simd(0x09, 2, ...uleb(offset)),
  load32Lane: (offset: number, lane: number) => simd(0x56, 2, ...uleb(offset), lane),
  splat: (n: number) => {
    const bytes: number[] = [];
    for (let i = 0; i < 4; i++) bytes.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
    return simd(0x0c, ...bytes);
  },
  not: simd(0x4d),
  or: simd(0x50),
  xor: simd(0x51),
  bitselect: simd(0x52),
  shl: simd(0xab),
  shrU: simd(0xad),
  add: simd(0xae),
};

/**
 * (func (param $lane0 $lane1 $lane2 $lane3 $chunks i32)): runs $chunks 64-byte chunks of each
 * lane's bytes through the state. Locals: 5-8 the state, 9-12 its value before the chunk, 13 a temporary.
 */
function chunkLoop(): number[] {
  const CHUNKS = 4;
  const V = [5, 6, 7, 8];
  const SAVED = [9, 10, 11, 12];
  const T = 13;
  const code: number[] = [];
  for (let k = 0; k < 4; k++) code.push(...op.i32(0), ...simd(0x00, 4, ...uleb(STATE + 16 * k)), ...op.localSet(V[k]!));
  code.push(0x02, 0x40, 0x03, 0x40); // block, loop
  code.push(...op.localGet(CHUNKS), ...op.i32Eqz, 0x0d, 1); // br_if out
  // The chunk's words, lane by lane, into one vector each.
  for (let j = 0; j < 16; j++) {
    code.push(...op.i32(0), ...op.localGet(0), ...op.load32Splat(4 * j));
    for (let lane = 1; lane < 4; lane++) code.push(...op.localSet(T), ...op.localGet(lane), ...op.localGet(T), ...op.load32Lane(4 * j, lane));
    code.push(...op.store(WORDS + 16 * j));
  }
  for (let k = 0; k < 4; k++) code.push(...op.localGet(V[k]!), ...op.localSet(SAVED[k]!));
  let [a, b, c, d] = V as [number, number, number, number];
  for (let i = 0; i < 64; i++) {
    const round = i >> 4;
    let word: number;
    if (round === 0) {
      code.push(...op.localGet(c), ...op.localGet(d), ...op.localGet(b), ...op.bitselect); // (b & c) | (~b & d)
      word = i;
    } else if (round === 1) {
      code.push(...op.localGet(b), ...op.localGet(c), ...op.localGet(d), ...op.bitselect); // (d & b) | (~d & c)
      word = (5 * i + 1) % 16;
    } else if (round === 2) {
      code.push(...op.localGet(b), ...op.localGet(c), ...op.xor, ...op.localGet(d), ...op.xor);
      word = (3 * i + 5) % 16;
    } else {
      code.push(...op.localGet(c), ...op.localGet(b), ...op.localGet(d), ...op.not, ...op.or, ...op.xor);
      word = (7 * i) % 16;
    }
    const s = SHIFTS[round * 4 + (i & 3)]!;
    // a = b + rotl(a + f + word + sine, s)
    code.push(...op.localGet(a), ...op.add, ...op.load(WORDS + 16 * word), ...op.add, ...op.splat(SINES[i]!), ...op.add, ...op.localTee(T));
    code.push(...op.i32(s), ...op.shl, ...op.localGet(T), ...op.i32(32 - s), ...op.shrU, ...op.or, ...op.localGet(b), ...op.add, ...op.localSet(a));
    [a, b, c, d] = [d, a, b, c];
  }
  for (let k = 0; k < 4; k++) code.push(...op.localGet(V[k]!), ...op.localGet(SAVED[k]!), ...op.add, ...op.localSet(V[k]!));
  for (let lane = 0; lane < 4; lane++) code.push(...op.localGet(lane), ...op.i32(64), ...op.i32Add, ...op.localSet(lane));
  code.push(...op.localGet(CHUNKS), ...op.i32(1), ...op.i32Sub, ...op.localSet(CHUNKS), 0x0c, 0, 0x0b, 0x0b); // br loop, end, end
  for (let k = 0; k < 4; k++) code.push(...op.i32(0), ...op.localGet(V[k]!), ...op.store(STATE + 16 * k));
  return [...uleb(1), ...uleb(9), 0x7b, ...code, 0x0b]; // one run of 9 v128 locals; end
}

function moduleBytes(): Uint8Array {
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const list = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const name = (s: string) => [...uleb(s.length), ...[...s].map((ch) => ch.charCodeAt(0))];
  const pages = Math.ceil((LANES_AT + 4 * (WINDOW + 128)) / 65536);
  const body = chunkLoop();
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, list([[0x60, ...list([[0x7f], [0x7f], [0x7f], [0x7f], [0x7f]]), 0]])), // type: (i32 x5) -> ()
    ...section(3, list([[0]])), // one function
    ...section(5, list([[0, ...uleb(pages)]])), // memory
    ...section(7, list([[...name("memory"), 2, 0], [...name("chunks"), 0, 0]])),
    ...section(10, list([[...uleb(body.length), ...body]])),
  ]);
}

interface Module {
  memory: Uint8Array;
  chunks(lane0: number, lane1: number, lane2: number, lane3: number, count: number): void;
}

let compiled: Module | null | undefined;

/** The module, or null where this runtime has no WebAssembly SIMD. */
function module(): Module | null {
  if (compiled !== undefined) return compiled;
  try {
    const bytes = moduleBytes();
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    const exports = instance.exports as { memory: WebAssembly.Memory; chunks: Module["chunks"] };
    compiled = { memory: new Uint8Array(exports.memory.buffer), chunks: exports.chunks };
  } catch {
    compiled = null;
  }
  return compiled;
}

/** Whether Md5x4 can run here. */
export const md5x4Available = () => module() !== null;

/**
 * MD5 of one to four inputs of the same length side by side (one costs what four do), a window of
 * each input per step, so that a caller can let other work run between steps. Steps of several
 * runs may interleave: each run keeps its own state. Throws where md5x4Available() is false.
 */
export class Md5x4 {
  private readonly m: Module;
  private readonly length: number;
  private readonly state = new Uint8Array(64);
  private at = 0;
  private finished = false;

  constructor(private readonly inputs: readonly Uint8Array[]) {
    const m = module();
    if (!m) throw new Error("WebAssembly SIMD is not available");
    this.m = m;
    this.length = inputs[0]?.length ?? 0;
    if (inputs.length < 1 || inputs.length > 4 || inputs.some((input) => input.length !== this.length)) {
      throw new Error("md5x4 takes 1-4 inputs of one length");
    }
    const view = new DataView(this.state.buffer);
    for (let k = 0; k < 4; k++) for (let lane = 0; lane < 4; lane++) view.setUint32(16 * k + 4 * lane, INITIAL[k]!, true);
  }

  /** Hashes the next window of each input (the last step pads them); true once all is hashed. */
  step(): boolean {
    if (this.finished) return true;
    const { m, inputs, length } = this;
    const mem = m.memory;
    const window = (lane: number) => LANES_AT + (lane % inputs.length) * (WINDOW + 128);
    mem.set(this.state, STATE);
    const whole = length - (length % 64);
    if (this.at < whole) {
      const size = Math.min(WINDOW, whole - this.at);
      for (let lane = 0; lane < inputs.length; lane++) mem.set(inputs[lane]!.subarray(this.at, this.at + size), window(lane));
      m.chunks(window(0), window(1), window(2), window(3), size / 64);
      this.at += size;
    } else {
      // The last partial chunk, the 0x80 marker, zeros, and the length in bits: one or two chunks.
      const view = new DataView(mem.buffer);
      const tail = length - whole;
      const padded = tail + 9 <= 64 ? 64 : 128;
      for (let lane = 0; lane < inputs.length; lane++) {
        const at = window(lane);
        mem.set(inputs[lane]!.subarray(whole), at);
        mem.fill(0, at + tail, at + padded);
        mem[at + tail] = 0x80;
        view.setUint32(at + padded - 8, (length * 8) >>> 0, true);
        view.setUint32(at + padded - 4, Math.floor(length / 2 ** 29), true);
      }
      m.chunks(window(0), window(1), window(2), window(3), padded / 64);
      this.finished = true;
    }
    this.state.set(mem.subarray(STATE, STATE + 64));
    return this.finished;
  }

  /** The 16-byte digests, in the order of the inputs (once step() has returned true). */
  digests(): Uint8Array[] {
    return this.inputs.map((_, lane) => {
      const digest = new Uint8Array(16);
      for (let k = 0; k < 4; k++) digest.set(this.state.subarray(16 * k + 4 * lane, 16 * k + 4 * lane + 4), 4 * k);
      return digest;
    });
  }
}
