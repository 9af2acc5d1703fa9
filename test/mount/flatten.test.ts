/**
 * `s3backer flatten`: a clone with inherited blocks, its own writes and zero markers becomes a
 * plain disk that Debian's s3backer 1.5.4 and upstream master (UPSTREAM_S3BACKER) read back byte
 * for byte, with and without encryption; the base is untouched and free again.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanupDisks, isMounted, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";
import { objectsOf, s3backer, sh } from "../helpers/layers.ts";

const server = startEmbedded();
const peer = embeddedPeer(server);
const UPSTREAM = process.env.UPSTREAM_S3BACKER;
if (!UPSTREAM) console.log("flatten read back by upstream master: skipped (set UPSTREAM_S3BACKER)");
const dirs: string[] = [];
afterEach(async () => {
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  server.reset();
});
afterAll(() => server.stop());

const K4 = 4096;

for (const encrypted of [false, true]) {
  test(`flatten${encrypted ? " --encrypt" : ""}: read back byte for byte by Debian's 1.5.4${UPSTREAM ? " and upstream master" : ""}`, async () => {
    const dir = tempDir("flatten");
    dirs.push(dir);
    const pw = join(dir, "pw");
    writeFileSync(pw, "flat password\n");
    const codec = encrypted ? ["--encrypt", `--passwordFile=${pw}`] : [];
    const bucket = await freshBucket(peer, "flatten");
    const flags = [...peerArgs(peer), ...codec];
    const dd = (file: string, from: string, seekBlocks: number, count: number) =>
      sh(["dd", `if=${from}`, `of=${file}`, "bs=4k", `seek=${seekBlocks}`, `count=${count}`, "conv=notrunc,fsync", "status=none"]);
    const data = join(dir, "data");
    writeFileSync(data, pattern(1 << 20, 11));

    const base = await mountWith([...flags, "--size=4M", `${bucket}/golden`], join(dir, "golden"), true);
    await dd(base.file, data, 0, 256); // blocks 0-255 (block 0 too: it comes from the base)
    await base.unmount();
    const golden = await objectsOf(peer, bucket, "golden/");

    const clone = await mountWith([...flags, `--base=${bucket}/golden`, `${bucket}/ci/42`], join(dir, "clone"), true);
    writeFileSync(data, pattern(256 * K4, 12));
    await dd(clone.file, data, 200, 256); // its own blocks, over and past the base's
    await dd(clone.file, "/dev/zero", 10, 5); // zeros over inherited blocks: markers
    await sh(["fallocate", "--punch-hole", "--keep-size", "-o", String(20 * K4), "-l", String(3 * K4), clone.file]);
    const expected = new Uint8Array(await readFile(clone.file));
    await clone.unmount();
    const markers = [...(await objectsOf(peer, bucket, "ci/42/"))].filter(([, o]) => o.size === 0).length;
    expect(markers).toBe(8);

    server.counters.reset();
    const flat = await s3backer(peer, "flatten", ...codec, `${bucket}/ci/42`);
    expect(flat.code).toBe(0);
    // Blocks 0-9, 15-19 and 23-199 came from the base: 192, each a server-side copy, or re-encrypted with the clone's key.
    expect(flat.stderr).toMatch(encrypted ? /0 blocks copied on the server, 192 re-encrypted through this host, 8 zero markers removed/ : /192 blocks copied on the server, 0 re-encrypted/);
    expect(server.counters.copies).toBe(encrypted ? 0 : 192);
    const after = await objectsOf(peer, bucket);
    expect([...after.keys()].filter((k) => !k.startsWith("golden/") && !/^ci\/42\/[0-9a-f]{8}$/.test(k))).toEqual([]); // no manifest, no record
    expect([...after].filter(([, o]) => o.size === 0)).toEqual([]);
    expect(await objectsOf(peer, bucket, "golden/")).toEqual(golden);
    const info = await s3backer(peer, "info", `${bucket}/golden`);
    expect(info.stdout).toMatch(/dependents +none/);

    const ours = await mountWith([...flags, "--readOnly", `${bucket}/ci/42`], join(dir, "ours"), true);
    expect(new Uint8Array(await readFile(ours.file))).toEqual(expected);
    await ours.unmount();

    const programs: [string, string[]][] = [["s3backer", [`--prefix=ci/42/`, bucket]]];
    if (UPSTREAM) programs.push([UPSTREAM, [`${bucket}/ci/42`]]);
    for (const [binary, where] of programs) {
      const mnt = join(dir, `mnt-${programs.findIndex(([b]) => b === binary)}`);
      mkdirSync(mnt);
      const r = await runAsync([binary, `--baseURL=${peer.url}`, `--accessId=${peer.accessKey}`, `--accessKey=${peer.secretKey}`, ...codec, "--readOnly", ...where, mnt]);
      expect({ binary, code: r.code, stderr: r.stderr }).toEqual({ binary, code: 0, stderr: expect.stringMatching(/auto-detected block size=4k and total size=4m/) });
      try {
        expect({ binary, same: Buffer.from(await readFile(join(mnt, "file"))).equals(Buffer.from(expected)) }).toEqual({ binary, same: true });
      } finally {
        await runAsync(["umount", mnt]);
        await waitFor("the original to let go", () => !isMounted(mnt));
        await waitFor("the original's process", () => {
          const pids = Bun.spawnSync(["pgrep", "-f", `${binary} .* ${mnt}$`]).stdout.toString().trim().split("\n").filter(Boolean);
          return pids.every((pid) => readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "));
        });
      }
    }
  }, 120_000);
}
