/**
 * HTTP/1.1 on the wire, for the HTTP threads (http-threads.ts): a request's bytes, and a response read
 * incrementally from the chunks a socket delivers. Bodies framed by Content-Length (copied once,
 * into a buffer of that size or a spare one given), chunked, or by the end of the connection.
 * Pure: no sockets here.
 */

import { concatBytes } from "../util/bytes.ts";

const MAX_HEAD = 64 * 1024;
const latin1 = new TextDecoder("latin1");
const ascii = new TextEncoder();

/** The bytes of a request without a body. `target` is the path and query, as signed. */
export function requestBytes(method: string, target: string, host: string, headers: Record<string, string>): Uint8Array {
  let text = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name + value)) throw new Error(`header ${name}: a line break in a header`);
    text += `${name}: ${value}\r\n`;
  }
  return ascii.encode(`${text}\r\n`);
}

export interface ParsedResponse {
  status: number;
  /** Names in lower case; repeated headers joined with ", ". */
  headers: [string, string][];
  /** At the start of a buffer of its own (a spare buffer given may be longer): it can be transferred. */
  body: Uint8Array;
  /** The server will close the connection (or the body ran to its end): it cannot carry another request. */
  close: boolean;
}

type Framing = { kind: "length"; left: number } | { kind: "chunked" } | { kind: "until-close" } | { kind: "none" };

/**
 * One response, fed the connection's bytes in order. `push` returns the response once complete,
 * with how many bytes of the chunk it used (the rest belongs to no request: an error).
 */
export class ResponseReader {
  private head: Uint8Array[] = [];
  private headLength = 0;
  private status = 0;
  private headers: [string, string][] = [];
  private close = false;
  private framing: Framing | undefined;
  private body: Uint8Array = new Uint8Array(0);
  private filled = 0;
  /** Chunked bodies: the bytes not parsed yet (a chunk-size line split across socket reads). */
  private pending: Uint8Array = new Uint8Array(0);
  private chunkState: "size" | "data" | "crlf" | "trailer" = "size";
  private chunkLeft = 0;
  private chunks: Uint8Array[] = [];

  /** The spare buffer, until a successful response's body is read into it. */
  private into: ArrayBuffer | undefined;

  /** `into`: a spare buffer for a successful response's Content-Length body, if it fits. */
  constructor(
    private readonly method: string,
    into?: ArrayBuffer,
  ) {
    this.into = into;
  }

  /** The spare buffer given, if no body was read into it. */
  get unusedBuffer(): ArrayBuffer | undefined {
    return this.into;
  }


  /** Where the next bytes of a body of known length can be received directly (`bodyFilled` then), else undefined. */
  bodySpace(): Uint8Array | undefined {
    const f = this.framing;
    return f?.kind === "length" && f.left > 0 ? this.body.subarray(this.filled, this.filled + f.left) : undefined;
  }

  /** `n` bytes were received into `bodySpace()`: the response once it is whole. */
  bodyFilled(n: number): ParsedResponse | undefined {
    const f = this.framing as { kind: "length"; left: number };
    this.filled += n;
    f.left -= n;
    return f.left === 0 ? this.result() : undefined;
  }

  /** Feeds bytes; the response once it is whole, else undefined. Throws on a malformed response. */
  push(chunk: Uint8Array): { response: ParsedResponse; used: number } | undefined {
    let at = 0;
    if (!this.framing) {
      const end = this.headEnd(chunk);
      if (end < 0) {
        this.head.push(chunk.slice()); // a socket's chunk may be reused once its callback returns
        this.headLength += chunk.length;
        if (this.headLength > MAX_HEAD) throw new Error("response head too long");
        return undefined;
      }
      this.head.push(chunk.subarray(0, end));
      this.parseHead(concatBytes(this.head));
      this.head = [];
      at = end;
      // 1xx: informational, a real response follows (its head starts right after).
      if (this.status >= 100 && this.status < 200) {
        const rest = chunk.subarray(at);
        this.reset();
        const done = rest.length ? this.push(rest) : undefined;
        return done && { response: done.response, used: at + done.used };
      }
    }
    const used = at + this.feedBody(chunk.subarray(at));
    return this.complete() ? { response: this.result(), used } : undefined;
  }

  /** The connection ended: the response if that is how its body ends, else an error. */
  end(): ParsedResponse {
    if (this.framing?.kind === "until-close") {
      this.framing = { kind: "none" };
      return this.result();
    }
    throw new Error(this.framing ? "connection closed in the middle of a response body" : "connection closed before a response");
  }

  /** Whether any byte of the response has arrived (a request on a closed keep-alive connection gets none). */
  get started(): boolean {
    return this.headLength > 0 || this.framing !== undefined;
  }

  private reset(): void {
    this.head = [];
    this.headLength = 0;
    this.framing = undefined;
    this.headers = [];
  }

