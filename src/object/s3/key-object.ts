/**
 * The key object in S3. One PUT replaces it whole or not at all (a body cut short by a crash fails
 * its Content-MD5 and is never stored), so a password change that dies at any moment leaves the
 * old object or the new one. The PUT is conditional, If-None-Match: * to create and If-Match: ETag
 * to replace, so that two writers at once cannot both believe they won. Where the condition fails:
 * - the object may be our own, stored by an attempt whose answer was lost and then retried: it is
 *   ours if its ETag is the MD5 of what we sent;
 * - Ceph RGW matches If-Match only against an unquoted ETag, AWS and others the quoted one: a 412
 *   with the object unchanged is tried once in the other form;
 * - a server that refuses the condition (501) gets a plain PUT, with a warning.
 */
import { ConfigError } from "../../errors.ts";
import { md5Base64, md5Hex } from "../../util/md5.ts";
import { KEY_OBJECT, type KeyObjectStore } from "../key-object.ts";
import type { S3Client, S3Response } from "./s3-client.ts";
import { unquote } from "./s3-store.ts";

const UNCONDITIONAL = "the server does not support conditional PUT: two changes of the key at the same moment are not kept apart";

export class S3KeyObject implements KeyObjectStore {
  readonly where: string;
  readonly warnings: string[] = [];
  private readonly key: string;

  constructor(
    private readonly client: S3Client,
    bucket: string,
    prefix: string,
  ) {
    this.key = prefix + KEY_OBJECT;
    this.where = `${bucket}/${this.key}`;
  }

  async read(): Promise<{ body: Uint8Array; etag: string } | undefined> {
    const r = await this.client.send({ method: "GET", kind: "GET", key: this.key, expect: [200, 404] });
    return r.status === 404 ? undefined : { body: r.body, etag: unquote(r.headers.get("etag")) };
  }

  async create(body: Uint8Array): Promise<boolean> {
    const r = await this.put(body, { "if-none-match": "*" });
    if (r.status === 200) return true;
    if (r.status === 501) return this.unconditional(body);
    return (await this.read())?.etag === md5Hex(body); // 412 or 409: there first, unless it is ours
  }

  async replace(body: Uint8Array, etag: string): Promise<boolean> {
    for (const form of [etag, `"${etag}"`]) {
      const r = await this.put(body, { "if-match": form });
      if (r.status === 200) return true;
      if (r.status === 501) return this.unconditional(body);
      const now = (await this.read())?.etag;
      if (now === md5Hex(body)) return true;
      if (now !== etag || r.status === 409) return false;
    }
    throw new ConfigError(`${this.where}: the server refuses If-Match though the object is unchanged: the key object was not changed`);
  }

  async delete(): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key: this.key, expect: [200, 204, 404] });
  }

  private put(body: Uint8Array, condition: Record<string, string>): Promise<S3Response> {
    const headers = { "content-type": "application/json", "content-md5": md5Base64(body), ...condition };
    return this.client.send({ method: "PUT", kind: "PUT", key: this.key, headers, body, expect: [200, 409, 412, 501] });
  }

  private async unconditional(body: Uint8Array): Promise<boolean> {
    this.warnings.push(UNCONDITIONAL);
    await this.client.send({ method: "PUT", kind: "PUT", key: this.key, headers: { "content-type": "application/json", "content-md5": md5Base64(body) }, body, expect: [200] });
    return true;
  }
}
