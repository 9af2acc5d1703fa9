/**
 * Multipart uploads of the embedded server, as AWS does them for the clients a user has (the AWS
 * CLI and s3cmd send big files this way): create, upload part, list parts, complete, abort, and
 * the bucket's list of uploads in progress. Parts live in memory until completed or aborted.
 * The completed object's ETag is AWS's: the MD5 of the parts' MD5s, then "-" and the part count.
 */
import { createHash, randomUUID } from "node:crypto";
import { md5Hex } from "../util/md5.ts";
import { concatBytes } from "../util/bytes.ts";
import { decodeXml, escapeXml } from "../util/xml.ts";
import type { ServerObject } from "./objects.ts";

export const MIN_PART = 5 * 2 ** 20;
export const MAX_PARTS = 10_000;

interface Upload {
  bucket: string;
  key: string;
  started: number;
  /** What the object will carry: type, encoding, x-amz-meta-*. */
  template: Omit<ServerObject, "body" | "etag" | "lastModified">;
  parts: Map<number, { body: Uint8Array; etag: string; at: number }>;
}

export type Failure = { status: number; code: string; message: string };
const fail = (status: number, code: string, message: string): Failure => ({ status, code, message });

export class MultipartUploads {
  private readonly uploads = new Map<string, Upload>();

  create(bucket: string, key: string, template: Upload["template"]): string {
    const id = randomUUID().replace(/-/g, "");
    this.uploads.set(id, { bucket, key, started: Date.now(), template, parts: new Map() });
    return id;
  }

  /** The upload `id` of this object, or a NoSuchUpload failure. */
  private find(bucket: string, key: string, id: string): Upload | Failure {
    const upload = this.uploads.get(id);
    if (!upload || upload.bucket !== bucket || upload.key !== key) {
      return fail(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.");
    }
    return upload;
  }

  putPart(bucket: string, key: string, id: string, partNumber: string, body: Uint8Array): { etag: string } | Failure {
    const upload = this.find(bucket, key, id);
    if ("status" in upload) return upload;
    const n = Number(partNumber);
    if (!/^\d+$/.test(partNumber) || n < 1 || n > MAX_PARTS) return fail(400, "InvalidArgument", `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`);
    const etag = md5Hex(body);
    upload.parts.set(n, { body: body.slice(), etag, at: Date.now() });
    return { etag };
  }

  listParts(bucket: string, key: string, id: string): string | Failure {
    const upload = this.find(bucket, key, id);
    if ("status" in upload) return upload;
    const parts = [...upload.parts.entries()].sort((a, b) => a[0] - b[0]);
    return (
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
      `<Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${id}</UploadId>` +
      `<MaxParts>${MAX_PARTS}</MaxParts><IsTruncated>false</IsTruncated>` +
      parts.map(([n, p]) => `<Part><PartNumber>${n}</PartNumber><LastModified>${new Date(p.at).toISOString()}</LastModified><ETag>&quot;${p.etag}&quot;</ETag><Size>${p.body.length}</Size></Part>`).join("") +
      `</ListPartsResult>`
    );
  }

  /** Joins the parts the client lists (in ascending order, ETags matching) into the object. */
  complete(bucket: string, key: string, id: string, requestXml: string): ServerObject | Failure {
    const upload = this.find(bucket, key, id);
    if ("status" in upload) return upload;
    const asked = [...requestXml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
      n: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]),
      etag: decodeXml(/<ETag>([^<]*)<\/ETag>/.exec(m[1]!)?.[1] ?? "").replace(/"/g, ""),
    }));
    if (asked.length === 0) return fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema");
    const chosen = [];
    for (const [i, a] of asked.entries()) {
      if (i > 0 && a.n <= asked[i - 1]!.n) return fail(400, "InvalidPartOrder", "The list of parts was not in ascending order.");
      const part = upload.parts.get(a.n);
      if (!part || part.etag !== a.etag) return fail(400, "InvalidPart", "One or more of the specified parts could not be found.");
      if (i < asked.length - 1 && part.body.length < MIN_PART) return fail(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size");
      chosen.push(part);
    }
    this.uploads.delete(id);
    const digests = concatBytes(chosen.map((p) => Buffer.from(p.etag, "hex")));
    const etag = `${createHash("md5").update(digests).digest("hex")}-${chosen.length}`;
    return { ...upload.template, body: concatBytes(chosen.map((p) => p.body)), etag, lastModified: Date.now() };
  }

  abort(bucket: string, key: string, id: string): Failure | undefined {
    const upload = this.find(bucket, key, id);
    if ("status" in upload) return upload;
    this.uploads.delete(id);
    return undefined;
  }

  /** ListMultipartUploads: those of a bucket still in progress. */
  listUploads(bucket: string): string {
    const mine = [...this.uploads.entries()].filter(([, u]) => u.bucket === bucket).sort((a, b) => (a[1].key < b[1].key ? -1 : 1));
    return (
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
      `<Bucket>${escapeXml(bucket)}</Bucket><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
      mine.map(([id, u]) => `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${id}</UploadId><Initiated>${new Date(u.started).toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`).join("") +
      `</ListMultipartUploadsResult>`
    );
  }

  /** Drops a bucket's uploads (when the bucket goes). */
  forget(bucket: string): void {
    for (const [id, u] of this.uploads) if (u.bucket === bucket) this.uploads.delete(id);
  }
}
