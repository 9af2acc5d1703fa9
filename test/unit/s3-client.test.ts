/** The S3 client's URLs, built with no server. */
import { expect, test } from "bun:test";
import { testClient } from "../helpers/stack.ts";

test("URLs: path style by default, virtual-hosted with --vhost, keys encoded", () => {
  const mk = (vhost: boolean, baseURL: string) => testClient({ baseURL, bucket: "my-bucket", vhost, region: "r" });
  expect(mk(false, "http://127.0.0.1:9000/").url("a/0000000f")).toBe("http://127.0.0.1:9000/my-bucket/a/0000000f");
  expect(mk(true, "https://s3.eu-west-1.amazonaws.com/").url("a b/x")).toBe("https://my-bucket.s3.eu-west-1.amazonaws.com/a%20b/x");
  expect(mk(false, "http://h/base/").url("", { prefix: "a b", "list-type": "2" })).toBe("http://h/base/my-bucket?prefix=a%20b&list-type=2");
});
