/**
 * Bodies sent `Content-Encoding: aws-chunked` (what the AWS CLI sends for uploads): the framing is
 * taken off, and each chunk's signature is checked against the one before it, starting from the
 * request's own (STREAMING-AWS4-HMAC-SHA256-PAYLOAD); or, unsigned, the trailing checksum is
 * checked where it is one we know (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
 */
import { concatBytes } from "../util/bytes.ts";
import { createHash, createHmac } from "node:crypto";
import { runtime } from "../runtime/index.ts";
import { ALGORITHM } from "../util/sigv4.ts";

export interface ChunkSigning {
  /** The request's signature: the first chunk's "previous" one. */
  seedSignature: string;
  datetime: string;
  /** "date/region/service/aws4_request". */
  scope: string;
  signingKey: Uint8Array;
}

const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");
const CRLF = "\r\n";
const latin1 = new TextDecoder("latin1");

/** The decoded body, or why it is refused (a client's mistake); `forged`: a chunk signature failed. */
export function decodeAwsChunked(body: Uint8Array, signing: ChunkSigning | undefined): { data: Uint8Array } | { error: string; forged?: true } {
  const parts: Uint8Array[] = [];
  let at = 0;
  let previous = signing?.seedSignature;
  for (;;) {
    const lineEnd = indexOfCrlf(body, at);
    if (lineEnd < 0) return { error: "a chunk header is cut off" };
    const header = latin1.decode(body.subarray(at, lineEnd));
    const m = /^([0-9a-fA-F]{1,8})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(header);
    if (!m) return { error: "a chunk header is malformed" };
    const size = parseInt(m[1]!, 16);
    const start = lineEnd + 2;
    if (start + size > body.length) return { error: "a chunk is cut off" };
    const chunk = body.subarray(start, start + size);
    if (signing) {
      if (!m[2]) return { error: "a chunk has no signature" };
      const toSign = [`${ALGORITHM}-PAYLOAD`, signing.datetime, signing.scope, previous, EMPTY_SHA256, createHash("sha256").update(chunk).digest("hex")].join("\n");
      const expected = createHmac("sha256", signing.signingKey).update(toSign).digest("hex");
      if (expected !== m[2]) return { error: "a chunk signature does not match", forged: true };
      previous = expected;
    }
    at = start + size;
    if (size === 0) break;
    if (latin1.decode(body.subarray(at, at + 2)) !== CRLF) return { error: "a chunk does not end where its size says" };
    at += 2;
    parts.push(chunk);
  }
  const data = concatBytes(parts);
  // What follows the last chunk: trailers (name:value lines), then an empty line.
  const trailers = latin1.decode(body.subarray(at)).split(CRLF).filter((l) => l !== "");
  for (const line of trailers) {
    const cut = line.indexOf(":");
    if (cut < 0) return { error: "a trailer is malformed" };
    const wrong = checksumMismatch(line.slice(0, cut).trim().toLowerCase(), line.slice(cut + 1).trim(), data);
    if (wrong) return { error: wrong };
  }
  return { data };
}

/** For the x-amz-checksum-* trailers we can compute: why the body does not match, else undefined. */
function checksumMismatch(name: string, value: string, data: Uint8Array): string | undefined {
  let actual: string | undefined;
  if (name === "x-amz-checksum-crc32") {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, runtime.crc32(data));
    actual = Buffer.from(b).toString("base64");
  } else if (name === "x-amz-checksum-sha256") actual = createHash("sha256").update(data).digest("base64");
  else if (name === "x-amz-checksum-sha1") actual = createHash("sha1").update(data).digest("base64");
  return actual !== undefined && actual !== value ? `the ${name} trailer does not match the body` : undefined;
}

function indexOfCrlf(b: Uint8Array, from: number): number {
  for (let i = from; i + 1 < b.length && i < from + 200; i++) if (b[i] === 13 && b[i + 1] === 10) return i;
  return -1;
}
