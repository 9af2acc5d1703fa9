/**
 * The control channel of a mount: a Unix socket, `/run/s3backer/<hash>.sock` (for root; else
 * under $XDG_RUNTIME_DIR or the temp directory, per user), named by the bucket, the disk and the
 * token of the mount, which the disk's mounted flag holds: a command on this host reads the flag
 * and reaches the very process that set it, FUSE or NBD alike, however either spelled --baseURL.
 * One request a connection: a JSON line in, a JSON line out.
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, chmodSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { runtime } from "../../runtime/index.ts";
import type { StreamListener } from "../../runtime/runtime.ts";

export type ControlRequest = { op: "snapshot"; name: string } | { op: "resize"; size: number };
export type ControlAnswer = { ok: true; message: string } | { ok: false; error: string };

/** Where the mount that holds a disk's flag with `token` listens. */
export function controlPath(bucket: string, disk: string, token: number): string {
  const uid = process.getuid?.() ?? 0;
  const dir = uid === 0 ? "/run/s3backer" : join(process.env.XDG_RUNTIME_DIR || tmpdir(), `s3backer-${uid}`);
  const id = createHash("sha256").update(`${bucket}\n${disk}\n${token}`).digest("hex").slice(0, 32);
  return join(dir, `${id}.sock`);
}

/** Serves requests on the disk's control socket; undefined (with a warning) when it cannot. */
export async function listenControl(path: string, handle: (r: ControlRequest) => Promise<string>, log: Logger): Promise<{ close(): void } | undefined> {
  const dir = join(path, "..");
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    // Never a directory someone else could have planted (a link, or one writable by others).
    if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0) || st.mode & 0o022) throw new Error(`${dir} is not a private directory of this user`);
    if (await answers(path)) throw new Error(`another process answers on ${path}`);
    rmSync(path, { force: true });
  } catch (err) {
    log.warn(`no control socket (${messageOf(err)}): 's3backer snapshot' and 'resize' cannot reach this mount`);
    return undefined;
  }
  let listener: StreamListener;
  try {
    listener = await runtime.listenStream({ path }, (connection) => {
      let text = "";
      let done = false;
      return {
        data(chunk) {
          if (done) return;
          text += new TextDecoder().decode(chunk);
          if (!text.includes("\n")) return;
          done = true;
          void answer(text, handle).then((a) => {
            connection.write(new TextEncoder().encode(`${JSON.stringify(a)}\n`));
            connection.end();
          });
        },
        closed() {},
      };
    });
    chmodSync(path, 0o600);
  } catch (err) {
    log.warn(`no control socket at ${path} (${messageOf(err)}): 's3backer snapshot' and 'resize' cannot reach this mount`);
    return undefined;
  }
  log.debug(`control socket ${path}`);
  return {
    close() {
      listener.close();
      rmSync(path, { force: true });
    },
  };
}

async function answer(text: string, handle: (r: ControlRequest) => Promise<string>): Promise<ControlAnswer> {
  let request: ControlRequest;
  try {
    request = JSON.parse(text.slice(0, text.indexOf("\n"))) as ControlRequest;
  } catch {
    return { ok: false, error: "not a request" };
  }
  try {
    return { ok: true, message: await handle(request) };
  } catch (err) {
    return { ok: false, error: messageOf(err) };
  }
}

/** Whether a process listens at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/** Sends one request to the mount listening at `path`; undefined when none answers there. */
export function askMount(path: string, request: ControlRequest): Promise<ControlAnswer | undefined> {
  return new Promise((resolve) => {
    let text = "";
    let connected = false;
    const socket = createConnection(path);
    socket.once("connect", () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on("data", (chunk) => (text += chunk.toString()));
    socket.once("error", () => resolve(connected ? { ok: false, error: "the mount closed the control socket without an answer" } : undefined));
    socket.once("close", () => {
      if (!connected) return resolve(undefined);
      try {
        resolve(JSON.parse(text) as ControlAnswer);
      } catch {
        resolve({ ok: false, error: "the mount closed the control socket without an answer" });
      }
    });
  });
}
