/**
 * What TLS costs NBD: the product serving `--test :memory:` on loopback TCP, plain, X.509 (client
 * certificates required) and PSK (the TypeScript TLS 1.3 engine), the binary (Bun) and the
 * source under Deno, rows in turns. nbdcopy (4 connections, 1 MiB requests) writes 1 GiB of
 * random bytes, then reads them back to null:. Prints MB/s and the server's and nbdcopy's
 * CPU-seconds per GiB, as medians and ranges.
 *
 *   bun build.ts && bun bench/nbd-tls.ts [--runs=3] [--mib=1024] [--rows=bun,deno]
 */
import { spawn, type Subprocess } from "bun";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeCreds } from "../test/helpers/tls-creds.ts";
import { childCpu } from "./helpers.ts";

const arg = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback;
const RUNS = Number(arg("runs", "3"));
const MIB = Number(arg("mib", "1024"));
const RUNTIMES = arg("rows", "bun,deno").split(",");
const BINARY = join(import.meta.dir, "../dist/s3backer");
const DENO = [join(import.meta.dir, "../node_modules/.bin/deno"), "run", "-A", join(import.meta.dir, "../src/main.ts")];
const work = "/dev/shm/s3b-nbd-tls-bench";

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const creds = makeCreds(work);
const image = join(work, "image");
{
  const chunk = new Uint8Array(1 << 20);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < MIB; i++) parts.push(crypto.getRandomValues(chunk.slice()) as Uint8Array);
  writeFileSync(image, Buffer.concat(parts));
}

const MODES = {
  plain: { flags: [] as string[], uri: (port: number) => `nbd://127.0.0.1:${port}/` },
  x509: {
    flags: [`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${creds.serverKey}`, `--nbd-tls-ca=${creds.caCert}`],
    uri: (port: number) => `nbds://127.0.0.1:${port}/?tls-certificates=${creds.client}`,
  },
  psk: { flags: [`--nbd-tls-psk=${creds.psk}`], uri: (port: number) => `nbds://alice@127.0.0.1:${port}/?tls-psk-file=${creds.psk}` },
};
type Mode = keyof typeof MODES;

async function startServer(runtime: string, mode: Mode): Promise<{ proc: Subprocess; port: number }> {
  const command = runtime === "bun" ? [BINARY] : DENO;
  const proc = spawn([...command, "-f", "--nbd", "--test", "--size=2G", "--blockSize=1M", "--blockCacheSize=1100", ...MODES[mode].flags, ":memory:", "tcp:127.0.0.1:0"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let said = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${runtime} ${mode} did not start: ${said}`);
    said += new TextDecoder().decode(value);
    const port = /serving NBD on tcp:127\.0\.0\.1:(\d+)/.exec(said)?.[1];
    if (port) {
      void (async () => { while (!(await reader.read()).done); })(); // keep draining its log
      return { proc, port: Number(port) };
    }
  }
}

/** One nbdcopy: MB/s, and CPU-seconds per GiB of the server and of nbdcopy. */
async function copy(server: Subprocess, from: string, to: string): Promise<[number, number, number]> {
  const cpu0 = childCpu(server);
  const started = performance.now();
  const client = spawn(["nbdcopy", "--request-size=1048576", "-C", "4", from, to], { stdout: "ignore", stderr: "pipe" });
  if ((await client.exited) !== 0) throw new Error(`nbdcopy ${from} ${to}: ${await new Response(client.stderr).text()}`);
  const seconds = (performance.now() - started) / 1000;
  const gib = MIB / 1024;
  const clientCpu = Number(client.resourceUsage()?.cpuTime.total ?? 0) / 1e6;
  return [(MIB * 2 ** 20) / seconds / 1e6, (childCpu(server) - cpu0) / gib, clientCpu / gib];
}

type Row = { write: number; writeCpu: number; writeClient: number; read: number; readCpu: number; readClient: number };

async function row(runtime: string, mode: Mode): Promise<Row> {
  const { proc, port } = await startServer(runtime, mode);
  try {
    const uri = MODES[mode].uri(port);
    const [write, writeCpu, writeClient] = await copy(proc, image, uri);
    const [read, readCpu, readClient] = await copy(proc, uri, "null:");
    return { write, writeCpu, writeClient, read, readCpu, readClient };
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

const rows = RUNTIMES.flatMap((r) => (Object.keys(MODES) as Mode[]).map((m) => [r, m] as const));
const results = new Map<string, Row[]>();
for (let round = 0; round < RUNS; round++) {
  // Rows in turns, the order rotated each round.
  const order = rows.map((_, i) => rows[(i + round) % rows.length]!);
  for (const [runtime, mode] of order) {
    const name = `${runtime} ${mode}`;
    const r = await row(runtime, mode);
    results.set(name, [...(results.get(name) ?? []), r]);
    console.error(`round ${round + 1} ${name}: ${JSON.stringify(r, (_, v) => (typeof v === "number" ? Number(v.toFixed(2)) : v))}`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[], d = 0) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
console.log(`${MIB} MiB each way, ${RUNS} rounds: median (min-max)\n`);
console.log("| row | write MB/s | server CPU-s/GiB | nbdcopy CPU-s/GiB | read MB/s | server CPU-s/GiB | nbdcopy CPU-s/GiB |");
console.log("|---|---|---|---|---|---|---|");
for (const [name, rs] of results) {
  const col = (k: keyof Row, d = 0) => fmt(rs.map((r) => r[k]), d);
  console.log(`| ${name} | ${col("write")} | ${col("writeCpu", 2)} | ${col("writeClient", 2)} | ${col("read")} | ${col("readCpu", 2)} | ${col("readClient", 2)} |`);
}
for (const runtime of RUNTIMES) {
  const plain = results.get(`${runtime} plain`)!;
  for (const mode of ["x509", "psk"]) {
    const rs = results.get(`${runtime} ${mode}`)!;
    const ratio = (k: keyof Row) => (median(rs.map((r) => r[k])) / median(plain.map((r) => r[k]))).toFixed(2);
    console.log(`${runtime} ${mode} / plain: write ${ratio("write")}x, read ${ratio("read")}x`);
  }
}
rmSync(work, { recursive: true, force: true });
