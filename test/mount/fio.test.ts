/**
 * fio writes and verifies checksummed patterns through the mount: sequential, random, parallel;
 * then verifies them again through a fresh process (what reached storage, not what one process
 * kept in memory).
 */
import { afterEach, expect, test } from "bun:test";
import { cleanupDisks, mountDisk, run, tempDir } from "../helpers/disk.ts";
import { rmSync } from "node:fs";

afterEach(cleanupDisks);

const JOBS: [string, string[]][] = [
  ["sequential 1 MiB, O_DIRECT", ["--rw=write", "--bs=1M", "--size=64M", "--direct=1"]],
  ["sequential 256 KiB, buffered", ["--rw=write", "--bs=256k", "--size=64M"]],
  ["random 4 KiB, 4 jobs on their own regions", ["--rw=randwrite", "--bs=4k", "--size=8M", "--numjobs=4", "--offset_increment=16M", "--direct=1"]],
  ["random mixed sizes 4k-300k, 2 jobs", ["--rw=randwrite", "--bsrange=4k-300k", "--size=16M", "--numjobs=2", "--offset_increment=32M"]],
];

test.each(JOBS)("fio --verify=crc32c: %s; verified again after a remount", async (_, args) => {
  const dir = tempDir("fio");
  try {
    const fio = (file: string, extra: string[]) => run([
      "fio", "--name=verify", `--filename=${file}`, "--ioengine=psync", "--verify=crc32c", "--verify_fatal=1",
      "--do_verify=1", "--verify_state_save=0", "--randseed=4242", "--group_reporting", "--output-format=terse", ...args, ...extra,
    ]);
    const disk = await mountDisk(["--blockSize=64k", "--size=128M"], { dir });
    const r = fio(disk.file, []);
    expect(`in the same mount: ${r.stderr}`).not.toMatch(/verify|bad|error/i);
    expect(r.code).toBe(0);
    await disk.unmount();
    const again = await mountDisk(["--blockSize=64k", "--size=128M"], { dir });
    const v = fio(again.file, ["--verify_only"]);
    expect(`after a remount: ${v.stderr}`).not.toMatch(/verify|bad|error/i);
    expect(v.code).toBe(0);
    await again.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});
