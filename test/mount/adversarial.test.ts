/**
 * The mount against a server that misbehaves on purpose, through the fault proxy: each fault in
 * turn while 2 MiB are written (O_DIRECT, cache off, so every block goes to the server and comes
 * back from it); what is read back and what the server holds are the written bytes, and the fault
 * fired. Outages of a few seconds, stale answers within the MD5 cache's memory, swapped bodies on
 * an encrypted disk (ETag and all: only the block's authentication can tell, and the read asks again).
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { mountWith, pattern, runAsync } from "../helpers/disk.ts";
import { FaultProxy, type FaultName, type ProxyFaults } from "../helpers/fault-proxy.ts";
import { ACCESS, freshBucket, peerArgs, rawClient, SECRET } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { peer, workDir } = embeddedSuite();
const proxy = await FaultProxy.start({ upstream: peer.url, credentials: { accessKey: ACCESS, secretKey: SECRET } });
afterEach(() => proxy.reset());
afterAll(() => proxy.stop());

const BS = 65536;
const BLOCKS = /^[0-9a-f]{8}$/;
const FLAGS = ["--size=8M", `--blockSize=${BS}`, "--blockCacheSize=0", "--initialRetryPause=20", "--maxRetryPause=20000"];

interface Case {
  name: string;
  faults?: Partial<ProxyFaults>;
  /** Instead of `faults`: an outage of this kind for this long, from the start of the writes. */
  outage?: { kind: "blackhole" | "refuse"; ms: number };
  fired: FaultName;
  flags?: string[];
}

const CASES: Case[] = [
  { name: "truncated bodies", faults: { truncate: 0.3 }, fired: "truncate" },
  { name: "wrong Content-Lengths", faults: { wrongLength: 0.3 }, fired: "wrongLength" },
  { name: "reset connections, before and after the server saw the request", faults: { reset: 0.3 }, fired: "reset" },
  { name: "503 answers", faults: { status503: 0.4 }, fired: "status503" },
  { name: "delays of up to 1.5 s", faults: { delay: 0.1, delayMs: [200, 1500] }, fired: "delay" },
  { name: "another block's body under this block's ETag", faults: { swap: 0.3 }, fired: "swap" },
  { name: "another block's body and headers, within the MD5 cache's memory", faults: { swap: 0.3, swapHeaders: true }, fired: "swap" },
  { name: "another block's body and headers, on an encrypted disk", faults: { swap: 0.3, swapHeaders: true }, fired: "swap", flags: ["--encrypt", "--password=adversary"] },
  { name: "the version from before a write, for 2 s (within the MD5 cache's memory)", faults: { staleMs: 2000 }, fired: "stale" },
  { name: "a black hole for 3 s", outage: { kind: "blackhole", ms: 3000 }, fired: "blackhole" },
  { name: "refused connections for 3 s", outage: { kind: "refuse", ms: 3000 }, fired: "refuse" },
];

for (const c of CASES) {
  test(`the mount through ${c.name}: no wrong byte read back, the written bytes stored, and the fault fired`, async () => {
    const dir = workDir("adversarial");
    const bucket = await freshBucket(peer, "adv");
    const args = [...peerArgs({ ...peer, url: proxy.url }), ...FLAGS, ...(c.flags ?? []), bucket];
    const disk = await mountWith(args, dir, true);
    const first = pattern(2 << 20, 1);
    const second = pattern(2 << 20, 2);
    writeFileSync(join(dir, "first"), first);
    writeFileSync(join(dir, "second"), second);
    const dd = (from: string, to: string, flag: string) => runAsync(["dd", `if=${from}`, `of=${to}`, "bs=1M", "count=2", flag, "conv=notrunc,fsync", "status=none"]);

    // An old version on the server first, so that stale and swapped answers have something wrong to give.
    expect((await dd(join(dir, "first"), disk.file, "oflag=direct")).code).toBe(0);
    expect((await dd(disk.file, join(dir, "read"), "iflag=direct")).code).toBe(0);
    proxy.set({ keyPattern: BLOCKS, ...c.faults });
    const outage = c.outage && proxy.during(c.outage.ms, { outage: c.outage.kind });
    const wrote = await dd(join(dir, "second"), disk.file, "oflag=direct");
    const read = await readBlocks(disk.file, 32, second);
    await outage;
    const fired = proxy.fired[c.fired];
    proxy.reset();
    expect(wrote.stderr).toBe("");
    expect(read.wrong).toEqual([]);
    expect(read.eio).toEqual([]);
    await disk.unmount();
    if (!c.flags) {
      // Stored as written: every block's object holds its bytes.
      const s3 = rawClient(peer);
      for (let b = 0; b < 32; b++) {
        const r = await s3("GET", `${bucket}/${b.toString(16).padStart(8, "0")}`);
        expect(Bun.hash(r.body)).toBe(Bun.hash(second.subarray(b * BS, (b + 1) * BS)));
      }
    }
    expect(fired).toBeGreaterThan(0);
  }, 120_000);
}

/** Reads each block with O_DIRECT (from the server: the cache is off): which came back wrong, which failed. */
async function readBlocks(file: string, count: number, want: Uint8Array): Promise<{ wrong: number[]; eio: number[] }> {
  const script = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, ${BS})
for b in range(${count}):
    try:
        os.preadv(fd, [buf], b * ${BS})
        sys.stdout.buffer.write(b"k" + bytes(buf))
    except OSError:
        sys.stdout.buffer.write(b"e" + bytes(${BS}))
`;
  const p = Bun.spawn(["python3", "-c", script, file], { stdout: "pipe", stderr: "inherit" });
  const out = new Uint8Array(await new Response(p.stdout).arrayBuffer());
  await p.exited;
  const wrong: number[] = [];
  const eio: number[] = [];
  for (let b = 0; b < count; b++) {
    const at = b * (BS + 1);
    if (out[at] !== 0x6b) eio.push(b);
    else if (Bun.hash(out.subarray(at + 1, at + 1 + BS)) !== Bun.hash(want.subarray(b * BS, (b + 1) * BS))) wrong.push(b);
  }
  return { wrong, eio };
}
