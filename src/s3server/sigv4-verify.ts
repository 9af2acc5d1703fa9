/**
 * Server-side check of AWS Signature Version 4 (header form): rebuilds the canonical request from
 * what arrived, signs it with the secret we know for the access key, and compares.
 */
import { AwsV4Signer } from "aws4fetch";
import { createHash } from "node:crypto";

export interface Credential {
  secretAccessKey: string;
  /** When set, requests must carry this X-Amz-Security-Token. */
  sessionToken?: string;
}

export type Verdict =
  | { ok: true; accessKeyId: string | undefined }
  | { ok: false; status: number; code: string; message: string };

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;\-]+), ?Signature=([0-9a-f]{64})$/;
const MAX_SKEW_MS = 15 * 60 * 1000;

const deny = (status: number, code: string, message: string): Verdict => ({ ok: false, status, code, message });

export async function verifySigV4(
  req: Request,
  body: Uint8Array,
  credentials: ReadonlyMap<string, Credential>,
  allowAnonymous: boolean,
): Promise<Verdict> {
  const auth = req.headers.get("authorization");
  if (!auth) return allowAnonymous ? { ok: true, accessKeyId: undefined } : deny(403, "AccessDenied", "Anonymous access is not allowed");
  const m = AUTH.exec(auth);
  if (!m) return deny(400, "AuthorizationHeaderMalformed", "Unsupported Authorization header");
  const [, accessKeyId, date, region, service, signedHeaders, signature] = m as unknown as string[];
  const credential = credentials.get(accessKeyId!);
  if (!credential) return deny(403, "InvalidAccessKeyId", "The access key ID does not exist");

  const datetime = req.headers.get("x-amz-date") ?? "";
  const when = Date.parse(datetime.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  if (!datetime.startsWith(date!) || Number.isNaN(when)) return deny(403, "AccessDenied", "Bad X-Amz-Date");
  if (Math.abs(Date.now() - when) > MAX_SKEW_MS) return deny(403, "RequestTimeTooSkewed", "The difference between the request time and the server's time is too large");

  const payloadHash = req.headers.get("x-amz-content-sha256");
  if (!payloadHash) return deny(400, "InvalidRequest", "Missing x-amz-content-sha256");
  if (/^[0-9a-f]{64}$/.test(payloadHash)) {
    const actual = createHash("sha256").update(body).digest("hex");
    if (actual !== payloadHash) return deny(400, "XAmzContentSHA256Mismatch", "The payload hash does not match");
  }
  const token = req.headers.get("x-amz-security-token") ?? undefined;
  if (credential.sessionToken !== undefined && token !== credential.sessionToken) {
    return deny(403, "InvalidToken", "The security token is missing or invalid");
  }

  const names = signedHeaders!.split(";");
  if (!names.includes("host")) return deny(403, "AccessDenied", "Host must be signed");
  const headers = new Headers();
  for (const name of names) if (name !== "host") headers.set(name, req.headers.get(name) ?? "");
  const signer = new AwsV4Signer({
    method: req.method,
    url: req.url,
    headers,
    accessKeyId: accessKeyId!,
    secretAccessKey: credential.secretAccessKey,
    sessionToken: token,
    service: service!,
    region: region!,
    datetime,
    allHeaders: true,
  });
  const expected = await signer.signature();
  if (expected !== signature) {
    return deny(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided");
  }
  return { ok: true, accessKeyId };
}
