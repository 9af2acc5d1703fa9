/**
 * Misbehaviour on demand, for tests: errors, latency, dropped connections, and eventual
 * consistency (the previous version of an object is served for a while after it changes).
 */

export interface FaultSettings {
  /** Fraction (0..1) of object requests answered with one of `errorStatuses` instead. */
  errorRate: number;
  errorStatuses: number[];
  /** Added delay of every request, in ms: a fixed value or a [min, max] range (reorders requests). */
  latencyMs: number | [number, number];
  /** Added delay of each ListObjects request, in ms (a slow listing of a big bucket). */
  listLatencyMs: number;
  /** Fraction of object requests whose connection breaks in the middle of the response. */
  dropRate: number;
  /** Fraction of GET responses whose body has one byte flipped (headers, ETag included, unchanged). */
  corruptRate: number;
  /** After a PUT or DELETE, GET and HEAD keep answering with the old version (or 404) this long. */
  staleMs: number;
  /** Only requests whose key matches are affected by the error and drop rates (default: all). */
  keyPattern: RegExp | undefined;
  /** The next this many PUTs (whose key matches) are carried out, and their answers never come. */
  lostPutAnswers: number;
  /**
   * PUT with If-None-Match / If-Match: honoured as AWS does, ignored (stored anyway), refused
   * with 501 NotImplemented, or answered 409 ConditionalRequestConflict.
   */
  conditionalPut: "honour" | "ignore" | "refuse" | "conflict";
  /** False: DeleteObjects is answered 501 NotImplemented, as by servers without it. */
  deleteObjects: boolean;
  /**
   * An outage until this time (Date.now() ms; Infinity: until changed): every request, of any
   * kind, has its connection broken before anything is done or answered.
   */
  downUntil: number;
}

export const NO_FAULTS: FaultSettings = {
  errorRate: 0,
  errorStatuses: [500, 503],
  latencyMs: 0,
  listLatencyMs: 0,
  dropRate: 0,
  corruptRate: 0,
  staleMs: 0,
  keyPattern: undefined,
  lostPutAnswers: 0,
  conditionalPut: "honour",
  deleteObjects: true,
  downUntil: 0,
};

export type ServerRequestKind = "GET" | "PUT" | "DELETE" | "HEAD" | "LIST" | "BULK_DELETE" | "OTHER";

/** What the server saw: per kind, and what it did on purpose. */
export class ServerCounters {
  requests: Record<ServerRequestKind, number> = { GET: 0, PUT: 0, DELETE: 0, HEAD: 0, LIST: 0, BULK_DELETE: 0, OTHER: 0 };
  /** Keys removed by DeleteObjects requests. */
  bulkDeletedKeys = 0;
  /** Objects made by CopyObject (counted among the PUTs too). */
  copies = 0;
  injectedErrors = 0;
  /** Requests held back by the latency fault. */
  delayedRequests = 0;
  droppedConnections = 0;
  /** Requests broken off by an outage (`downUntil`). */
  refusedWhileDown = 0;
  corruptedBodies = 0;
  staleAnswers = 0;
  rejectedSignatures = 0;
  conditionalFailures = 0;
  bytesIn = 0;
  bytesOut = 0;

  get total(): number {
    return Object.values(this.requests).reduce((a, b) => a + b, 0);
  }

  reset(): void {
    Object.assign(this, new ServerCounters());
  }
}

export function delayFor(latency: FaultSettings["latencyMs"]): number {
  if (typeof latency === "number") return latency;
  return latency[0] + Math.random() * (latency[1] - latency[0]);
}
