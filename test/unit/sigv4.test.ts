/**
 * SigV4 (src/util/sigv4.ts): the examples of Amazon's S3 documentation, and agreement with an
 * independent signer (aws4fetch) on random requests: keys with characters that need escaping,
 * repeated and odd query keys, headers with runs of white space.
 */
import { describe, expect, test } from "bun:test";
import { AwsV4Signer } from "aws4fetch";
import { canonicalPath, sign, signingKey } from "../../src/util/sigv4.ts";

const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const DATETIME = "20130524T000000Z";
const SCOPE = "20130524/us-east-1/s3/aws4_request";
const key = signingKey(SECRET, "20130524", "us-east-1", "s3");

describe("SigV4: Amazon's S3 examples", () => {
  test("GET an object with a Range header", () => {
    const s = sign({
      method: "GET",
      url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
      headers: [["range", "bytes=0-9"], ["x-amz-content-sha256", EMPTY_SHA256], ["x-amz-date", DATETIME]],
      payloadHash: EMPTY_SHA256,
    }, key, DATETIME, SCOPE);
    expect(s).toEqual({ signedHeaders: "host;range;x-amz-content-sha256;x-amz-date", signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41" });
  });

  test("GET a bucket listing with a query", () => {
    const s = sign({
      method: "GET",
      url: new URL("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"),
      headers: [["x-amz-content-sha256", EMPTY_SHA256], ["x-amz-date", DATETIME]],
      payloadHash: EMPTY_SHA256,
    }, key, DATETIME, SCOPE);
    expect(s?.signature).toBe("34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  });
});

describe("SigV4: canonical forms", () => {
  test("a path is decoded once and encoded once, slashes kept", () => {
    expect(canonicalPath("/b/a%20b/c(d)!*'")).toBe("/b/a%20b/c%28d%29%21%2A%27");
    expect(canonicalPath("/b/%7Euser/%2Fx")).toBe("/b/~user//x");
    expect(canonicalPath("/b/%E0%A4%A")).toBeUndefined();
  });
});

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("SigV4 agrees with aws4fetch on random requests", async () => {
  const seed = Number(process.env.SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`sigv4 random requests: SEED=${seed}`);
  const random = mulberry32(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const chars = ["a", "Z", "0", "-", "_", ".", "~", " ", "+", "!", "'", "(", ")", "*", "%", "/", "é", "日", "&", "=", "?", "#"];
  const word = (n: number, from = chars) => Array.from({ length: 1 + Math.floor(random() * n) }, () => pick(from)).join("");
  const ascii = chars.filter((c) => c < "\x7f");
  for (let i = 0; i < 300; i++) {
    const objectKey = word(12);
    const url = new URL(`http://127.0.0.1:9000/bucket/${objectKey.split("/").map(encodeURIComponent).join("/")}`);
    for (let q = Math.floor(random() * 4); q > 0; q--) url.searchParams.append(pick(["prefix", "list-type", "a", "A", "b", word(4)]), word(6));
    const headers: [string, string][] = [["x-amz-content-sha256", "UNSIGNED-PAYLOAD"], ["x-amz-date", "20261203T150000Z"]];
    if (random() < 0.5) headers.push(["x-amz-meta-note", `  ${word(5, ascii)}   ${word(5, ascii)} `]);
    if (random() < 0.3) headers.push(["x-amz-security-token", word(20, ascii).trim() || "t"]);
    const method = pick(["GET", "PUT", "DELETE", "HEAD"]);
    const reference = new AwsV4Signer({
      method, url: url.toString(), headers: Object.fromEntries(headers), accessKeyId: "AK", secretAccessKey: SECRET,
      service: "s3", region: "us-east-1", datetime: "20261203T150000Z",
    });
    const ours = sign({ method, url, headers, payloadHash: "UNSIGNED-PAYLOAD" }, signingKey(SECRET, "20261203", "us-east-1", "s3"), "20261203T150000Z", "20261203/us-east-1/s3/aws4_request");
    expect({ url: url.toString(), signature: ours?.signature }).toEqual({ url: url.toString(), signature: await reference.signature() });
  }
});
