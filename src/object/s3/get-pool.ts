/**
 * Object GETs on threads of their own (get.worker.ts), each with its own connections.
 *
 * Why: the runtime's fetch() receives every response on one HTTP thread, so a cold sequential read
 * is capped by what that one thread can take in (socket reads, copying, faulting in fresh memory
 * for each body), however many cores the machine has. Here each thread receives its share, reads a
 * body straight into one buffer of its size, and takes its CRC-32 there; the main thread gets the
 * buffer itself. Requests go to the thread with the fewest in flight.
 *
 * Used where the runtime offers its own sockets and no HTTP proxy is configured (fetch() honours
 * the proxy variables; this does not speak to proxies).
 */
import { runtime } from "../../runtime/index.ts";
import type { ClientTls } from "../../runtime/runtime.ts";
import { requestBytes } from "./http1.ts";
import type { BufferPool } from "../../util/buffer-pool.ts";

/** What the main thread asks of a GET thread. */
export interface GetJob {
  id: number;
  method: "GET";
  host: string;
  port: number;
  tls: ClientTls | undefined;
  request: Uint8Array;
  timeoutMs: number;
  /** Close the connection after this request (--noCurlCache). */
  close: boolean;
  /** A spare buffer (transferred) for the body, if it fits; handed back unused otherwise. */
  into: ArrayBuffer | undefined;
}

/** A GET thread's answer: the response, or why there is none. */
export type GetAnswer =
  | { id: number; status: number; headers: [string, string][]; body: Uint8Array; crc32: number; unused: ArrayBuffer | undefined }
  | { id: number; error: string; timedOut: boolean; unused: ArrayBuffer | undefined };

export interface PooledResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The body's CRC-32, taken on the GET thread. */
  crc32: number;
}

/** The error of a GET that got no response; `timedOut` when it ran out of time. */
export class GetError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(message);
  }
}

interface Thread {
  worker: Worker;
  inFlight: number;
  /** Jobs posted before the thread said it listens. */
  waiting: GetJob[] | undefined;
}

/** A job's transfer list: its spare buffer moves to the thread (no view of it here sees it any more). */
const transferOf = (job: GetJob): ArrayBuffer[] => (job.into ? [job.into] : []);

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"];

/** Whether GETs can go through threads of their own here: the runtime has sockets, and no proxy is set. */
export function getThreadsUsable(env: Record<string, string | undefined> = process.env): boolean {
  return runtime.connectStream !== undefined && !PROXY_VARIABLES.some((name) => env[name]);
}

/** One per core, at least two (so that one busy thread is no ceiling) and at most four. */
export function defaultGetThreads(): number {
  return Math.min(4, Math.max(2, navigator.hardwareConcurrency || 2));
}

export class GetPool {
  private readonly threads: Thread[] = [];
  private readonly pending = new Map<number, { resolve(r: PooledResponse): void; reject(e: unknown): void; thread: Thread; spares: BufferPool | undefined }>();
  private nextId = 1;

  constructor(
    private readonly size: number,
    private readonly tls: { insecure: boolean; ca: string | undefined },
  ) {}

  /**
   * GETs `url` with these (already signed) headers. With `spares`, the body is read into a spare
   * buffer if one fits: a read past a full cache then faults in no fresh memory (which costs more
   * CPU than the rest of receiving the body).
   */
  get(url: URL, headers: Record<string, string>, timeoutMs: number, spares?: BufferPool): Promise<PooledResponse> {
    const https = url.protocol === "https:";
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const job: GetJob = {
      id: this.nextId++,
      method: "GET",
      host,
      port: Number(url.port || (https ? 443 : 80)),
      tls: https ? { verify: !this.tls.insecure, serverName: host, ca: this.tls.ca } : undefined,
      request: requestBytes("GET", url.pathname + url.search, url.host, headers),
      timeoutMs,
      close: (headers.connection ?? "").toLowerCase() === "close",
      into: spares?.takeSpare()?.buffer as ArrayBuffer | undefined,
    };
    const thread = this.leastBusy();
    thread.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject, thread, spares });
      if (thread.waiting) thread.waiting.push(job);
      else thread.worker.postMessage(job, transferOf(job));
    });
  }

  /** Ends the threads; GETs still on their way fail. */
  close(): void {
    for (const t of this.threads) t.worker.terminate();
    this.threads.length = 0;
    for (const [id, p] of this.pending) {
      p.reject(new GetError("the S3 client was closed", false));
      this.pending.delete(id);
    }
  }

  /** The thread with the fewest GETs in flight. All start with the first GET: one that starts later makes its first GETs wait for it. */
  private leastBusy(): Thread {
    while (this.threads.length < this.size) this.start();
    return this.threads.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
  }

  private start(): Thread {
    const worker = runtime.startWorker("object/s3/get.worker.ts");
    const thread: Thread = { worker, inFlight: 0, waiting: [] };
    // The threads must not keep the process alive (the mount's end decides that).
    (worker as Worker & { unref?: () => void }).unref?.();
    worker.onmessage = (e: MessageEvent<GetAnswer | { ready: true }>) => {
      const data = e.data;
      if ("ready" in data) {
        for (const job of thread.waiting ?? []) worker.postMessage(job, transferOf(job));
        thread.waiting = undefined;
        return;
      }
      this.answered(data);
    };
    worker.onerror = (e) => {
      // A thread that failed takes its GETs with it; a new one is started for the next.
      const at = this.threads.indexOf(thread);
      if (at >= 0) this.threads.splice(at, 1);
      for (const [id, p] of this.pending) {
        if (p.thread !== thread) continue;
        this.pending.delete(id);
        p.reject(new GetError(`GET thread failed: ${e.message}`, false));
      }
    };
    this.threads.push(thread);
    return thread;
  }

  private answered(answer: GetAnswer): void {
    const p = this.pending.get(answer.id);
    if (!p) return;
    this.pending.delete(answer.id);
    p.thread.inFlight--;
    if (answer.unused) p.spares?.give(new Uint8Array(answer.unused));
    if ("error" in answer) return p.reject(new GetError(answer.error, answer.timedOut));
    p.resolve({ status: answer.status, headers: new Headers(answer.headers), body: answer.body, crc32: answer.crc32 });
  }
}
