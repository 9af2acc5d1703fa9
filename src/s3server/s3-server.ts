/**
 * The embedded S3 server: the subset of S3 that s3backer uses, over real HTTP, with SigV4 checked
 * (headers or a presigned URL), Content-MD5 checked, conditional requests, Range, ListObjects (v1
 * and v2), DeleteObjects, CopyObject (copy-object.ts), and fault injection; and what a user's AWS CLI or s3cmd needs to look at
 * or clean a bucket: ListBuckets, DeleteBucket, GetBucketLocation, multipart uploads (multipart.ts).
 * It backs the tests and the quick-start demo, and runs as `s3backer s3-server`.
 *
 * What it promises to a client it does not trust: the signature is checked before the body is
 * read or the key is parsed; every error is an S3 XML error with a 4xx code for the client's
 * mistakes, and a bare 500 with no details for its own; keys are up to 1024 bytes of UTF-8.
 * It speaks plain HTTP unless given a certificate, and listens on loopback unless told otherwise.
 */
import { md5Hex } from "../util/md5.ts";
import { runtime } from "../runtime/index.ts";
import { delay } from "../util/delay.ts";
import type { HttpServer } from "../runtime/runtime.ts";
import { delayFor, NO_FAULTS, ServerCounters, type FaultSettings, type ServerRequestKind } from "./faults.ts";
import { MemoryStorage, type ServerStorage, type ServerObject } from "./objects.ts";
import { checkPayload, verifySigV4, type Credential } from "./sigv4-verify.ts";
import { messageOf } from "../errors.ts";
import { isBucketName } from "../util/bucket-name.ts";
import { MultipartUploads } from "./multipart.ts";
import { aclXml, bucketsXml } from "./xml.ts";
import { BucketRequests, type ServerParts } from "./bucket-requests.ts";
import { crc32ToBase64 } from "../util/checksum.ts";
import { errorResponse, metaHeaders, objectEncoding, xmlResponse } from "./http-parts.ts";
import { COPY_SOURCE, copyObject } from "./copy-object.ts";

export interface S3ServerOptions {
  /** Where objects live (default: memory). */
  objects?: ServerStorage;
  /** Access key ID -> secret (and optional session token). */
  credentials: Record<string, Credential>;
  /** Buckets that exist from the start. */
  buckets?: string[];
  /** Let unsigned requests read (a public bucket). */
  anonymousRead?: boolean;
  port?: number;
  hostname?: string;
  /** PEM certificate and key: serve https. */
  tls?: { cert: string; key: string };
  /** Called with every object request's headers (tests check what a client sends). */
  onRequest?: (method: string, key: string, headers: Headers) => void;
  /** The region clients must sign for (default us-east-1). */
  region?: string;
}

interface Stale {
  previous: ServerObject | undefined;
  until: number;
}

/** Sub-resources a client may ask about that this server does not keep (only a private ACL). */
const SUBRESOURCES = ["acl", "policy", "cors", "lifecycle", "tagging", "versioning", "website", "logging", "notification", "replication", "encryption", "accelerate", "requestPayment", "object-lock", "retention", "legal-hold", "ownershipControls", "publicAccessBlock", "versions", "torrent", "restore", "select", "analytics", "inventory", "metrics", "intelligent-tiering"];
const MAX_KEY_BYTES = 1024;
const MAX_BODY = 256 * 2 ** 20;
const utf8 = new TextEncoder();

export class S3Server implements ServerParts {
  readonly objects: ServerStorage;
  readonly counters = new ServerCounters();
  faults: FaultSettings = { ...NO_FAULTS };
  private readonly credentials: Map<string, Credential>;
  private readonly stale = new Map<string, Stale>();
  readonly uploads = new MultipartUploads();
  readonly region: string;
  private readonly buckets: BucketRequests;
  private http: HttpServer | undefined;

  constructor(private readonly options: S3ServerOptions) {
    this.objects = options.objects ?? new MemoryStorage();
    this.credentials = new Map(Object.entries(options.credentials));
    for (const b of options.buckets ?? []) this.objects.createBucket(b);
    this.region = options.region ?? "us-east-1";
    this.buckets = new BucketRequests(this);
  }

