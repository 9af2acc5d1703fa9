/**
 * The 'already mounted' flag object, as the original names and writes it: `<prefix>s3backer-mounted`
 * holding the host name and time. It is created with `If-None-Match: *`, so of two mounts that race
 * only one can win where the server honours conditional writes.
 */
import { hex8 } from "../block-names.ts";
import { flagText, MOUNTED_FLAG, mountedError, type MountFlagStore } from "../mount-flag.ts";
import type { S3Client } from "./s3-client.ts";

const TOKEN_HEADER = "x-amz-meta-s3backer-mount-token";

export class S3MountFlag implements MountFlagStore {
  readonly key: string;
  constructor(
    private readonly client: S3Client,
    prefix: string,
  ) {
    this.key = prefix + MOUNTED_FLAG;
  }

  /** Who holds the flag ("host since time"), or undefined when it is clear. */
  async holder(): Promise<string | undefined> {
    const r = await this.client.send({ method: "GET", kind: "GET", key: this.key, expect: [200, 404] });
    return r.status === 404 ? undefined : new TextDecoder().decode(r.body).trim().replace(/\n/g, " since ") || "unknown";
  }

  async token(): Promise<number | undefined> {
    const r = await this.client.send({ method: "HEAD", kind: "HEAD", key: this.key, expect: [200, 404] });
    if (r.status === 404) return undefined;
    return parseInt(r.headers.get(TOKEN_HEADER) ?? "0", 16) || 0;
  }

  async acquire(force: boolean, token: number): Promise<void> {
    const body = new TextEncoder().encode(flagText());
    const headers: Record<string, string> = { "content-type": "text/plain", [TOKEN_HEADER]: hex8(token) };
    if (!force) {
      const holder = await this.holder();
      if (holder) throw mountedError(this.key, holder);
      headers["if-none-match"] = "*";
    }
    const r = await this.client.send({ method: "PUT", kind: "PUT", key: this.key, headers, body, expect: [200, 412] });
    // A retry of a PUT whose answer was lost finds the flag it stored itself.
    if (r.status === 412 && (await this.token()) !== token) {
      throw mountedError(this.key, (await this.holder()) ?? "another mount that just won the race");
    }
  }

  async clear(): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key: this.key, expect: [200, 204, 404] });
  }
}
