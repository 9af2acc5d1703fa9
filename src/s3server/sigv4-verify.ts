/**
 * Server-side check of AWS Signature Version 4 (the Authorization header, or a presigned URL's query): rebuilds the canonical request from
 * what arrived, signs it with the secret we know for the access key, and compares. It needs only
 * the headers (the payload's hash is a header), so it runs before the body is read; the body is
 * then checked against that hash by `checkPayload`.
 */
import { createHash } from "node:crypto";
import { decodeAwsChunked } from "./aws-chunked.ts";
import { ALGORITHM, amzDateMs, credentialScope, sign, signingKey, UNSIGNED_PAYLOAD } from "../util/sigv4.ts";

export interface Credential {
  secretAccessKey: string;
  /** When set, requests must carry this X-Amz-Security-Token. */
  sessionToken?: string;
}

export interface Signed {
  ok: true;
  /** Undefined: an anonymous request (allowed for reads of a public bucket). */
  accessKeyId: string | undefined;
  payloadHash: string;
  /** What chunk signatures are checked with. */
  signature: string;
  datetime: string;
  scope: string;
  secret: string;
  region: string;
}

export type Verdict = Signed | { ok: false; status: number; code: string; message: string };

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;\-]+), ?Signature=([0-9a-f]{64})$/;
const MAX_SKEW_MS = 15 * 60 * 1000;

const deny = (status: number, code: string, message: string): Verdict => ({ ok: false, status, code, message });

