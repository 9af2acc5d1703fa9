/**
 * Background mode, the default as in the original: the command starts a detached copy of itself
 * and returns only once that copy has mounted (exit 0) or failed (its exit code, its message on
 * stderr). So `s3backer ... && mkfs.ext4 ...` in a script is safe.
 */
import { spawn } from "node:child_process";
import { runtime } from "../runtime/index.ts";
import { PASSWORD_ON_STDIN } from "./password.ts";

const CHILD_ENV = "S3BACKER_DAEMON_CHILD";
const READY = "ready\n";

export const isDaemonChild = () => process.env[CHILD_ENV] === "1";

/** In the daemon: tell the waiting parent the mount is up (its pipe on our stdout closes after). */
export function announceReady(): void {
  process.stdout.write(READY);
}

/**
 * In the parent: start the daemon and wait for its word. Resolves with the exit code for the parent.
 * A password typed at the prompt goes to the child on its stdin.
 */
export function startDaemon(args: readonly string[], password?: string): Promise<number> {
  const [command, ...prefix] = runtime.selfCommand();
  const child = spawn(command!, [...prefix, ...args], {
    detached: true,
    stdio: [password === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    env: { ...process.env, [CHILD_ENV]: "1", ...(password === undefined ? {} : { [PASSWORD_ON_STDIN]: "1" }) },
  });
  if (password !== undefined) child.stdin!.end(`${password}\n`);
  return new Promise((resolve) => {
    let out = "";
    child.stderr!.on("data", (chunk: Buffer) => process.stderr.write(chunk));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(READY)) {
        child.stdout!.destroy();
        child.stderr!.destroy();
        child.unref();
        resolve(0);
      }
    });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    child.on("error", (err) => {
      process.stderr.write(`s3backer: cannot start the background process: ${err.message}\n`);
      resolve(1);
    });
  });
}

/**
 * A mount runs with the runtime's allocator settings (runtime.ts), which the allocator reads when
 * the process starts: those missing from the environment are added to it, for the background
 * process to inherit; in the foreground this process starts itself again with them, in place (same
 * PID). Returns why it could not, if it could not.
 */
export function applyAllocatorSettings(foreground: boolean): string | undefined {
  const missing = Object.entries(runtime.allocatorSettings).filter(([name]) => process.env[name] === undefined);
  if (missing.length === 0) return undefined;
  for (const [name, value] of missing) process.env[name] = value;
  if (!foreground || !runtime.exec) return undefined;
  return runtime.exec([...runtime.selfCommand(), ...process.argv.slice(2)], process.env as Record<string, string>).message;
}
