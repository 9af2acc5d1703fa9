/**
 * The bundled server's requests on a bucket and on multipart uploads: create, list (v1 and v2),
 * location, uploads in progress, DeleteObjects, DeleteBucket; and create, part, list parts,
 * complete and abort of an upload. The server routes them here after checking the signature.
 */
import { md5Hex } from "../util/md5.ts";
import type { FaultSettings, ServerCounters } from "./faults.ts";
import { errorResponse, metaHeaders, objectEncoding, xmlResponse } from "./http-parts.ts";
import type { MultipartUploads } from "./multipart.ts";
import type { ServerStorage } from "./objects.ts";
import { completeXml, deleteResultXml, initiateXml, listXml, locationXml, parseDeleteRequest } from "./xml.ts";

const LIST_LIMIT = 1000;
const MAX_DELETE_KEYS = 1000;

/** What the handlers need of the server. */
export interface ServerParts {
  readonly objects: ServerStorage;
  readonly uploads: MultipartUploads;
  readonly counters: ServerCounters;
  readonly faults: FaultSettings;
  readonly region: string;
  readonly url: string;
  /** Keeps the old version of a key for the eventual-consistency fault, before it changes. */
  remember(bucket: string, key: string): void;
}

export class BucketRequests {
  constructor(private readonly s: ServerParts) {}