  /** Where the head ends (just past its blank line) in the head so far plus `chunk`, as an offset in `chunk`; -1 if not yet. */
  private headEnd(chunk: Uint8Array): number {
    // The blank line may straddle the previous chunk: look at its last 3 bytes too.
    const tail = this.head.length ? concatBytes(this.head).subarray(-3) : new Uint8Array(0);
    const joined = tail.length ? concatBytes([tail, chunk]) : chunk;
    for (let i = 0; i + 3 < joined.length; i++) {
      if (joined[i] === 13 && joined[i + 1] === 10 && joined[i + 2] === 13 && joined[i + 3] === 10) return i + 4 - tail.length;
    }
    return -1;
  }

  private parseHead(bytes: Uint8Array): void {
    const lines = latin1.decode(bytes).split("\r\n");
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
    if (!m) throw new Error(`not an HTTP/1 status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
    this.status = Number(m[2]);
    const joined = new Map<string, string>();
    for (const line of lines.slice(1)) {
      if (line === "") continue;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      joined.set(name, joined.has(name) ? `${joined.get(name)}, ${value}` : value);
    }
    this.headers = [...joined];
    const connection = (joined.get("connection") ?? "").toLowerCase();
    this.close = m[1] === "0" ? !connection.includes("keep-alive") : connection.includes("close");
    const length = joined.get("content-length");
    const chunked = /(^|,)\s*chunked\s*$/i.test(joined.get("transfer-encoding") ?? "");
    if (this.method === "HEAD" || this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200)) {
      this.framing = { kind: "none" };
    } else if (chunked) {
      this.framing = { kind: "chunked" };
    } else if (length !== undefined) {
      if (!/^\d+$/.test(length)) throw new Error(`bad content-length: ${length}`);
      const n = Number(length);
      if (this.into && n <= this.into.byteLength && this.status >= 200 && this.status < 300) {
        this.body = new Uint8Array(this.into, 0, n);
        this.into = undefined;
      } else {
        // Not zeroed first: every byte is written by the body (a block's worth of needless memset).
        this.body = new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n);
      }
      this.framing = { kind: "length", left: n };
    } else {
      this.framing = { kind: "until-close" };
      this.close = true;
    }
  }

  /** Takes body bytes; returns how many were the body's. */
  private feedBody(bytes: Uint8Array): number {
    const f = this.framing!;
    if (f.kind === "none") return 0;
    if (f.kind === "length") {
      const n = Math.min(f.left, bytes.length);
      this.body.set(bytes.subarray(0, n), this.filled);
      this.filled += n;
      f.left -= n;
      return n;
    }
    if (f.kind === "until-close") {
      this.chunks.push(bytes.slice());
      return bytes.length;
    }
    return this.feedChunked(bytes);
  }

  private feedChunked(bytes: Uint8Array): number {
    const start = this.pending.length;
    const data = start ? concatBytes([this.pending, bytes]) : bytes;
    let at = 0;
    for (;;) {
      if (this.chunkState === "size" || this.chunkState === "trailer") {
        const eol = indexOfCrlf(data, at);
        if (eol < 0) break;
        const line = data.subarray(at, eol);
        at = eol + 2;
        if (this.chunkState === "trailer") {
          if (line.length > 0) continue; // a trailer header: not needed
          this.framing = { kind: "none" };
          this.pending = new Uint8Array(0);
          return at - start;
        }
        const size = latin1.decode(line).split(";")[0]!.trim();
        if (!/^[0-9a-fA-F]{1,8}$/.test(size)) throw new Error(`bad chunk size: ${JSON.stringify(size.slice(0, 20))}`);
        this.chunkLeft = parseInt(size, 16);
        this.chunkState = this.chunkLeft === 0 ? "trailer" : "data";
      } else if (this.chunkState === "data") {
        const n = Math.min(this.chunkLeft, data.length - at);
        if (n > 0) this.chunks.push(data.slice(at, at + n));
        at += n;
        this.chunkLeft -= n;
        if (this.chunkLeft > 0) break;
        this.chunkState = "crlf";
      } else {
        if (data.length - at < 2) break;
        if (data[at] !== 13 || data[at + 1] !== 10) throw new Error("chunk not followed by CRLF");
        at += 2;
        this.chunkState = "size";
      }
    }
    this.pending = data.slice(at);
    return bytes.length;
  }

  private complete(): boolean {
    const f = this.framing;
    return f !== undefined && (f.kind === "none" || (f.kind === "length" && f.left === 0));
  }

  private result(): ParsedResponse {
    const body = this.chunks.length ? concatBytes(this.chunks) : this.body;
    return { status: this.status, headers: this.headers, body, close: this.close };
  }
}

function indexOfCrlf(data: Uint8Array, from: number): number {
  for (let i = from; i + 1 < data.length; i++) if (data[i] === 13 && data[i + 1] === 10) return i;
  return -1;
}
