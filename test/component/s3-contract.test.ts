/**
 * The S3 contract (test/helpers/s3-contract.ts) against the embedded server, and the faults that
 * server injects on purpose for the other tests.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { embeddedPeer, freshBucket, rawClient, startEmbedded } from "../helpers/s3.ts";
import { s3ContractTests } from "../helpers/s3-contract.ts";

const server = startEmbedded();
afterAll(() => server.stop());

describe("S3 contract: embedded", () => s3ContractTests(embeddedPeer(server)));

describe("embedded server faults", () => {
  const peer = embeddedPeer(server);
  const s3 = rawClient(peer);

  test("error rate, eventual consistency, counters", async () => {
    const bucket = await freshBucket(peer, "faults");
    server.reset();
    server.setFaults({ errorRate: 1, errorStatuses: [503] });
    const failed = await s3("PUT", `${bucket}/k`, { body: "v1" });
    expect(failed.status).toBe(503);
    expect(new TextDecoder().decode(failed.body)).toContain("SlowDown");
    server.setFaults({ errorRate: 0, staleMs: 300 });
    expect((await s3("PUT", `${bucket}/k`, { body: "v1" })).status).toBe(200);
    expect((await s3("GET", `${bucket}/k`)).status).toBe(404); // not visible yet
    await new Promise((r) => setTimeout(r, 350));
    expect(new TextDecoder().decode((await s3("GET", `${bucket}/k`)).body)).toBe("v1");
    await s3("PUT", `${bucket}/k`, { body: "v2" });
    expect(new TextDecoder().decode((await s3("GET", `${bucket}/k`)).body)).toBe("v1"); // the old version
    await s3("DELETE", `${bucket}/k`);
    expect(new TextDecoder().decode((await s3("GET", `${bucket}/k`)).body)).toBe("v1"); // still the old one
    await new Promise((r) => setTimeout(r, 350));
    expect((await s3("GET", `${bucket}/k`)).status).toBe(404);
    expect(server.counters.injectedErrors).toBe(1);
    expect(server.counters.staleAnswers).toBe(3);
    expect(server.counters.requests.PUT).toBe(3);
    server.reset();
  });
});
