/**
 * Deletes gathered into DeleteObjects requests (`POST ?delete`, up to 1000 keys each): the
 * deletes asked for within one turn of the event loop (a trim, an erase) go out together, a few
 * requests at a time, so freeing a terabyte costs a few thousand requests instead of a million.
 * A server that does not know the request (501, 405, or 400 with a code naming the method) gets
 * single DELETEs from then on. A key counts as deleted only when the answer names it under
 * <Deleted>: one it reports as failed, or leaves out (an answer that broke off), is tried alone.
 */
import { Errno, FsError } from "../../errors.ts";
import { md5Base64 } from "../../util/md5.ts";
import { decodeXml, escapeXml } from "../../util/xml.ts";
import type { Logger } from "../../log.ts";
import type { S3Client } from "./s3-client.ts";

export const MAX_KEYS = 1000;
const IN_FLIGHT = 4;

interface Pending {
  key: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class BulkDeleter {
  private pending: Pending[] = [];
  private scheduled = false;
  private inFlight = 0;
  private supported = true;

  constructor(
    private readonly client: S3Client,
    private readonly log: Logger,
  ) {}

  delete(key: string): Promise<void> {
    if (!this.supported) return this.single(key);
    return new Promise((resolve, reject) => {
      this.pending.push({ key, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  private pump(): void {
    while (this.pending.length > 0 && this.inFlight < IN_FLIGHT) {
      const batch = this.pending.splice(0, MAX_KEYS);
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async send(batch: Pending[]): Promise<void> {
    if (batch.length === 1 || !this.supported) return this.each(batch);
    const body = new TextEncoder().encode(deleteXml(batch.map((p) => p.key)));
    let deleted: Set<string>;
    try {
      const r = await this.client.send({
        method: "POST", kind: "DELETE", key: "", query: { delete: "" }, body,
        headers: { "content-md5": md5Base64(body), "content-type": "application/xml" },
        expect: [200, 400, 405, 501],
      });
      if (r.status !== 200) {
        const code = /<Code>([^<]+)<\/Code>/.exec(new TextDecoder().decode(r.body))?.[1] ?? "";
        if (r.status === 400 && !/NotImplemented|MethodNotAllowed|InvalidRequest|UnsupportedOperation/.test(code)) {
          throw new FsError(Errno.EIO, `DeleteObjects: HTTP 400 ${code}`);
        }
        if (this.supported) this.log.warn(`the server does not take DeleteObjects (HTTP ${r.status}${code ? ` ${code}` : ""}): deleting one object per request`);
        this.supported = false;
        return this.each(batch);
      }
      deleted = new Set([...new TextDecoder().decode(r.body).matchAll(/<Deleted>(?:(?!<\/Deleted>)[\s\S])*?<Key>([^<]*)<\/Key>/g)].map((m) => decodeXml(m[1]!)));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    await this.each(batch.filter((p) => !deleted.has(p.key)));
    for (const p of batch) if (deleted.has(p.key)) p.resolve();
  }

  private async each(batch: Pending[]): Promise<void> {
    await Promise.all(batch.map((p) => this.single(p.key).then(p.resolve, p.reject)));
  }

  private async single(key: string): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key, expect: [200, 204, 404] });
  }
}

/** The DeleteObjects body, not quiet: the answer names every key deleted. */
export function deleteXml(keys: readonly string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${keys.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join("")}</Delete>`;
}
