/** Fixed-bucket histograms, as Prometheus reads them: a bucket holds what is at most its bound. */
import { expect, test } from "bun:test";
import { Histogram } from "../../src/util/histogram.ts";
import { RequestStats } from "../../src/object/s3/request-stats.ts";

test("a value equal to a bound is in that bound's bucket; one above every bound is in the last; count and sum add up", () => {
  const h = new Histogram([0.001, 0.01, 1]);
  const values = [0, 0.001, 0.0010001, 0.01, 0.5, 1, 1.5, 100];
  for (const v of values) h.observe(v);
  expect([...h.counts]).toEqual([2, 2, 2, 2]);
  expect(h.count).toBe(8);
  expect(h.sum).toBe(values.reduce((a, b) => a + b, 0));
});

test("a kind's answered requests are its histogram's count, one source for both", () => {
  const stats = new RequestStats();
  stats.of("PUT").record(3);
  stats.of("PUT").record(40);
  stats.of("GET").record(0.2);
  const put = stats.histograms().find((h) => h.labels.kind === "PUT")!;
  expect(put.histogram.count).toBe(2);
  expect(put.histogram.sum).toBe(3 / 1000 + 40 / 1000);
  const entry = (name: string) => stats.entries().find(([n]) => n === name);
  expect(entry("PUT requests")).toEqual(["PUT requests", 2, { counter: true, labels: { kind: "PUT" } }]);
  expect(entry("GET requests")).toEqual(["GET requests", 1, { counter: true, labels: { kind: "GET" } }]);
});

test("every kind (GET, PUT, DELETE, HEAD, LIST) has its requests, errors and retries as counters labelled by kind; GET and PUT their bytes", () => {
  const stats = new RequestStats();
  stats.of("DELETE").errors++;
  stats.of("LIST").retries += 2;
  stats.of("GET").bytes += 4096;
  const counters = stats.entries().filter(([, , how]) => how?.counter).map(([name, value, how]) => `${name}=${value} ${how!.labels!.kind}`);
  expect(counters).toEqual([
    "GET requests=0 GET", "GET errors=0 GET", "GET retries=0 GET", "GET bytes=4096 GET",
    "PUT requests=0 PUT", "PUT errors=0 PUT", "PUT retries=0 PUT", "PUT bytes=0 PUT",
    "DELETE requests=0 DELETE", "DELETE errors=1 DELETE", "DELETE retries=0 DELETE",
    "HEAD requests=0 HEAD", "HEAD errors=0 HEAD", "HEAD retries=0 HEAD",
    "LIST requests=0 LIST", "LIST errors=0 LIST", "LIST retries=2 LIST",
  ]);
  expect(stats.histograms().map((h) => h.labels.kind)).toEqual(["GET", "PUT", "DELETE", "HEAD", "LIST"]);
});
