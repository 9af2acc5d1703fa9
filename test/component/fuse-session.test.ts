/**
 * The FUSE session with a fake device: one end of a socket pair stands in for /dev/fuse (the
 * session's reader thread reads requests from it and the replies are written back to it), and the
 * test writes hand-laid request bytes into the other end and reads the replies.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { closeSync, writeSync } from "node:fs";
import { BackedFile } from "../../src/file/backed-file.ts";
import { FILE_INODE, SingleFileFs, STATS_INODE } from "../../src/fuse/filesystem.ts";
import { InitFlag, Op, ROOT_INODE, Size } from "../../src/fuse/kernel-abi.ts";
import { FuseSession } from "../../src/fuse/session.ts";
import { Logger } from "../../src/log.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import { runtime } from "../../src/runtime/index.ts";
import { pattern } from "../helpers/data.ts";
import { plainCodec } from "../helpers/stores.ts";

const BS = 4096;
const opened: { session: FuseSession; fds: number[] }[] = [];
const fds: number[] = [];
afterEach(() => {
  for (const o of opened.splice(0)) {
    o.session.stop();
    fds.push(...o.fds);
  }
});
// Closed only at the end: a descriptor number reused by the next test while the last one's
// stream still watches it would hand that stream the next test's replies.
afterAll(() => {
  for (const fd of fds) closeSync(fd);
});

function request(opcode: number, unique: number, nodeid: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(Size.IN_HEADER + body.length);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, bytes.length, true);
  v.setUint32(4, opcode, true);
  v.setBigUint64(8, BigInt(unique), true);
  v.setBigUint64(16, BigInt(nodeid), true);
  bytes.set(body, Size.IN_HEADER);
  return bytes;
}

function words(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  values.forEach((x, i) => new DataView(out.buffer).setUint32(i * 4, x, true));
  return out;
}

/** The replies written to the test's end, one message each (a seqpacket socket keeps them apart, as the device does). */
function replies(fd: number) {
  const reader = Bun.file(fd).stream().getReader();
  return async (): Promise<{ unique: number; error: number; body: Uint8Array }> => {
    const { value } = await reader.read();
    const v = new DataView(value!.buffer, value!.byteOffset, value!.length);
    expect(v.getUint32(0, true)).toBe(value!.length); // the header's length is the message's
    return { error: v.getInt32(4, true), unique: Number(v.getBigUint64(8, true)), body: value!.slice(Size.OUT_HEADER) };
  };
}

async function started() {
  const objects = new MemoryObjects(BS, 16);
  const store = plainCodec(objects);
  await store.writeBlock(1, pattern(BS, 7));
  const fs = new SingleFileFs(new BackedFile(store), {
    filename: "file", statsFilename: "stats", fileMode: 0o600, uid: 0, gid: 0, readOnly: false, directIO: false, blockSize: BS,
    statsText: () => "counters\n", resetStats: () => {}, flush: () => store.flush(),
  });
  const [device, test] = runtime.libc.socketpair("seqpacket");
  const session = new FuseSession(device, fs, new Logger({ kind: "file", path: "/dev/null" }), { maxReadahead: 1 << 20, readers: 1, slotsPerReader: 2, directSlots: 0 });
  opened.push({ session, fds: [device, test] });
  session.start();
  const send = (bytes: Uint8Array) => writeSync(test, bytes);
  return { session, send, next: replies(test) };
}

test("INIT: the reply offers 7.31 with the flags the kernel offered that we want, and 1 MiB writes", async () => {
  const { session, send, next } = await started();
  send(request(Op.INIT, 1, 0, words(7, 38, 128 * 1024, InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.MAX_PAGES | (1 << 30))));
  const r = await next();
  expect({ unique: r.unique, error: r.error, length: r.body.length }).toEqual({ unique: 1, error: 0, length: Size.INIT_OUT });
  const v = new DataView(r.body.buffer);
  expect([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)]).toEqual([7, 31, 128 * 1024]);
  expect(v.getUint32(12, true)).toBe(InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.MAX_PAGES);
  expect(v.getUint32(20, true)).toBe(1 << 20);
  await session.ready;
  // A kernel too old for us gets EPROTO.
  send(request(Op.INIT, 2, 0, words(7, 10, 0, 0)));
  expect((await next()).error).toBe(-71);
});

test("LOOKUP, GETATTR, OPEN and READ of the file and the stats file; an unknown name is ENOENT", async () => {
  const { send, next } = await started();
  send(request(Op.INIT, 1, 0, words(7, 31, 0, InitFlag.MAX_PAGES)));
  await next();
  send(request(Op.LOOKUP, 2, ROOT_INODE, new TextEncoder().encode("file\0")));
  const entry = await next();
  expect(entry.error).toBe(0);
  const ev = new DataView(entry.body.buffer);
  expect(Number(ev.getBigUint64(0, true))).toBe(FILE_INODE); // nodeid
  expect(Number(ev.getBigUint64(40 + 8, true))).toBe(16 * BS); // attr.size
  send(request(Op.LOOKUP, 3, ROOT_INODE, new TextEncoder().encode("nothing\0")));
  expect(await next()).toMatchObject({ unique: 3, error: -2 });

  send(request(Op.OPEN, 4, FILE_INODE, words(0, 0)));
  const open = await next();
  const fh = Number(new DataView(open.body.buffer).getBigUint64(0, true));
  const readIn = new Uint8Array(40);
  const rv = new DataView(readIn.buffer);
  rv.setBigUint64(0, BigInt(fh), true);
  rv.setBigUint64(8, BigInt(BS + 100), true); // offset: inside block 1
  rv.setUint32(16, 200, true); // size
  send(request(Op.READ, 5, FILE_INODE, readIn));
  const data = await next();
  expect(data.unique).toBe(5);
  expect(data.body).toEqual(pattern(BS, 7).subarray(100, 300));

  send(request(Op.OPEN, 6, STATS_INODE, words(0, 0)));
  const statsFh = Number(new DataView((await next()).body.buffer).getBigUint64(0, true));
  rv.setBigUint64(0, BigInt(statsFh), true);
  rv.setBigUint64(8, 0n, true);
  rv.setUint32(16, 4096, true);
  send(request(Op.READ, 7, STATS_INODE, readIn));
  expect(new TextDecoder().decode((await next()).body)).toBe("counters\n");
});

test("an unknown opcode is ENOSYS, and FORGET gets no reply", async () => {
  const { send, next } = await started();
  send(request(Op.INIT, 1, 0, words(7, 31, 0, 0)));
  await next();
  send(request(Op.FORGET, 2, FILE_INODE, new Uint8Array(8)));
  send(request(9999, 3, ROOT_INODE));
  expect(await next()).toMatchObject({ unique: 3, error: -38 });
});
