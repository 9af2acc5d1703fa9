/**
 * S3 over HTTP: signs with SigV4 (util/sigv4.ts), builds path-style or virtual-hosted URLs, limits each
 * attempt with a timeout, and retries what may succeed later (network errors, timeouts, 5xx, 429,
 * SlowDown) with exponential backoff until --maxRetryPause is used up. Never retries a 4xx that
 * cannot succeed. Every request is counted.
 */
import { DataError, Errno, FsError, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { runtime } from "../../runtime/index.ts";
import { delay } from "../../util/delay.ts";
import { Backoff } from "../../util/backoff.ts";
import type { CredentialSource } from "./credentials.ts";
import { RequestStats, type RequestKind } from "./request-stats.ts";
import { defaultHttpThreads, HttpThreadError, HttpThreads, httpThreadsUsable, type StagedBody } from "../../http/http-threads.ts";
import { hashGroupHere, Md5Batch } from "../../util/md5.ts";
import type { BufferPool } from "../../memory/buffer-pool.ts";
import { readInputFile } from "../../util/flag-paths.ts";
import { ALGORITHM, amzDate, credentialScope, sign, signingKey, UNSIGNED_HEADERS, UNSIGNED_PAYLOAD } from "../../util/sigv4.ts";

export interface S3ClientOptions {
  baseURL: string;
  bucket: string;
  vhost: boolean;
  region: string;
  credentials: CredentialSource;
  timeoutMs: number;
  initialRetryPauseMs: number;
  maxRetryPauseMs: number;
  /** Attempts a GET gets when its bodies keep failing their checks (DamagedBody), within the budget; default: no limit but the budget. */
  damagedBodyAttempts?: number;
  insecure: boolean;
  caFile: string | undefined;
  /** Bits per second for one transfer, or 0. */
  maxUploadBps: number;
  maxDownloadBps: number;
  debugHttp: boolean;
  /** False: every request on a new connection (--noCurlCache). */
  keepAlive: boolean;
  log: Logger;
}

export interface S3Request {
  method: "GET" | "PUT" | "DELETE" | "HEAD" | "POST";
  kind: RequestKind;
  /** Object key, or "" for the bucket itself. */
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Statuses that are answers, not failures (e.g. 404 for a GET of a zero block). */
  expect: readonly number[];
  /** Checks an answer; throw RetryableError to have the request tried again (e.g. a corrupt body). */
  validate?: (response: S3Response) => void | Promise<void>;
  /** Spare buffers a GET's body may be read into (through the HTTP threads). */
  spares?: BufferPool;
  /** A PUT body's copy made when it was hashed (uploadMd5), sent by the first attempt; later ones copy `body` again. */
  staged?: StagedBody;
}

export interface S3Response {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The body's CRC-32, when it was taken off the main thread (GETs through the HTTP threads). */
  crc32?: number;
}

/** A failure worth another attempt. */
export class RetryableError extends Error {}

/** An answer whose body failed a check (its checksum, or its reader's): given up on, it is a DataError. */
export class DamagedBody extends RetryableError {}

export class S3Client {
  readonly stats = new RequestStats();
  /** The day's signing key, for the current credentials. */
  private signingKey: { of: string; key: Uint8Array } | undefined;
  private readonly fetchOptions: Record<string, unknown>;
  /** Object GETs and PUTs go through threads of their own where they can (http-threads.ts); everything else through fetch(). */
  private readonly threads: HttpThreads | undefined;
  private readonly uploadMd5: Md5Batch;

  constructor(private readonly o: S3ClientOptions) {
    const ca = o.caFile ? readInputFile(`--cacert=${o.caFile}`, o.caFile) : undefined;
    this.fetchOptions = runtime.fetchOptions(o.insecure, ca);
    if (httpThreadsUsable()) this.threads = new HttpThreads(defaultHttpThreads(), { insecure: o.insecure, ca });
    const threads = this.threads;
    // A thread that failed meanwhile leaves the hashing to this one.
    this.uploadMd5 = new Md5Batch(threads ? (views) => threads.md5Staged(views).catch(() => hashGroupHere(views)) : hashGroupHere);
  }

  /**
   * The MD5 of a PUT's body (which must not change until the PUT has returned), taken on an HTTP
   * thread where they run: the body is copied for its PUT first (`staged`, for the request) and
   * the copy is hashed, so the digest is that of the bytes sent.
   */
  async uploadMd5Of(body: Uint8Array): Promise<{ digest: Uint8Array; staged?: StagedBody }> {
    if (!this.threads) return { digest: await this.uploadMd5.digest(body) };
    const staged = this.threads.stage(body);
    return { digest: await this.uploadMd5.digest(staged.view), staged };
  }

  /** Ends the HTTP threads. */
  close(): void {
    this.threads?.close();
  }

  get log(): Logger {
    return this.o.log;
  }

  get bucket(): string {
    return this.o.bucket;
  }

  url(key: string, query?: Record<string, string>): string {
    const base = new URL(this.o.baseURL);
    const path = key.split("/").map(encodeURIComponent).join("/");
    let url: string;
    if (this.o.vhost) url = `${base.protocol}//${this.o.bucket}.${base.host}${base.pathname.replace(/\/?$/, "/")}${path}`;
    else url = `${base.protocol}//${base.host}${base.pathname.replace(/\/?$/, "/")}${this.o.bucket}${key === "" ? "" : "/"}${path}`;
    if (query && Object.keys(query).length) url += `?${new URLSearchParams(query).toString().replace(/\+/g, "%20")}`;
    return url;
  }

  async send(req: S3Request): Promise<S3Response> {
    const stats = this.stats.of(req.kind);
    const backoff = new Backoff(this.o.initialRetryPauseMs, this.o.maxRetryPauseMs);
    let damaged = 0;
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      try {
        const response = await this.attempt(req);
        stats.record(performance.now() - started);
        stats.bytes += req.method === "PUT" ? (req.body?.length ?? 0) : response.body.length;
        return response;
      } catch (err) {
        stats.errors++;
        if (err instanceof DamagedBody) damaged++;
        if (!(err instanceof RetryableError) || !backoff.canWait() || damaged >= (this.o.damagedBodyAttempts ?? Infinity)) {
          const why = err instanceof RetryableError ? `${messageOf(err)} (gave up after ${attempt + 1} attempts)` : messageOf(err);
          if (err instanceof FsError) throw err;
          const message = `${req.method} ${req.key || this.o.bucket}: ${why}`;
          throw err instanceof DamagedBody ? new DataError(message) : new FsError(Errno.EIO, message);
        }
        this.o.log.debug(`${req.method} ${req.key}: ${messageOf(err)}; retrying in ${backoff.nextMs} ms`);
        stats.retries++;
        await backoff.wait();
      }
    }
  }

  /**
   * The request's headers signed with SigV4, the payload unsigned (TLS and Content-MD5 guard it).
   * Only the headers: a signed Request would hold its own copy of the body, and fetch makes another.
   */
  private async signedHeaders(url: string, method: string, headers: Record<string, string> | undefined): Promise<Record<string, string> | undefined> {
    const credentials = await this.o.credentials.get();
    if (!credentials) return headers;
    const datetime = amzDate(Date.now());
    const date = datetime.slice(0, 8);
    const of = `${credentials.accessKeyId}\0${credentials.secretAccessKey}\0${date}`;
    if (this.signingKey?.of !== of) this.signingKey = { of, key: signingKey(credentials.secretAccessKey, date, this.o.region, "s3") };
    const signed: Record<string, string> = { ...headers, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": datetime };
    if (credentials.sessionToken) signed["x-amz-security-token"] = credentials.sessionToken;
    const toSign = Object.entries(signed).map(([name, value]) => [name.toLowerCase(), value] as const).filter(([name]) => !UNSIGNED_HEADERS.has(name));
    const scope = credentialScope(date, this.o.region, "s3");
    const s = sign({ method, url: new URL(url), headers: toSign, payloadHash: UNSIGNED_PAYLOAD }, this.signingKey.key, datetime, scope);
    if (!s) throw new FsError(Errno.EINVAL, `${url}: cannot be signed`);
    signed.authorization = `${ALGORITHM} Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${s.signedHeaders}, Signature=${s.signature}`;
    return signed;
  }

  private async attempt(req: S3Request): Promise<S3Response> {
    const url = this.url(req.key, req.query);
    const started = performance.now();
    let answer: S3Response;
    try {
      const headers = await this.signedHeaders(url, req.method, this.o.keepAlive ? req.headers : { ...req.headers, connection: "close" });
      if (this.threads && req.method === "GET" && req.key !== "") {
        answer = await this.threads.get(new URL(url), headers ?? {}, this.o.timeoutMs, req.spares);
      } else if (this.threads && req.method === "PUT" && req.key !== "" && req.body) {
        const staged = req.staged;
        req.staged = undefined; // its slot is free again once this attempt is answered
        answer = await this.threads.put(new URL(url), headers ?? {}, req.body, this.o.timeoutMs, staged);
      } else {
        const response = await fetch(url, {
          method: req.method,
          headers,
          ...(req.body ? { body: req.body } : {}),
          ...(this.o.timeoutMs > 0 ? { signal: AbortSignal.timeout(this.o.timeoutMs) } : {}), // --timeout=0: none
          ...this.fetchOptions,
        } as RequestInit);
        const body = req.method === "HEAD" ? new Uint8Array(0) : new Uint8Array(await response.arrayBuffer());
        answer = { status: response.status, headers: response.headers, body };
      }
    } catch (err) {
      if (err instanceof FsError) throw err;
      const name = (err as Error).name;
      const timedOut = err instanceof HttpThreadError ? err.timedOut : name === "TimeoutError" || name === "AbortError";
      throw new RetryableError(timedOut ? `timed out after ${this.o.timeoutMs} ms` : messageOf(err));
    }
    const { status, body } = answer;
    if (this.o.debugHttp) this.o.log.debug(`${req.method} ${url} -> ${status}`);
    await this.throttle(req.method === "PUT" ? (req.body?.length ?? 0) : body.length, req.method === "PUT" ? this.o.maxUploadBps : this.o.maxDownloadBps, started);

    if (req.expect.includes(status)) {
      await req.validate?.(answer);
      return answer;
    }
    const code = /<Code>([^<]+)<\/Code>/.exec(new TextDecoder().decode(body))?.[1] ?? answer.headers.get("x-amz-error-code") ?? "";
    const what = `HTTP ${status}${code ? ` ${code}` : ""}`;
    if (status >= 500 || status === 429 || code === "SlowDown" || code === "RequestTimeout") throw new RetryableError(what);
    throw new FsError(status === 403 ? Errno.EACCES : Errno.EIO, `${req.method} ${req.key || this.o.bucket}: ${what}`);
  }

  /** Holds a transfer back so it averages at most `bps` bits per second. */
  private async throttle(bytes: number, bps: number, started: number): Promise<void> {
    if (bps <= 0 || bytes === 0) return;
    const wait = (bytes * 8 * 1000) / bps - (performance.now() - started);
    if (wait > 0) await delay(wait);
  }
}
