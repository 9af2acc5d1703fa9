/**
 * Helpers for the tests of layered disks (clones, snapshots, flatten, resize): async commands (the
 * embedded S3 server lives in the test's process and must keep answering), loop devices and ext4
 * mounts undone even when a test fails, a bucket's objects with their ETags, and buckets removed
 * afterwards.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { BINARY, isMounted, runAsync } from "./disk.ts";
import { rawClient, type Peer } from "./s3.ts";

/** Runs a command (async) and throws with its stderr if it fails. */
export async function sh(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** dist/s3backer with the peer's flags, as a command (snapshot, info, ...): its exit code and output. */
export function s3backer(peer: Peer, ...args: string[]) {
  const [first, ...rest] = args;
  const flags = [`--baseURL=${peer.url}`, `--accessId=${peer.accessKey}`, `--accessKey=${peer.secretKey}`];
  const command = ["snapshot", "flatten", "info", "resize"].includes(first!) ? [first!, ...flags, ...rest] : [...flags, ...args];
  return runAsync([BINARY, ...command]);
}

/** Undo steps of a test, run last first, whatever happened. */
export class Undo {
  private steps: (() => Promise<unknown>)[] = [];
  push(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) await step().catch(() => {});
  }

  async loop(file: string, readOnly = false): Promise<string> {
    const dev = (await sh(["losetup", "--direct-io=on", ...(readOnly ? ["-r"] : []), "-f", "--show", file])).trim();
    this.push(() => runAsync(["losetup", "-d", dev]));
    return dev;
  }

  /** A mount that should never happen (a refusal under test): undone if it did (the test's server is still up, so it exits). */
  unmountIfMounted(mnt: string): void {
    this.push(async () => {
      if (isMounted(mnt)) await runAsync(["umount", mnt]);
    });
  }

  async mountExt4(dev: string, at: string, options = "noinit_itable"): Promise<void> {
    mkdirSync(at, { recursive: true });
    await sh(["mount", "-t", "ext4", "-o", options, dev, at]);
    this.push(async () => {
      if (isMounted(at)) await runAsync(["umount", at]);
    });
  }
}

/** Every key under `prefix` with its ETag and size, in order (several pages). */
export async function objectsOf(peer: Peer, bucket: string, prefix = ""): Promise<Map<string, { etag: string; size: number }>> {
  const s3 = rawClient(peer);
  const found = new Map<string, { etag: string; size: number }>();
  let token: string | undefined;
  do {
    const q = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
    const xml = new TextDecoder().decode((await s3("GET", `${bucket}?${q}`)).body);
    for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const key = /<Key>([^<]*)</.exec(m[1]!)![1]!.replace(/&amp;/g, "&");
      found.set(key, { etag: /<ETag>([^<]*)</.exec(m[1]!)![1]!.replace(/&quot;|"/g, ""), size: Number(/<Size>(\d+)</.exec(m[1]!)![1]) });
    }
    token = /<IsTruncated>true</.test(xml) ? /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] : undefined;
  } while (token);
  return found;
}

/** Deletes every object of a bucket (DeleteObjects, 1000 keys a request), then the bucket. */
export async function dropBucket(peer: Peer, bucket: string): Promise<void> {
  const s3 = rawClient(peer);
  const keys = [...(await objectsOf(peer, bucket)).keys()];
  for (let i = 0; i < keys.length; i += 1000) {
    const body = `<Delete><Quiet>true</Quiet>${keys.slice(i, i + 1000).map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join("")}</Delete>`;
    await s3("POST", `${bucket}?delete`, { body, headers: { "content-md5": createHash("md5").update(body).digest("base64") } });
  }
  await s3("DELETE", bucket);
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
