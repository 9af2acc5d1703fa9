/**
 * A mount whose CPU is measured right, for any s3backer (ours, upstream's, Debian's): it runs in the
 * foreground (-f) as our child, so the process measured is the one serving the mount, with all its
 * threads, from /proc while it runs and from its rusage once it has exited (no pgrep, no daemon
 * that forked away). What a benchmark prints next to the figures, so that a reader can judge them:
 * which build each row ran, how dear fresh memory was on the machine, and a warning when a figure
 * cannot be right.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import { readFileSync, readlinkSync, realpathSync } from "node:fs";
import { childCpu, run } from "./helpers.ts";

export interface MeasuredMount {
  proc: Subprocess;
  /** Minor page faults of the process so far (each one a fresh 4 KiB page or a huge page touched). */
  faults(): number;
  /** Unmounts, waits for the process to exit, and returns its CPU-seconds over its whole life. */
  stop(): Promise<number>;
}

const mounted = (mnt: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === mnt);

/** Mounts `args` (ending in the mount point `mnt`) with `binary -f`; resolves once mounted. */
export async function startMount(binary: string, args: string[], mnt: string): Promise<MeasuredMount> {
  const proc = spawn([binary, "-f", ...args], { stdout: "ignore", stderr: "pipe" });
  const errors = new Response(proc.stderr).text(); // drained all along: a full pipe would stall a chatty peer
  const until = Date.now() + 60_000;
  while (!mounted(mnt)) {
    if (proc.exitCode !== null || Date.now() > until) {
      proc.kill();
      throw new Error(`${binary} did not mount ${mnt}: ${await errors}`);
    }
    await Bun.sleep(20);
  }
  // The process measured must be the program asked for (a wrapper script would hide its CPU).
  const exe = readlinkSync(`/proc/${proc.pid}/exe`);
  if (exe !== realpathSync(binary)) throw new Error(`measuring pid ${proc.pid} (${exe}), not ${binary}: refusing`);
  return {
    proc,
    faults: () => {
      const stat = readFileSync(`/proc/${proc.pid}/stat`, "utf8");
      return Number(stat.slice(stat.lastIndexOf(") ") + 2).split(" ")[7]);
    },
    async stop() {
      await run(["umount", mnt]);
      await proc.exited;
      return childCpu(proc);
    },
  };
}

/** One line naming a build: its --version and, for a C build with debug info, the compiler's flags. */
export function describeBuild(binary: string): string {
  const out = spawnSync([binary, "--version"], { stdout: "pipe", stderr: "pipe" });
  const version = `${out.stdout.toString()}${out.stderr.toString()}`.trim().split("\n")[0];
  const info = spawnSync(["sh", "-c", `readelf --debug-dump=info '${binary}' 2>/dev/null | grep -m1 DW_AT_producer`], { stdout: "pipe" });
  const producer = /:\s*(GNU C.*)$/.exec(info.stdout.toString().trim())?.[1];
  return `${binary}: ${version}${producer ? `; built by ${producer}` : ""}`;
}

/**
 * What the first touch of fresh memory costs on this machine now, in µs per 4 KiB page (the kernel
 * clearing it, and on a virtual machine the host backing it). A program that takes fresh memory for
 * each block (upstream does: about 270k faults per GiB written) pays this per page, so its CPU per
 * GiB moves with it from hour to hour; compare rows only within one run.
 */
export function freshPageMicros(): number {
  const MiB = 256;
  const before = process.cpuUsage();
  for (let i = 0; i < 2; i++) {
    const b = new Uint8Array(MiB * 2 ** 20);
    for (let o = 0; o < b.length; o += 4096) b[o] = 1;
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / (2 * MiB * 256);
}

/** A mount's CPU per GiB that no s3backer can spend (a process idle while another did the work, or one that counted another's). */
export function implausible(cpuPerGiB: number): string | undefined {
  if (cpuPerGiB < 0.3) return `${cpuPerGiB.toFixed(2)} CPU-s/GiB is below what hashing and copying a GiB costs: the wrong process measured?`;
  if (cpuPerGiB > 15) return `${cpuPerGiB.toFixed(2)} CPU-s/GiB is beyond any build here: a debug build, debug logging, or another process counted?`;
  return undefined;
}
