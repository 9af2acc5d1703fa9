/** fio writes and verifies checksummed patterns through the mount: sequential, random, parallel. */
import { afterEach, expect, test } from "bun:test";
import { cleanupDisks, mountDisk, run } from "./helpers/disk.ts";

afterEach(cleanupDisks);

const JOBS: [string, string[]][] = [
  ["sequential 1 MiB, O_DIRECT", ["--rw=write", "--bs=1M", "--size=64M", "--direct=1"]],
  ["sequential 256 KiB, buffered", ["--rw=write", "--bs=256k", "--size=64M"]],
  ["random 4 KiB, 4 jobs on their own regions", ["--rw=randwrite", "--bs=4k", "--size=8M", "--numjobs=4", "--offset_increment=16M", "--direct=1"]],
  ["random mixed sizes 4k-300k, 2 jobs", ["--rw=randwrite", "--bsrange=4k-300k", "--size=16M", "--numjobs=2", "--offset_increment=32M"]],
];

test.each(JOBS)("fio --verify=crc32c: %s", async (_, args) => {
  const disk = await mountDisk(["--blockSize=64k", "--size=128M"]);
  const r = run([
    "fio", "--name=verify", `--filename=${disk.file}`, "--ioengine=psync", "--verify=crc32c", "--verify_fatal=1",
    "--do_verify=1", "--verify_state_save=0", "--group_reporting", "--output-format=terse", ...args,
  ]);
  expect(r.stderr).not.toMatch(/verify|bad|error/i);
  expect(r.code).toBe(0);
  await disk.unmount();
});
