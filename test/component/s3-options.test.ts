/** S3 flags the client honours on its own: the upload and download speed limits. */
import { afterAll, expect, test } from "bun:test";
import { pattern } from "../helpers/data.ts";
import { startEmbedded } from "../helpers/s3.ts";
import { testClient } from "../helpers/stack.ts";

const server = startEmbedded(["slow"]);
afterAll(() => server.stop());

test("--maxUploadSpeed and --maxDownloadSpeed hold a transfer to the given rate", async () => {
  const bucket = { baseURL: server.url, bucket: "slow" };
  const client = testClient({ ...bucket, maxUploadBps: 64 * 1024 * 8 });
  const started = performance.now();
  await client.send({ method: "PUT", kind: "PUT", key: "k", body: pattern(32 * 1024, 1), expect: [200] });
  expect(performance.now() - started).toBeGreaterThanOrEqual(450); // 32 KiB at 64 KiB/s
  const reader = testClient({ ...bucket, maxDownloadBps: 64 * 1024 * 8 });
  const fetched = performance.now();
  expect((await reader.send({ method: "GET", kind: "GET", key: "k", expect: [200] })).body.length).toBe(32 * 1024);
  expect(performance.now() - fetched).toBeGreaterThanOrEqual(450);
});