export function verifySigV4(req: Request, credentials: ReadonlyMap<string, Credential>, allowAnonymous: boolean, serverRegion: string): Verdict {
  const auth = req.headers.get("authorization");
  if (!auth && new URL(req.url).searchParams.has("X-Amz-Algorithm")) return verifyPresigned(req, credentials, serverRegion);
  if (!auth) {
    if (!allowAnonymous) return deny(403, "AccessDenied", "Anonymous access is not allowed");
    return { ok: true, accessKeyId: undefined, payloadHash: UNSIGNED_PAYLOAD, signature: "", datetime: "", scope: "", secret: "", region: serverRegion };
  }
  const m = AUTH.exec(auth);
  if (!m) return deny(400, "AuthorizationHeaderMalformed", "Unsupported Authorization header");
  const [, accessKeyId, date, region, service, signedHeaders, signature] = m as unknown as string[];
  const credential = credentials.get(accessKeyId!);
  if (!credential) return deny(403, "InvalidAccessKeyId", "The access key ID does not exist");
  if (region !== serverRegion) return deny(400, "AuthorizationHeaderMalformed", `The region '${region}' is wrong; expecting '${serverRegion}'`);
  if (service !== "s3") return deny(400, "AuthorizationHeaderMalformed", `The service '${service}' is wrong; expecting 's3'`);

  const datetime = req.headers.get("x-amz-date") ?? "";
  const when = amzDateMs(datetime);
  if (!datetime.startsWith(date!) || Number.isNaN(when)) return deny(403, "AccessDenied", "Bad X-Amz-Date");
  if (Math.abs(Date.now() - when) > MAX_SKEW_MS) return deny(403, "RequestTimeTooSkewed", "The difference between the request time and the server's time is too large");

  const payloadHash = req.headers.get("x-amz-content-sha256");
  if (!payloadHash) return deny(400, "InvalidRequest", "Missing x-amz-content-sha256");
  const token = req.headers.get("x-amz-security-token") ?? undefined;
  if (credential.sessionToken !== undefined && token !== credential.sessionToken) {
    return deny(403, "InvalidToken", "The security token is missing or invalid");
  }

  const names = signedHeaders!.split(";");
  if (!names.includes("host")) return deny(403, "AccessDenied", "Host must be signed");
  const scope = credentialScope(date!, region!, service!);
  const expected = sign({ method: req.method, url: new URL(req.url), headers: signedHeaderValues(req, names), payloadHash }, signingKey(credential.secretAccessKey, date!, region!, service!), datetime, scope);
  if (expected?.signature !== signature) {
    return deny(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided");
  }
  return { ok: true, accessKeyId, payloadHash, signature: signature!, datetime, scope, secret: credential.secretAccessKey, region: region! };
}

/** The headers a client says it signed, with their values as they arrived (host is the URL's). */
function signedHeaderValues(req: Request, names: readonly string[]): [string, string][] {
  return names.filter((name) => name !== "host").map((name) => [name, req.headers.get(name) ?? ""]);
}

const PRESIGNED_CREDENTIAL = /^([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request$/;
const MAX_EXPIRES_S = 7 * 24 * 3600;

/** A presigned URL: the signature and its parts in the query string, the payload unsigned, an expiry honoured. */
function verifyPresigned(req: Request, credentials: ReadonlyMap<string, Credential>, serverRegion: string): Verdict {
  const url = new URL(req.url);
  const q = url.searchParams;
  if (q.get("X-Amz-Algorithm") !== ALGORITHM) return deny(400, "AuthorizationQueryParametersError", `X-Amz-Algorithm only supports "${ALGORITHM}"`);
  const m = PRESIGNED_CREDENTIAL.exec(q.get("X-Amz-Credential") ?? "");
  const datetime = q.get("X-Amz-Date") ?? "";
  const expires = Number(q.get("X-Amz-Expires") ?? "");
  const signature = q.get("X-Amz-Signature") ?? "";
  const signedHeaders = q.get("X-Amz-SignedHeaders") ?? "";
  if (!m || !/^\d{8}T\d{6}Z$/.test(datetime) || !Number.isInteger(expires) || expires < 1 || expires > MAX_EXPIRES_S || !/^[0-9a-f]{64}$/.test(signature)) {
    return deny(400, "AuthorizationQueryParametersError", "Query-string authentication requires X-Amz-Credential, X-Amz-Date, X-Amz-Expires (1 to 604800), X-Amz-SignedHeaders and X-Amz-Signature");
  }
  const [, accessKeyId, date, region, service] = m as unknown as string[];
  const credential = credentials.get(accessKeyId!);
  if (!credential) return deny(403, "InvalidAccessKeyId", "The access key ID does not exist");
  if (region !== serverRegion || service !== "s3") return deny(400, "AuthorizationQueryParametersError", `The credential scope '${region}/${service}' is wrong; expecting '${serverRegion}/s3'`);
  const when = amzDateMs(datetime);
  if (!datetime.startsWith(date!)) return deny(403, "AccessDenied", "Bad X-Amz-Date");
  if (Date.now() > when + expires * 1000) return deny(403, "AccessDenied", "Request has expired");
  if (when - Date.now() > MAX_SKEW_MS) return deny(403, "AccessDenied", "Request is not valid yet");
  const token = q.get("X-Amz-Security-Token") ?? undefined;
  if (credential.sessionToken !== undefined && token !== credential.sessionToken) return deny(403, "InvalidToken", "The security token is missing or invalid");
  const names = signedHeaders.split(";");
  if (!names.includes("host")) return deny(403, "AccessDenied", "Host must be signed");
  const query = new URLSearchParams(q);
  query.delete("X-Amz-Signature");
  const scope = credentialScope(date!, region!, "s3");
  const expected = sign({ method: req.method, url, headers: signedHeaderValues(req, names), payloadHash: UNSIGNED_PAYLOAD, query }, signingKey(credential.secretAccessKey, date!, region!, "s3"), datetime, scope);
  if (expected?.signature !== signature) return deny(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided");
  return { ok: true, accessKeyId, payloadHash: UNSIGNED_PAYLOAD, signature, datetime, scope, secret: credential.secretAccessKey, region: region! };
}

/** The body as the client meant it (aws-chunked framing taken off), once it matches what was signed. */
export function checkPayload(signed: Signed, body: Uint8Array): { data: Uint8Array } | { status: number; code: string; message: string } {
  const hash = signed.payloadHash;
  if (hash === UNSIGNED_PAYLOAD) return { data: body };
  if (/^[0-9a-f]{64}$/.test(hash)) {
    if (createHash("sha256").update(body).digest("hex") === hash) return { data: body };
    return { status: 400, code: "XAmzContentSHA256Mismatch", message: "The payload hash does not match" };
  }
  if (hash === "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" || hash === "STREAMING-UNSIGNED-PAYLOAD-TRAILER") {
    const [date, region, service] = signed.scope.split("/") as [string, string, string];
    const signing = hash === "STREAMING-UNSIGNED-PAYLOAD-TRAILER" ? undefined : {
      seedSignature: signed.signature, datetime: signed.datetime, scope: signed.scope, signingKey: signingKey(signed.secret, date, region, service),
    };
    const decoded = decodeAwsChunked(body, signing);
    if ("data" in decoded) return decoded;
    const message = `aws-chunked body: ${decoded.error}`;
    return decoded.forged ? { status: 403, code: "SignatureDoesNotMatch", message } : { status: 400, code: "IncompleteBody", message };
  }
  return { status: 400, code: "InvalidArgument", message: `x-amz-content-sha256 '${hash}' is not supported` };
}
