/**
 * HTTP/1.1 pieces of the fault proxy (fault-proxy.ts): requests read from a client's bytes as they
 * come (kept raw, to be forwarded byte for byte, signature and all), one exchange with the upstream
 * server on a connection of its own, and responses written back, with their framing as asked.
 */
import net from "node:net";
import { ResponseReader, type ParsedResponse } from "../../src/http/http1.ts";
import { concatBytes } from "../../src/util/bytes.ts";

export type { ParsedResponse };

export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent them (not normalised: `%2e%2e` stays). */
  target: string;
  /** Names in lower case. */
  headers: Map<string, string>;
  /** The head and body exactly as received. */
  raw: Uint8Array;
  body: Uint8Array;
}

const MAX_HEAD = 64 * 1024;
const latin1 = new TextDecoder("latin1");
const ascii = new TextEncoder();

/**
 * Requests from one client connection. `feed` takes the socket's bytes; `next` returns the next
 * whole request, or undefined. `waitingForBody` says a request's head arrived without its body
 * (for `Expect: 100-continue`, which must be answered before the client sends it).
 */
export class RequestReader {
  private buffer: Uint8Array = new Uint8Array(0);
  waitingForBody: Map<string, string> | undefined;

  feed(chunk: Uint8Array): void {
    this.buffer = this.buffer.length ? concatBytes([this.buffer, chunk]) : chunk.slice();
  }

  next(): ProxiedRequest | undefined {
    const end = headEnd(this.buffer);
    if (end < 0) {
      if (this.buffer.length > MAX_HEAD) throw new Error("request head too long");
      return undefined;
    }
    const lines = latin1.decode(this.buffer.subarray(0, end - 4)).split("\r\n");
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
    if (!m) throw new Error(`not an HTTP/1 request line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const bodyEnd = /chunked/i.test(headers.get("transfer-encoding") ?? "")
      ? chunkedEnd(this.buffer, end)
      : end + Number(headers.get("content-length") ?? 0);
    if (bodyEnd < 0 || bodyEnd > this.buffer.length) {
      this.waitingForBody = headers;
      return undefined;
    }
    this.waitingForBody = undefined;
    const raw = this.buffer.slice(0, bodyEnd);
    this.buffer = this.buffer.slice(bodyEnd);
    return { method: m[1]!, target: m[2]!, headers, raw, body: raw.subarray(end) };
  }
}

function headEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i + 4;
  return -1;
}

/** Where a chunked body starting at `from` ends (past its last CRLF), or -1 if not all here yet. */
function chunkedEnd(b: Uint8Array, from: number): number {
  let at = from;
  for (;;) {
    let eol = at;
    while (eol + 1 < b.length && !(b[eol] === 13 && b[eol + 1] === 10)) eol++;
    if (eol + 1 >= b.length) return -1;
    const size = parseInt(latin1.decode(b.subarray(at, eol)).split(";")[0]!, 16);
    at = eol + 2;
    if (size === 0) {
      // Trailers (usually none), then the blank line.
      for (;;) {
        let e = at;
        while (e + 1 < b.length && !(b[e] === 13 && b[e + 1] === 10)) e++;
        if (e + 1 >= b.length) return -1;
        const blank = e === at;
        at = e + 2;
        if (blank) return at;
      }
    }
    at += size + 2;
    if (at > b.length) return -1;
  }
}

/** Sends `raw` to `host:port` on a connection of its own and reads the one response. */
export function exchange(host: string, port: number, method: string, raw: Uint8Array): Promise<ParsedResponse> {
  return new Promise((resolve, reject) => {
    const reader = new ResponseReader(method);
    const socket = net.connect(port, host);
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      f();
    };
    socket.on("connect", () => socket.write(raw));
    socket.on("data", (chunk: Buffer) => {
      try {
        const done = reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        if (done) settle(() => resolve(done.response));
      } catch (err) {
        settle(() => reject(err));
      }
    });
    socket.on("end", () => {
      try {
        const r = reader.end();
        settle(() => resolve(r));
      } catch (err) {
        settle(() => reject(err));
      }
    });
    socket.on("error", (err) => settle(() => reject(err)));
  });
}

const REASONS: Record<number, string> = { 200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable" };

/**
 * A response's bytes, with the body given. `length` is the Content-Length to declare (the body's
 * own unless a fault says otherwise); a HEAD answer keeps the one the server declared.
 */
export function responseBytes(r: { status: number; headers: [string, string][] }, method: string, body: Uint8Array, length = body.length): Uint8Array {
  let head = `HTTP/1.1 ${r.status} ${REASONS[r.status] ?? "Status"}\r\n`;
  for (const [name, value] of r.headers) {
    if (name === "transfer-encoding" || name === "connection" || (name === "content-length" && method !== "HEAD")) continue;
    head += `${name}: ${value}\r\n`;
  }
  if (method !== "HEAD" && r.status !== 204 && r.status !== 304) head += `content-length: ${length}\r\n`;
  return concatBytes([ascii.encode(`${head}\r\n`), body]);
}

/** An S3 error answer of the proxy's own (a 503 storm's). */
export function errorBytes(status: number, code: string, method: string): Uint8Array {
  const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the fault proxy</Message></Error>`;
  return responseBytes({ status, headers: [["content-type", "application/xml"]] }, method, method === "HEAD" ? new Uint8Array(0) : ascii.encode(xml));
}