  /** Starts listening (port 0: the OS picks a free port) and returns the base URL. */
  start(): string {
    this.http = runtime.serve(
      { port: this.options.port ?? 0, hostname: this.options.hostname ?? "127.0.0.1", ...(this.options.tls ? { tls: this.options.tls } : {}) },
      (req) => this.handle(req),
    );
    return this.url;
  }

  get url(): string {
    return `${this.options.tls ? "https" : "http"}://${this.options.hostname ?? "127.0.0.1"}:${this.http!.port}/`;
  }

  async stop(): Promise<void> {
    await this.http?.stop();
  }

  /** Sets some fault settings (the rest keep their values); `reset()` clears them all. */
  setFaults(settings: Partial<FaultSettings>): void {
    this.faults = { ...this.faults, ...settings };
  }

  reset(): void {
    this.faults = { ...NO_FAULTS };
    this.stale.clear();
    this.counters.reset();
  }

  async handle(req: Request): Promise<Response> {
    try {
      return await this.route(req);
    } catch (err) {
      // Our own fault, or a client gone mid-body: one line here, no details to the client.
      process.stderr.write(`s3-server: ${req.method} failed: ${messageOf(err)}\n`);
      return this.error(500, "InternalError", "We encountered an internal error. Please try again.", "", req.method);
    }
  }

