/** What the benchmarks share: running a command, a median, reading dd's and fio's figures, CPU time and idle time, waiting for a daemon to go. */
import { spawn, type Subprocess } from "bun";
import { readFileSync } from "node:fs";

export async function run(cmd: string[], env?: Record<string, string>): Promise<string> {
  const p = spawn(cmd, { stdout: "pipe", stderr: "pipe", env: env ?? (process.env as Record<string, string>) });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")}: exit ${code}: ${err}`);
  return out + err;
}

/** The median of some figures (the mean of the middle two for an even count; 0 for none). */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** MB/s of a dd run that copied `mib` MiB. */
export const ddRate = (out: string, mib: number) => (mib * 2 ** 20) / Number(/copied, ([\d.]+) s/.exec(out)![1]) / 1e6;

/** What fio reports for one job (all of them, with --group_reporting). */
export interface FioJob {
  read: { iops: number; bw_bytes: number };
  write: { iops: number; bw_bytes: number };
}

/** Runs fio with these arguments, reporting as one group, and returns its figures. */
export async function fio(args: string[]): Promise<FioJob> {
  const out = await run(["fio", ...args, "--group_reporting", "--output-format=json"]);
  return JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
}

/** The name (comm) of a process and the CPU-seconds (user + system) it has used so far, from /proc. */
export function processCpu(pid: number): { name: string; seconds: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  return { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), seconds: (Number(fields[11]) + Number(fields[12])) / 100 };
}

/** CPU-seconds the machine has spent idle or waiting for a disk so far, over all its cores (/proc/stat). */
export function idleCpu(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
  return (Number(fields[4]) + Number(fields[5])) / 100;
}

/** CPU-seconds of a process we started: from /proc while it runs, from its rusage once it has exited. */
export function childCpu(proc: Subprocess): number {
  if (proc.exitCode !== null) return Number(proc.resourceUsage()?.cpuTime.total ?? 0) / 1e6;
  return processCpu(proc.pid).seconds;
}

/** The bundled S3 server of `binary` in a process of its own (holding `bucket` if given): its URL, and how to stop it. */
export async function bundledServer(binary: string, access: string, secret: string, bucket?: string): Promise<{ url: string; stop(): Promise<void> }> {
  const server = spawn([binary, "s3-server", "--port=0", `--access-key=${access}`, `--secret-key=${secret}`, ...(bucket ? [`--bucket=${bucket}`] : [])], { stdout: "pipe", stderr: "inherit" });
  const reader = server.stdout.getReader();
  let said = "";
  while (!/http:\/\/\S+/.test(said)) said += new TextDecoder().decode((await reader.read()).value);
  return { url: /http:\/\/\S+/.exec(said)![0], stop: async () => void (server.kill(), await server.exited) };
}

/** Waits until no live s3backer serves `mnt` (a zombie counts as gone: nothing reaps it here). */
export async function waitGone(mnt: string): Promise<void> {
  for (;;) {
    const r = spawn(["pgrep", "-f", `s3backer.* ${mnt}$`], { stdout: "pipe" });
    const pids = (await new Response(r.stdout).text()).trim().split("\n").filter(Boolean);
    if (pids.every((p) => { try { return readFileSync(`/proc/${p}/stat`, "utf8").includes(") Z "); } catch { return true; } })) return;
    await Bun.sleep(100);
  }
}

/** Deletes every object of a bucket and the bucket (so repeated runs do not fill a real server). */
export async function removeBucket(aws: { fetch(url: string, init?: RequestInit): Promise<Response> }, baseURL: string, bucket: string): Promise<void> {
  for (;;) {
    const list = await (await aws.fetch(`${baseURL}${bucket}?list-type=2&max-keys=1000`)).text();
    const keys = [...list.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!);
    if (keys.length === 0) break;
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < keys.length) {
        const key = keys[next++]!.split("/").map(encodeURIComponent).join("/");
        await (await aws.fetch(`${baseURL}${bucket}/${key}`, { method: "DELETE" })).arrayBuffer();
      }
    }));
  }
  await (await aws.fetch(`${baseURL}${bucket}`, { method: "DELETE" })).arrayBuffer();
}
