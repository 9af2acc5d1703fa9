/**
 * CopyObject on the bundled server: a PUT that carries `x-amz-copy-source` makes the new object
 * from a stored one, inside the server, with no body on the wire. As AWS: the source is
 * `[/]bucket/key` URL-encoded; `x-amz-metadata-directive` COPY (the default) keeps the source's
 * Content-Type, Content-Encoding and x-amz-meta-* headers, REPLACE takes them from the request;
 * a copy onto itself must REPLACE; `x-amz-copy-source-if-match` / `-if-none-match` are honoured
 * (412); the answer is a CopyObjectResult with the new ETag. The signature was checked before
 * this runs, like every request's.
 */
import { errorResponse, metaHeaders, objectEncoding, xmlResponse } from "./http-parts.ts";
import type { ServerParts } from "./bucket-requests.ts";
import { escapeXml } from "../util/xml.ts";

export const COPY_SOURCE = "x-amz-copy-source";

export function copyObject(s: ServerParts, req: Request, bucket: string, key: string, resource: string): Response {
  const fail = (status: number, code: string, message: string) => errorResponse(status, code, message, resource, "PUT");
  const source = parseSource(req.headers.get(COPY_SOURCE)!);
  if (!source) return fail(400, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
  if (source.versioned) return fail(501, "NotImplemented", "A header you provided implies functionality that is not implemented");
  if (!s.objects.hasBucket(source.bucket)) return fail(404, "NoSuchBucket", "The specified bucket does not exist");
  const from = s.objects.get(source.bucket, source.key);
  if (!from) return fail(404, "NoSuchKey", "The specified key does not exist.");

  const directive = (req.headers.get("x-amz-metadata-directive") ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") return fail(400, "InvalidArgument", "Unknown metadata directive.");
  if (directive === "COPY" && source.bucket === bucket && source.key === key) {
    return fail(400, "InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  }
  const ifMatch = req.headers.get("x-amz-copy-source-if-match");
  const ifNoneMatch = req.headers.get("x-amz-copy-source-if-none-match");
  if ((ifMatch !== null && !matches(ifMatch, from.etag)) || (ifNoneMatch !== null && matches(ifNoneMatch, from.etag))) {
    s.counters.conditionalFailures++;
    return fail(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  }

  const replace = directive === "REPLACE";
  const lastModified = Date.now();
  s.remember(bucket, key);
  s.objects.put(bucket, key, {
    body: from.body,
    etag: from.etag,
    contentType: replace ? (req.headers.get("content-type") ?? "binary/octet-stream") : from.contentType,
    contentEncoding: replace ? objectEncoding(req.headers.get("content-encoding")) : from.contentEncoding,
    meta: replace ? metaHeaders(req.headers) : { ...from.meta },
    lastModified,
    ...(from.checksumCrc32 !== undefined ? { checksumCrc32: from.checksumCrc32 } : {}),
  });
  s.counters.copies++;
  return xmlResponse(
    200,
    `<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LastModified>${new Date(lastModified).toISOString()}</LastModified><ETag>&quot;${escapeXml(from.etag)}&quot;</ETag></CopyObjectResult>`,
  );
}

/** `[/]bucket/key[?versionId=...]`, URL-encoded as AWS asks; undefined when it names no key. */
function parseSource(header: string): { bucket: string; key: string; versioned: boolean } | undefined {
  const [path = "", query = ""] = header.split("?", 2);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.replace(/^\//, ""));
  } catch {
    return undefined;
  }
  const slash = decoded.indexOf("/");
  if (slash <= 0 || slash === decoded.length - 1) return undefined;
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1), versioned: /(^|&)versionId=/.test(query) };
}

function matches(header: string, etag: string): boolean {
  return header.split(",").some((t) => {
    const v = t.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
    return v === "*" || v === etag;
  });
}