  handle(req: Request, bucket: string, url: URL, body: Uint8Array, resource: string): Response {
    if (req.method === "PUT") {
      this.s.objects.createBucket(bucket);
      return new Response(null, { status: 200 });
    }
    if (!this.s.objects.hasBucket(bucket)) return errorResponse(404, "NoSuchBucket", "The specified bucket does not exist", resource, req.method);
    const q = url.searchParams;
    if (req.method === "HEAD") return new Response(null, { status: 200 });
    if (req.method === "GET" && q.has("location")) return xmlResponse(200, locationXml(this.s.region ?? "us-east-1"));
    if (req.method === "GET" && q.has("uploads")) return xmlResponse(200, this.s.uploads.listUploads(bucket));
    if (req.method === "GET") return this.list(bucket, q);
    if (req.method === "POST" && q.has("delete")) return this.deleteObjects(req, bucket, body, resource);
    if (req.method === "DELETE") {
      if (this.s.objects.keys(bucket).length > 0) return errorResponse(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", resource, req.method);
      this.s.objects.deleteBucket(bucket);
      this.s.uploads.forget(bucket);
      return new Response(null, { status: 204 });
    }
    return errorResponse(405, "MethodNotAllowed", `${req.method} is not allowed on a bucket`, resource, req.method);
  }

  /** DeleteObjects: up to 1000 keys, the body's MD5 (or a checksum) given as AWS requires. */
  private deleteObjects(req: Request, bucket: string, body: Uint8Array, resource: string): Response {
    if (!this.s.faults.deleteObjects) return errorResponse(501, "NotImplemented", "A header you provided implies functionality that is not implemented", resource, "POST");
    const contentMd5 = req.headers.get("content-md5");
    const checksummed = [...req.headers.keys()].some((h) => h.startsWith("x-amz-checksum-"));
    if (contentMd5 === null && !checksummed) return errorResponse(400, "InvalidRequest", "Missing required header for this request: Content-MD5", resource, "POST");
    if (contentMd5 !== null && Buffer.from(contentMd5, "base64").toString("hex") !== md5Hex(body)) {
      return errorResponse(400, "BadDigest", "The Content-MD5 you specified did not match what we received", resource, "POST");
    }
    const request = parseDeleteRequest(new TextDecoder().decode(body));
    if (!request || request.keys.length > MAX_DELETE_KEYS) return errorResponse(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema", resource, "POST");
    for (const key of request.keys) {
      this.s.remember(bucket, key);
      this.s.objects.delete(bucket, key);
    }
    this.s.counters.bulkDeletedKeys += request.keys.length;
    return xmlResponse(200, deleteResultXml(request.quiet ? [] : request.keys));
  }

  multipart(req: Request, bucket: string, key: string, q: URLSearchParams, body: Uint8Array, resource: string): Response {
    const id = q.get("uploadId") ?? "";
    const answer = (r: string | { status: number; code: string; message: string } | undefined, ok: (text: string) => Response) =>
      typeof r === "object" ? errorResponse(r.status, r.code, r.message, resource, req.method) : ok(r ?? "");
    if (req.method === "POST" && q.has("uploads")) {
      const uploadId = this.s.uploads.create(bucket, key, {
        contentType: req.headers.get("content-type") ?? "binary/octet-stream",
        contentEncoding: objectEncoding(req.headers.get("content-encoding")),
        meta: metaHeaders(req.headers),
      });
      return xmlResponse(200, initiateXml(bucket, key, uploadId));
    }
    if (req.method === "PUT" && q.has("partNumber")) {
      const r = this.s.uploads.putPart(bucket, key, id, q.get("partNumber")!, body);
      return "etag" in r ? new Response(null, { status: 200, headers: { etag: `"${r.etag}"` } }) : answer(r, () => new Response());
    }
    if (req.method === "GET") return answer(this.s.uploads.listParts(bucket, key, id), (xml) => xmlResponse(200, xml));
    if (req.method === "DELETE") return answer(this.s.uploads.abort(bucket, key, id), () => new Response(null, { status: 204 }));
    if (req.method === "POST") {
      const done = this.s.uploads.complete(bucket, key, id, new TextDecoder().decode(body));
      if ("status" in done) return answer(done, () => new Response());
      this.s.remember(bucket, key);
      this.s.objects.put(bucket, key, done);
      return xmlResponse(200, completeXml(`${this.s.url}${bucket}/${key}`, bucket, key, done.etag));
    }
    return errorResponse(405, "MethodNotAllowed", `${req.method} is not allowed on a multipart upload`, resource, req.method);
  }

  private list(bucket: string, q: URLSearchParams): Response {
    const v2 = q.get("list-type") === "2";
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") || undefined;
    const maxKeys = Math.min(LIST_LIMIT, Number(q.get("max-keys") ?? LIST_LIMIT));
    const token = q.get("continuation-token") ?? undefined;
    const after = v2 ? (token !== undefined ? Buffer.from(token, "base64url").toString() : (q.get("start-after") ?? "")) : (q.get("marker") ?? "");
    const contents: { key: string; etag: string; size: number; lastModified: number }[] = [];
    const prefixes: string[] = [];
    let next: string | undefined;
    let last = "";
    const keys = this.s.objects.keys(bucket);
    const from = Math.max(firstAfter(keys, after), firstAfter(keys, prefix) - 1, 0);
    for (let i = from; i < keys.length; i++) {
      const key = keys[i]!;
      if (key > prefix && !key.startsWith(prefix)) break; // sorted: past the prefix's keys
      if (!key.startsWith(prefix) || key <= after) continue;
      if (contents.length + prefixes.length >= maxKeys) {
        next = last;
        break;
      }
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const common = key.slice(0, cut + delimiter!.length);
        if (!prefixes.includes(common)) prefixes.push(common);
      } else {
        const o = this.s.objects.get(bucket, key)!;
        contents.push({ key, etag: o.etag, size: o.body.length, lastModified: o.lastModified });
      }
      last = key;
    }
    let xml = listXml({
      bucket, prefix, delimiter, maxKeys, contents, commonPrefixes: prefixes,
      startAfter: v2 ? (q.get("start-after") ?? undefined) : undefined,
      continuationToken: token,
      nextContinuationToken: v2 && next !== undefined ? Buffer.from(next).toString("base64url") : undefined,
    });
    // ListObjects v1 marks truncation with IsTruncated and NextMarker instead of a token.
    if (!v2 && next !== undefined) xml = xml.replace("<IsTruncated>false</IsTruncated>", `<IsTruncated>true</IsTruncated><NextMarker>${next}</NextMarker>`);
    return xmlResponse(200, xml);
  }
}

/** The index of the first key greater than `bound` in sorted `keys`. */
function firstAfter(keys: readonly string[], bound: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= bound) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
