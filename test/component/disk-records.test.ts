/**
 * Which dependents records still freeze their base (object/layers/disk-records.ts), against the
 * embedded server: only a dependent's manifest the server says is gone (404) makes its record
 * stale; a manifest that cannot be fetched fails the call and a damaged one keeps the record, so
 * an outage never unfreezes a base; and a look without pruning removes nothing.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { DiskRecords } from "../../src/object/layers/disk-records.ts";
import type { Manifest } from "../../src/object/layers/manifest.ts";
import { embeddedPeer, freshBucket, startEmbedded } from "../helpers/s3.ts";
import { testClient } from "../helpers/stack.ts";

const server = startEmbedded();
const peer = embeddedPeer(server);
afterEach(() => server.reset());
afterAll(() => server.stop());

const BASE = "b/";
const CLONE = "c/";
const clone: Manifest = {
  format: 1, blockSize: 4096, size: 16 * 4096, hashPrefix: false, live: CLONE,
  chain: [{ layer: BASE, disk: BASE, blocks: 16 }], base: { disk: BASE }, snapshots: [], nextLayer: 1,
};

/** A base with one old record (not a clone being made): of CLONE, whose manifest is as `manifest` says. */
async function setUp(manifest: "clone" | "damaged" | "none") {
  const bucket = await freshBucket(peer, "records");
  const client = testClient({ baseURL: peer.url, bucket, maxRetryPauseMs: 100 });
  const warnings: string[] = [];
  const records = new DiskRecords(client, { warn: (line) => warnings.push(line) });
  const record = new TextEncoder().encode(JSON.stringify({ disk: CLONE, created: "2020-01-01T00:00:00Z", host: "h" }));
  const key = `s3backer-dependents/${encodeURIComponent(BASE)}/${encodeURIComponent(CLONE)}`;
  await client.send({ method: "PUT", kind: "PUT", key, body: record, expect: [200] });
  if (manifest === "clone") await records.replaceManifest(CLONE, clone, "");
  if (manifest === "damaged") await client.send({ method: "PUT", kind: "PUT", key: `${CLONE}s3backer-layers`, body: new TextEncoder().encode("{not json"), expect: [200] });
  return { records, warnings, close: () => client.close() };
}

test("a dependent's manifest that cannot be fetched (503s) fails the call and keeps the record", async () => {
  const { records, close } = await setUp("clone");
  server.setFaults({ errorRate: 1, errorStatuses: [503], keyPattern: /^c\/s3backer-layers$/ });
  const outcome = await records.dependents(BASE).then((found) => `resolved: ${JSON.stringify(found)}`, (err) => String(err));
  expect(outcome).toMatch(/GET c\/s3backer-layers: HTTP 503/);
  expect(server.counters.injectedErrors).toBeGreaterThan(0);
  server.reset();
  expect((await records.records(BASE)).map((r) => r.disk)).toEqual([CLONE]);
  expect((await records.dependents(BASE)).map((r) => r.disk)).toEqual([CLONE]);
  close();
});

test("a damaged manifest keeps its record as a dependent, with a warning", async () => {
  const { records, warnings, close } = await setUp("damaged");
  expect((await records.dependents(BASE)).map((r) => r.disk)).toEqual([CLONE]);
  expect(warnings.join("\n")).toMatch(/c\/s3backer-layers: not a manifest .*: .*\/c counts as reading through .*\/b/);
  expect((await records.records(BASE)).length).toBe(1);
  close();
});

test("a record whose dependent is gone (404) is stale: a look without pruning keeps it, a pruning one removes it", async () => {
  const { records, close } = await setUp("none");
  expect(await records.dependents(BASE, false)).toEqual([]);
  expect((await records.records(BASE)).length).toBe(1);
  expect(await records.dependents(BASE)).toEqual([]);
  expect(await records.records(BASE)).toEqual([]);
  close();
});
