/**
 * The codec's cost: MB/s of encode and decode on one core for 1 MiB blocks (deflate, zstd; AES-CBC +
 * HMAC-SHA1 by WebCrypto and by the pure-TypeScript engine; both together), then sequential write
 * and cold read through the mount against the bundled server with and without --compress/--encrypt,
 * ours and Debian's s3backer 1.5.4 (whose fsync does not wait for S3: its write figure is an upper bound).
 *
 *   bun bench/codec-throughput.ts [SIZE_MiB]      (default 256; run as root, by hand)
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BlockEncryption } from "../src/store/codec/block-encryption.ts";
import { cipherByName } from "../src/store/codec/ciphers.ts";
import { Codec } from "../src/store/codec/codec.ts";
import type { Compression } from "../src/store/codec/compression.ts";
import { MemoryObjects } from "../src/object/memory-objects.ts";
import { S3Server } from "../src/s3server/s3-server.ts";
import { ddRate, run, waitGone } from "./helpers.ts";

const MIB = Number(process.argv[2] ?? 256);
const BLOCK = 1 << 20;
const OURS = join(import.meta.dir, "../dist/s3backer");
const work = "/dev/shm/s3b-codecbench";

/** Half text-like (compresses about 3:1), half noise (does not compress): a mixed disk. */
function mixedBlock(seed: number): Uint8Array {
  const out = new Uint8Array(BLOCK);
  const words = "the quick brown fox jumps over a lazy dog while s3backer stores blocks in a bucket ".split(" ");
  let x = seed;
  let i = 0;
  while (i < BLOCK / 2) {
    x = (x * 1103515245 + 12345) >>> 0;
    for (const c of `${words[x % words.length]!} `) out[i++] = c.charCodeAt(0);
  }
  crypto.getRandomValues(out.subarray(BLOCK / 2, BLOCK / 2 + 65536));
  for (let j = BLOCK / 2 + 65536; j < BLOCK; j += 65536) out.copyWithin(j, BLOCK / 2, BLOCK / 2 + 65536);
  for (let j = BLOCK / 2; j < BLOCK; j += 4096) out[j] = (out[j]! + j / 4096 + seed) & 0xff; // not one repeated chunk
  return out;
}

async function rate(work: () => Promise<unknown>, blocks = 64): Promise<number> {
  await work();
  const start = performance.now();
  for (let i = 0; i < blocks; i++) await work();
  return (blocks * BLOCK) / ((performance.now() - start) / 1000) / 1e6;
}

const objects = new MemoryObjects(BLOCK, 16);
const aes = cipherByName("AES-128-CBC")!;
const deflate = (level: number): Compression => ({ algorithm: "deflate", level });
const zstd = (level: number): Compression => ({ algorithm: "zstd", level });
const codecWith = async (compression: Compression | undefined, engine?: "noble" | "webcrypto") =>
  new Codec(objects, { compression, encryption: engine && (await BlockEncryption.create(aes, "pw", "b/", 16, engine)), defaultEncoding: undefined, keepSizes: false });

const block = mixedBlock(1);
console.log("\nOne core, 1 MiB blocks, half text half noise; MB/s of plain block bytes\n");
console.log(`${"codec".padEnd(34)}${"encode".padStart(8)}${"decode".padStart(8)}${"stored %".padStart(10)}`);
for (const [name, level, engine] of [
  ["deflate level 1", deflate(1), undefined], ["deflate level 6 (default)", deflate(6), undefined], ["deflate level 9", deflate(9), undefined],
  ["zstd level 1", zstd(1), undefined], ["zstd level 3 (default)", zstd(3), undefined], ["zstd level 19", zstd(19), undefined],
  ["AES-128-CBC + HMAC, WebCrypto", undefined, "webcrypto"], ["AES-128-CBC + HMAC, @noble", undefined, "noble"],
  ["--encrypt (deflate 6 + WebCrypto)", deflate(6), "webcrypto"], ["--encrypt (deflate 6 + @noble)", deflate(6), "noble"],
] as const) {
  const c = await codecWith(level, engine);
  const encoded = await c.encode(5, block);
  const stored = { body: encoded.body, md5: "", encoding: encoded.encoding ?? null, hmac: encoded.hmac ?? null };
  const enc = await rate(() => c.encode(5, block));
  const dec = await rate(() => c.decode(5, stored));
  console.log(`${name.padEnd(34)}${enc.toFixed(0).padStart(8)}${dec.toFixed(0).padStart(8)}${((100 * encoded.body.length) / BLOCK).toFixed(0).padStart(10)}`);
}

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const source = join(work, "source.bin");
const image = new Uint8Array(MIB * BLOCK);
for (let i = 0; i < MIB; i++) image.set(mixedBlock(i), i * BLOCK);
writeFileSync(source, image);
writeFileSync(join(work, "pw"), "bench password\n");
const server = new S3Server({ credentials: { BENCH: { secretAccessKey: "bench-secret" } }, buckets: ["codec"] });
server.start();
console.log(`\nThrough the mount, bundled server, ${MIB} MiB of the same data, 1 MiB blocks, MB/s\n`);
console.log(`${"program".padEnd(24)}${"flags".padEnd(14)}${"write".padStart(8)}${"cold read".padStart(11)}${"stored MiB".padStart(12)}`);
try {
  const modes = [["(none)", []], ["--compress", ["--compress"]], ["--compress=zstd", ["--compress=zstd"]], ["--encrypt", ["--encrypt", `--passwordFile=${join(work, "pw")}`]]] as const;
  for (const [program, binary] of [["s3backer (this)", OURS], ["Debian s3backer 1.5.4", "s3backer"]] as const) for (const [n, [name, flags]] of modes.entries()) {
    const ours = binary === OURS;
    if (!ours && name === "--compress=zstd") continue; // 1.5.4 has no zstd
    const mnt = join(work, `mnt${n}`);
    mkdirSync(mnt, { recursive: true });
    const creds = [`--baseURL=${server.url}`, "--accessId=BENCH", "--accessKey=bench-secret", "--md5CacheSize=0", "--md5CacheTime=0", "--minWriteDelay=0"];
    const prefix = `p${n}${ours ? "o" : "d"}`;
    const where = ours ? [`codec/${prefix}`] : [`--prefix=${prefix}/`, "codec"];
    const before = server.counters.bytesIn;
    await run([binary, ...creds, ...flags, "--blockSize=1M", `--size=${MIB}M`, ...where, mnt]);
    const write = ddRate(await run(["dd", `if=${source}`, `of=${join(mnt, "file")}`, "bs=1M", "conv=notrunc,fsync"]), MIB);
    const storedMiB = (server.counters.bytesIn - before) / BLOCK;
    await run(["umount", mnt]);
    await waitGone(mnt);
    await run([binary, ...creds, ...flags, ...(ours ? [] : ["--blockSize=1M", `--size=${MIB}M`]), ...where, mnt]);
    writeFileSync("/proc/sys/vm/drop_caches", "3");
    const read = ddRate(await run(["dd", `if=${join(mnt, "file")}`, "of=/dev/null", "bs=1M"]), MIB);
    await run(["umount", mnt]);
    await waitGone(mnt);
    console.log(`${program.padEnd(24)}${name.padEnd(14)}${write.toFixed(0).padStart(8)}${read.toFixed(0).padStart(11)}${storedMiB.toFixed(0).padStart(12)}`);
  }
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