  private async route(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const [, bucket = "", ...rest] = url.pathname.split("/");
    const rawKey = rest.join("/");
    const kind: ServerRequestKind =
      rawKey === ""
        ? req.method === "GET" && bucket ? "LIST" : req.method === "POST" && url.searchParams.has("delete") ? "BULK_DELETE" : "OTHER"
        : ["GET", "PUT", "DELETE", "HEAD"].includes(req.method) ? (req.method as ServerRequestKind) : "OTHER";
    this.counters.requests[kind]++;
    const resource = url.pathname;
    if (Date.now() < this.faults.downUntil) {
      this.counters.refusedWhileDown++;
      return this.broken();
    }

    const latency = delayFor(this.faults.latencyMs) + (kind === "LIST" ? this.faults.listLatencyMs : 0);
    if (latency > 0) {
      this.counters.delayedRequests++;
      await delay(latency);
    }

    const readOnly = req.method === "GET" || req.method === "HEAD";
    const verdict = verifySigV4(req, this.credentials, readOnly && this.options.anonymousRead === true, this.region);
    if (!verdict.ok) {
      this.counters.rejectedSignatures++;
      return this.error(verdict.status, verdict.code, verdict.message, resource, req.method);
    }
    if (bucket && !isBucketName(bucket)) return this.error(400, "InvalidBucketName", "The specified bucket is not valid.", resource, req.method);
    let key: string;
    try {
      key = decodeURIComponent(rawKey);
    } catch {
      return this.error(400, "InvalidURI", "Couldn't parse the specified URI.", resource, req.method);
    }
    if (utf8.encode(key).length > MAX_KEY_BYTES) return this.error(400, "KeyTooLongError", "Your key is too long", resource, req.method);
    if (Number(req.headers.get("content-length") ?? 0) > MAX_BODY) return this.error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", resource, req.method);
    let raw: Uint8Array;
    try {
      raw = new Uint8Array(await req.arrayBuffer());
    } catch {
      // The client went away mid-body (say, an upload it gave up on): nobody to answer, nothing to log.
      return this.error(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header", resource, req.method);
    }
    this.counters.bytesIn += raw.length;
    const payload = checkPayload(verdict, raw);
    if (!("data" in payload)) return this.error(payload.status, payload.code, payload.message, resource, req.method);
    const body = payload.data;
    if (key !== "") this.options.onRequest?.(req.method, key, req.headers);

    const affected = key !== "" && (!this.faults.keyPattern || this.faults.keyPattern.test(key));
    if (affected && Math.random() < this.faults.errorRate) {
      this.counters.injectedErrors++;
      const status = this.faults.errorStatuses[Math.floor(Math.random() * this.faults.errorStatuses.length)]!;
      const code = status === 503 ? "SlowDown" : status === 500 ? "InternalError" : "ServiceUnavailable";
      return this.error(status, code, "injected fault", resource, req.method);
    }
    const drop = affected && Math.random() < this.faults.dropRate;
    const lose = affected && req.method === "PUT" && this.faults.lostPutAnswers > 0;
    if (lose) this.faults.lostPutAnswers--;

    if (!bucket) {
      if (req.method === "GET") return this.xml(200, bucketsXml(this.objects.buckets(), verdict.accessKeyId ?? "anonymous"));
      return this.error(405, "MethodNotAllowed", `${req.method} is not allowed on the service`, resource, req.method);
    }
    const q = url.searchParams;
    const sub = SUBRESOURCES.find((name) => q.has(name));
    if (sub === "acl" && req.method === "GET" && this.objects.hasBucket(bucket) && (key === "" || this.objects.get(bucket, key))) {
      return this.xml(200, aclXml(verdict.accessKeyId ?? "anonymous"));
    }
    if (sub) return this.error(501, "NotImplemented", `?${sub} is not supported by this server`, resource, req.method);
    let response: Response;
    if (key === "") response = this.buckets.handle(req, bucket, url, body, resource);
    else if (!this.objects.hasBucket(bucket)) response = this.error(404, "NoSuchBucket", "The specified bucket does not exist", resource, req.method);
    else if (q.has("uploads") || q.has("uploadId")) response = this.buckets.multipart(req, bucket, key, q, body, resource);
    else {
      switch (req.method) {
        case "PUT":
          response = req.headers.has(COPY_SOURCE) ? copyObject(this, req, bucket, key, resource) : this.putObject(req, bucket, key, body, resource);
          break;
        case "GET":
        case "HEAD":
          response = this.getObject(req, bucket, key, resource);
          break;
        case "DELETE":
          this.remember(bucket, key);
          this.objects.delete(bucket, key);
          response = new Response(null, { status: 204 });
          break;
        default:
          response = this.error(405, "MethodNotAllowed", `${req.method} is not allowed on an object`, resource, req.method);
      }
    }
    if (lose) return this.lost(req, response);
    if (drop) return this.dropped(response);
    return response;
  }

  /** A request carried out whose answer never comes: held until the client gives up on it. */
  private async lost(req: Request, response: Response): Promise<Response> {
    this.counters.droppedConnections++;
    await new Promise<void>((resolve) => {
      req.signal.addEventListener("abort", () => resolve());
      setTimeout(resolve, 120_000).unref?.();
    });
    return response;
  }

  /** A response whose body breaks off: the client sees a broken connection. */
  private dropped(response: Response): Response {
    this.counters.droppedConnections++;
    return this.broken(response.status);
  }

  /** A connection that breaks before the answer's body: headers (as `status`), then a reset. */
  private broken(status = 503): Response {
    const stream = new ReadableStream({
      start(controller) {
        // An error without a value resets the connection without a log line in Bun.
        controller.error(undefined);
      },
    });
    return new Response(stream, { status, headers: { "content-length": "1048576" } });
  }

  private putObject(req: Request, bucket: string, key: string, body: Uint8Array, resource: string): Response {
    const etag = md5Hex(body);
    const contentMd5 = req.headers.get("content-md5");
    if (contentMd5 !== null) {
      const given = Buffer.from(contentMd5, "base64");
      if (given.length !== 16) return this.error(400, "InvalidDigest", "The Content-MD5 you specified was invalid", resource, "PUT");
      if (given.toString("hex") !== etag) return this.error(400, "BadDigest", "The Content-MD5 you specified did not match what we received", resource, "PUT");
    }
    const crc = req.headers.get("x-amz-checksum-crc32") ?? undefined;
    if (crc !== undefined && crc !== crc32ToBase64(runtime.crc32(body))) {
      return this.error(400, "BadDigest", "The CRC32 you specified did not match the calculated checksum.", resource, "PUT");
    }
    const existing = this.objects.get(bucket, key);
    const conditional = req.headers.has("if-none-match") || req.headers.has("if-match");
    if (conditional && this.faults.conditionalPut === "refuse") return this.error(501, "NotImplemented", "A header you provided implies functionality that is not implemented", resource, "PUT");
    if (conditional && this.faults.conditionalPut === "conflict") return this.error(409, "ConditionalRequestConflict", "A conflicting conditional operation is currently in progress against this resource", resource, "PUT");
    if (this.faults.conditionalPut === "honour") {
      const ifNoneMatch = req.headers.get("if-none-match");
      const ifMatch = req.headers.get("if-match");
      if ((ifNoneMatch === "*" && existing) || (ifMatch !== null && (!existing || !etagMatches(ifMatch, existing.etag)))) {
        this.counters.conditionalFailures++;
        return this.error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", resource, "PUT");
      }
    }
    const meta = metaHeaders(req.headers);
    this.remember(bucket, key);
    this.objects.put(bucket, key, {
      body,
      etag,
      contentType: req.headers.get("content-type") ?? "binary/octet-stream",
      contentEncoding: objectEncoding(req.headers.get("content-encoding")),
      meta,
      lastModified: Date.now(),
      ...(crc !== undefined ? { checksumCrc32: crc } : {}),
    });
    return new Response(null, { status: 200, headers: { etag: `"${etag}"` } });
  }

  private getObject(req: Request, bucket: string, key: string, resource: string): Response {
    const head = req.method === "HEAD";
    const object = this.visible(bucket, key);
    if (!object) return this.error(404, "NoSuchKey", "The specified key does not exist.", resource, req.method);
    const headers: Record<string, string> = {
      etag: `"${object.etag}"`,
      "content-type": object.contentType,
      "last-modified": new Date(object.lastModified).toUTCString(),
      "accept-ranges": "bytes",
      ...object.meta,
    };
    if (object.contentEncoding) headers["content-encoding"] = object.contentEncoding;
    const range = req.headers.get("range");
    if (object.checksumCrc32 && range === null && req.headers.get("x-amz-checksum-mode")?.toUpperCase() === "ENABLED") {
      headers["x-amz-checksum-crc32"] = object.checksumCrc32;
    }
    const ifMatch = req.headers.get("if-match");
    if (ifMatch !== null && !etagMatches(ifMatch, object.etag)) {
      this.counters.conditionalFailures++;
      return this.error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", resource, req.method);
    }
    const ifNoneMatch = req.headers.get("if-none-match");
    if (ifNoneMatch !== null && etagMatches(ifNoneMatch, object.etag)) return new Response(null, { status: 304, headers });

    let data = object.body;
    let status = 200;
    const ranged = /^bytes=(\d*)-(\d*)$/.exec(range ?? "");
    if (ranged) {
      const size = data.length;
      const start = ranged[1] === "" ? Math.max(0, size - Number(ranged[2])) : Number(ranged[1]);
      const end = ranged[1] === "" || ranged[2] === "" ? size - 1 : Math.min(size - 1, Number(ranged[2]));
      if (start >= size || start > end) return this.error(416, "InvalidRange", "The requested range is not satisfiable", resource, req.method);
      data = data.subarray(start, end + 1);
      headers["content-range"] = `bytes ${start}-${end}/${size}`;
      status = 206;
    }
    headers["content-length"] = String(data.length);
    if (head) return new Response(null, { status, headers });
    this.counters.bytesOut += data.length;
    if (data.length > 0 && Math.random() < this.faults.corruptRate && (!this.faults.keyPattern || this.faults.keyPattern.test(key))) {
      this.counters.corruptedBodies++;
      data = data.slice();
      data[Math.floor(Math.random() * data.length)]! ^= 0x40;
    }
    return new Response(data, { status, headers });
  }

  /** The version a reader sees: the stale one during the eventual-consistency window. */
  private visible(bucket: string, key: string): ServerObject | undefined {
    const stale = this.stale.get(`${bucket}/${key}`);
    if (stale && Date.now() < stale.until) {
      this.counters.staleAnswers++;
      return stale.previous;
    }
    return this.objects.get(bucket, key);
  }

  remember(bucket: string, key: string): void {
    if (this.faults.staleMs <= 0) return;
    const id = `${bucket}/${key}`;
    const current = this.stale.get(id);
    // Within a window, the old version stays the one from before the window started.
    const previous = current && Date.now() < current.until ? current.previous : this.objects.get(bucket, key);
    this.stale.set(id, { previous, until: Date.now() + this.faults.staleMs });
  }

  private xml(status: number, xml: string): Response {
    return xmlResponse(status, xml);
  }

  private error(status: number, code: string, message: string, resource: string, method: string): Response {
    return errorResponse(status, code, message, resource, method);
  }
}


function etagMatches(header: string, etag: string): boolean {
  return header.split(",").some((t) => {
    const v = t.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
    return v === "*" || v === etag;
  });
}
