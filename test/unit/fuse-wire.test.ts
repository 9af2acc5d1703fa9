/** The FUSE wire format against hand-laid bytes, as include/linux/fuse.h defines them. */
import type { Attr } from "../../src/fuse/ops.ts";
import { expect, test } from "bun:test";
import * as wire from "../../src/fuse/wire.ts";
import { Request } from "../../src/fuse/wire.ts";
import { Op, Size } from "../../src/fuse/kernel-abi.ts";

function request(opcode: number, body: Uint8Array, unique = 0x1_0000_0002, nodeid = 2): Uint8Array {
  const bytes = new Uint8Array(Size.IN_HEADER + body.length);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, bytes.length, true);
  v.setUint32(4, opcode, true);
  wire.setU64(v, 8, unique);
  wire.setU64(v, 16, nodeid);
  v.setUint32(24, 1000, true);
  v.setUint32(28, 100, true);
  v.setUint32(32, 4242, true);
  bytes.set(body, Size.IN_HEADER);
  return bytes;
}

test("64-bit fields round-trip exactly above 2^32 without BigInt", () => {
  const v = new DataView(new ArrayBuffer(8));
  for (const n of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
    wire.setU64(v, 0, n);
    expect(wire.getU64(v, 0)).toBe(n);
    expect(v.getBigUint64(0, true)).toBe(BigInt(n));
  }
});

test("request header fields", () => {
  const r = new Request(request(Op.GETATTR, new Uint8Array(16)));
  expect([r.opcode, r.unique, r.nodeid, r.uid, r.gid, r.pid]).toEqual([Op.GETATTR, 0x1_0000_0002, 2, 1000, 100, 4242]);
  expect([...r.uniqueBytes]).toEqual([2, 0, 0, 0, 1, 0, 0, 0]);
});

test("WRITE: offset, size and the data that follows fuse_write_in at byte 80", () => {
  const body = new Uint8Array(Size.WRITE_IN + 5);
  const v = new DataView(body.buffer);
  wire.setU64(v, 0, 7); // fh
  wire.setU64(v, 8, 5 * 2 ** 32 + 3); // offset above 4 GiB
  v.setUint32(16, 5, true); // size
  body.set([1, 2, 3, 4, 5], Size.WRITE_IN);
  const w = wire.decodeWrite(new Request(request(Op.WRITE, body)));
  expect(w.fh).toBe(7);
  expect(w.offset).toBe(5 * 2 ** 32 + 3);
  expect([...w.data]).toEqual([1, 2, 3, 4, 5]);
  expect(w.data.byteOffset).toBe(80); // a view, not a copy
});

test("LOOKUP name and SETATTR fields", () => {
  const name = new TextEncoder().encode("stats\0");
  expect(new Request(request(Op.LOOKUP, name, 4, 1)).name()).toBe("stats");
  const body = new Uint8Array(88);
  const v = new DataView(body.buffer);
  v.setUint32(0, 1 | 8, true); // MODE | SIZE
  wire.setU64(v, 16, 12345);
  v.setUint32(68, 0o100644, true);
  v.setUint32(76, 33, true);
  const s = wire.decodeSetattr(new Request(request(Op.SETATTR, body)));
  expect([s.valid, s.size, s.mode, s.uid]).toEqual([9, 12345, 0o100644, 33]);
});

test("reply header: length, negative errno, unique copied", () => {
  const h = wire.outHeader(16, 5, new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]));
  const v = new DataView(h.buffer);
  expect([v.getUint32(0, true), v.getInt32(4, true)]).toEqual([16, -5]);
  expect([...h.subarray(8)]).toEqual([9, 8, 7, 6, 5, 4, 3, 2]);
});

test("entry_out and attr_out lay fuse_attr where the kernel reads it", () => {
  const attr: Attr = {
    ino: 2, size: 3 * 2 ** 32, blocks: 9, mode: 0o100600, nlink: 1, uid: 7, gid: 8, blksize: 65536,
    atime: 1.5, mtime: 1700000000.25, ctime: 3,
  };
  const e = wire.entryOut(attr, 1, 2);
  expect(e.length).toBe(128);
  const v = new DataView(e.buffer);
  expect([wire.getU64(v, 0), wire.getU64(v, 16), wire.getU64(v, 24)]).toEqual([2, 1, 2]);
  expect(wire.getU64(v, 40 + 8)).toBe(3 * 2 ** 32); // size
  expect(wire.getU64(v, 40 + 32)).toBe(1700000000); // mtime seconds
  expect(v.getUint32(40 + 52, true)).toBe(250_000_000); // mtime nanoseconds
  expect(v.getUint32(40 + 60, true)).toBe(0o100600); // mode
  expect(v.getUint32(40 + 80, true)).toBe(65536); // blksize
  const a = wire.attrOut(attr, 1);
  expect(a.length).toBe(104);
  expect(new DataView(a.buffer).getUint32(16 + 60, true)).toBe(0o100600);
});

test("init_out asks for 1 MiB writes with max_pages", () => {
  const out = wire.initOut({ minor: 31, maxReadahead: 0, flags: 0x440021, maxBackground: 64, congestionThreshold: 48, maxWrite: 1 << 20, maxPages: 256 }, 7);
  const v = new DataView(out.buffer);
  expect(out.length).toBe(64);
  expect([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(12, true)]).toEqual([7, 31, 0x440021]);
  expect([v.getUint16(16, true), v.getUint16(18, true), v.getUint32(20, true), v.getUint16(28, true)]).toEqual([64, 48, 1 << 20, 256]);
});

test("dirents are 8-byte aligned, carry the next offset, and stop at the size limit", () => {
  const entries = [
    { ino: 1, name: ".", type: 4 },
    { ino: 1, name: "..", type: 4 },
    { ino: 2, name: "file", type: 8 },
  ];
  const all = wire.dirents(entries, 0, 4096);
  expect(all.length).toBe(32 + 32 + 32);
  const v = new DataView(all.buffer);
  expect([wire.getU64(v, 64), wire.getU64(v, 64 + 8), v.getUint32(64 + 16, true), v.getUint32(64 + 20, true)]).toEqual([2, 3, 4, 8]);
  expect(new TextDecoder().decode(all.subarray(64 + 24, 64 + 28))).toBe("file");
  expect(wire.dirents(entries, 1, 40).length).toBe(32); // only ".." fits
  expect(wire.dirents(entries, 3, 4096).length).toBe(0); // past the end
});
