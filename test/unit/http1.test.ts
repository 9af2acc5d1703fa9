/** The HTTP/1.1 response reader of the HTTP threads: known bytes in, fed whole and in every split. */
import { expect, test } from "bun:test";
import { requestBytes, ResponseReader, type ParsedResponse } from "../../src/http/http1.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Feeds `wire` in pieces cut at `cuts`; the response and the bytes left over. */
function read(method: string, wire: Uint8Array, cuts: number[] = []): { response: ParsedResponse | undefined; left: number } {
  const reader = new ResponseReader(method);
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < wire.length), wire.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const piece = wire.subarray(bounds[i], bounds[i + 1]);
    const done = reader.push(piece);
    if (done) return { response: done.response, left: wire.length - (bounds[i]! + done.used) };
  }
  return { response: undefined, left: 0 };
}

/** Every way of cutting `wire` in two, and in single bytes: each must read the same. */
function everySplit(method: string, wire: Uint8Array, check: (r: ParsedResponse, left: number) => void): void {
  for (let cut = 0; cut <= wire.length; cut++) {
    const { response, left } = read(method, wire, [cut]);
    expect(response).toBeDefined();
    check(response!, left);
  }
  const bytes = read(method, wire, Array.from({ length: wire.length }, (_, i) => i));
  expect(bytes.response).toBeDefined();
  check(bytes.response!, bytes.left);
}

test("a request's bytes: method, target, host, headers, blank line; no line breaks smuggled in", () => {
  expect(text(requestBytes("GET", "/b/k?x=1", "h:9", { "x-amz-date": "d", authorization: "a" }))).toBe(
    "GET /b/k?x=1 HTTP/1.1\r\nhost: h:9\r\nx-amz-date: d\r\nauthorization: a\r\n\r\n",
  );
  expect(() => requestBytes("GET", "/", "h", { a: "b\r\nx-evil: 1" })).toThrow(/line break/);
});

test("Content-Length body, headers in lower case and repeated ones joined, in every split", () => {
  const wire = enc("HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nX-Amz-Meta-A: 1\r\nx-amz-meta-a: 2\r\nContent-Length: 5\r\n\r\nhello");
  everySplit("GET", wire, (r, left) => {
    expect(r.status).toBe(200);
    expect(r.headers).toContainEqual(["etag", '"abc"']);
    expect(r.headers).toContainEqual(["x-amz-meta-a", "1, 2"]);
    expect(text(r.body)).toBe("hello");
    expect(r.close).toBe(false);
    expect(left).toBe(0);
  });
});

test("bytes past the end of a response are left over (the connection is then out of step)", () => {
  const { response, left } = read("GET", enc("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"));
  expect(text(response!.body)).toBe("ok");
  expect(left).toBe(5);
});

test("chunked body with extensions and trailers, in every split", () => {
  const wire = enc("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n<Err\r\nA\r\nor>NoSuchK\r\n0\r\nx-trailer: t\r\n\r\n");
  everySplit("GET", wire, (r, left) => {
    expect(r.status).toBe(404);
    expect(text(r.body)).toBe("<Error>NoSuchK");
    expect(left).toBe(0);
  });
});

test("no body: HEAD, 204, 304; a 100 Continue before the real response", () => {
  expect(read("HEAD", enc("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")).response!.body.length).toBe(0);
  expect(read("GET", enc("HTTP/1.1 204 No Content\r\n\r\n")).response!.status).toBe(204);
  expect(read("GET", enc("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")).response!.body.length).toBe(0);
  everySplit("GET", enc("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), (r) => {
    expect(r.status).toBe(200);
    expect(text(r.body)).toBe("hi");
  });
});

test("a body that runs to the end of the connection; Connection: close; HTTP/1.0", () => {
  const reader = new ResponseReader("GET");
  expect(reader.push(enc("HTTP/1.1 200 OK\r\n\r\nsome"))).toBeUndefined();
  expect(reader.push(enc(" bytes"))).toBeUndefined();
  const r = reader.end();
  expect(text(r.body)).toBe("some bytes");
  expect(r.close).toBe(true);
  expect(read("GET", enc("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")).response!.close).toBe(true);
  expect(read("GET", enc("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")).response!.close).toBe(true);
  expect(read("GET", enc("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")).response!.close).toBe(false);
});

test("a connection that ends early, and malformed responses, are errors", () => {
  const cut = new ResponseReader("GET");
  expect(cut.started).toBe(false);
  expect(() => cut.end()).toThrow(/before a response/);
  cut.push(enc("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  expect(cut.started).toBe(true);
  expect(() => cut.end()).toThrow(/middle of a response body/);
  expect(() => read("GET", enc("HTTP/2 200\r\n\r\n"))).toThrow(/status line/);
  expect(() => read("GET", enc("HTTP/1.1 200 OK\r\nno colon\r\n\r\n"))).toThrow(/malformed header/);
  expect(() => read("GET", enc("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"))).toThrow(/content-length/);
  expect(() => read("GET", enc("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))).toThrow(/chunk size/);
  expect(() => read("GET", enc("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX"))).toThrow(/CRLF/);
  expect(() => new ResponseReader("GET").push(new Uint8Array(70 * 1024).fill(65))).toThrow(/too long/);
});
