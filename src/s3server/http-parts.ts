/** Pieces of HTTP the bundled server's handlers share: XML answers, S3 errors, headers read from a request. */
import { errorXml } from "./xml.ts";

export function xmlResponse(status: number, xml: string): Response {
  return new Response(xml, { status, headers: { "content-type": "application/xml" } });
}

/** An S3 error: its XML document, or (for HEAD, which has no body) the code in a header. */
export function errorResponse(status: number, code: string, message: string, resource: string, method: string): Response {
  if (method === "HEAD") return new Response(null, { status, headers: { "x-amz-error-code": code } });
  return xmlResponse(status, errorXml(code, message, resource));
}

export function metaHeaders(headers: Headers): Record<string, string> {
  const meta: Record<string, string> = {};
  headers.forEach((value, name) => {
    if (name.startsWith("x-amz-meta-")) meta[name] = value;
  });
  return meta;
}

/** The object's Content-Encoding as sent, less aws-chunked: the upload's framing, already taken off. */
export function objectEncoding(header: string | null): string | undefined {
  if (header === null || !/aws-chunked/i.test(header)) return header ?? undefined;
  return header.split(",").map((e) => e.trim()).filter((e) => e !== "" && e.toLowerCase() !== "aws-chunked").join(", ") || undefined;
}
