/**
 * AWS Signature Version 4 for S3, the parts both sides need: the client signs every request with
 * them, and the bundled server checks what arrives with them. Synchronous, on the runtime's
 * native HMAC (node:crypto): a signature costs microseconds, where WebCrypto's promises cost a
 * hundred or more per request, on the thread that also answers the kernel.
 *
 * Canonical forms as S3 (and aws4fetch, which the tests compare with) make them: the path decoded
 * once and each part encoded once (RFC 3986), the query sorted with the first of repeated keys
 * kept, header names lower case and values with runs of white space folded.
 */
import { createHash, createHmac } from "node:crypto";

export const ALGORITHM = "AWS4-HMAC-SHA256";
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";

/** Headers a client does not sign: a proxy or the HTTP stack may add or change them on the way. */
export const UNSIGNED_HEADERS: ReadonlySet<string> = new Set([
  "authorization", "content-type", "content-length", "user-agent", "presigned-expires", "expect", "x-amzn-trace-id", "range", "connection",
]);

/** The key SigV4 signs with for one day, region and service. */
export function signingKey(secret: string, date: string, region: string, service: string): Uint8Array {
  let key: Uint8Array = createHmac("sha256", `AWS4${secret}`).update(date).digest();
  for (const part of [region, service, "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  return key;
}

/** A time as SigV4 writes it: 20261203T150000Z. */
export const amzDate = (ms: number) => new Date(ms).toISOString().replace(/[:-]|\.\d{3}/g, "");

/** An X-Amz-Date as milliseconds since the epoch; NaN if it is not one. */
export const amzDateMs = (datetime: string) => Date.parse(datetime.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));

/** What a signature is good for: "20261203/us-east-1/s3/aws4_request". */
export const credentialScope = (date: string, region: string, service: string) => `${date}/${region}/${service}/aws4_request`;

const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** A URL's path in canonical form; undefined when it holds an escape that decodes to nothing valid. */
export function canonicalPath(pathname: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
  return rfc3986(decoded).replace(/%2F/g, "/");
}

export function canonicalQuery(params: URLSearchParams): string {
  const seen = new Set<string>();
  const pairs: [string, string][] = [];
  for (const [k, v] of params) {
    if (!k || seen.has(k)) continue;
    seen.add(k);
    pairs.push([rfc3986(k), rfc3986(v)]);
  }
  pairs.sort(([k1, v1], [k2, v2]) => (k1 < k2 ? -1 : k1 > k2 ? 1 : v1 < v2 ? -1 : v1 > v2 ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

export interface RequestToSign {
  method: string;
  url: URL;
  /** The signed headers other than host, lower-case names (any order). */
  headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The X-Amz-Content-Sha256 value (UNSIGNED-PAYLOAD, or the body's SHA-256 in hex). */
  payloadHash: string;
  /** The query as signed (a presigned URL's without its X-Amz-Signature); the URL's by default. */
  query?: URLSearchParams;
}

export interface Signature {
  /** "host;x-amz-date;...": the signed header names, sorted. */
  signedHeaders: string;
  signature: string;
}

/**
 * The signature of a request with the day's key (`signingKey` of the date in `datetime`);
 * undefined when its path cannot be put in canonical form.
 */
export function sign(request: RequestToSign, key: Uint8Array, datetime: string, scope: string): Signature | undefined {
  const path = canonicalPath(request.url.pathname);
  if (path === undefined) return undefined;
  const headers = [["host", request.url.host] as const, ...request.headers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const signedHeaders = headers.map(([name]) => name).join(";");
  const canonical = [
    request.method.toUpperCase(),
    path,
    canonicalQuery(request.query ?? request.url.searchParams),
    headers.map(([name, value]) => `${name}:${value.trim().replace(/\s+/g, " ")}\n`).join(""),
    signedHeaders,
    request.payloadHash,
  ].join("\n");
  const toSign = `${ALGORITHM}\n${datetime}\n${scope}\n${createHash("sha256").update(canonical).digest("hex")}`;
  return { signedHeaders, signature: createHmac("sha256", key).update(toSign).digest("hex") };
}
