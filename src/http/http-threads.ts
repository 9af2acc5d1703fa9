/**
 * Object GETs and PUTs on threads of their own (http.worker.ts), each with its own connections.
 *
 * Why: the runtime's fetch() receives every response on one HTTP thread, so a cold sequential read
 * is capped by what that one thread can take in (socket reads, copying, faulting in fresh memory
 * for each body), however many cores the machine has. Here each thread receives its share, reads a
 * body straight into one buffer of its size, and takes its CRC-32 there; the main thread gets the
 * buffer itself. Requests go to the thread with the fewest in flight.
 *
 * A PUT's body is copied once, into shared memory kept for the next PUTs (BodySlots); the thread
 * writes it to the socket from there. fetch() copies each body into memory of its own, often
 * fresh: faulting that in cost more CPU than the rest of sending the body. Its Content-MD5 is
 * taken there too, before the request is signed: the body is staged in its slot first (md5Staged),
 * and the PUT then sends that slot (the bytes hashed are the bytes sent).
 *
 * Used where the runtime offers its own sockets and no HTTP proxy is configured (fetch() honours
 * the proxy variables; this does not speak to proxies).
 */
import { runtime } from "../runtime/index.ts";
import type { ClientTls } from "../runtime/runtime.ts";
import { requestBytes } from "./http1.ts";
import type { BufferPool } from "../memory/buffer-pool.ts";
import { jobPosted } from "./plain-connections.ts";

/** What the main thread asks of an HTTP thread. */
export interface HttpJob {
  id: number;
  method: "GET" | "PUT";
  host: string;
  port: number;
  tls: ClientTls | undefined;
  /** The request line and headers. */
  request: Uint8Array;
  /** A PUT's body, in shared memory the main thread leaves alone until the answer. */
  body?: Uint8Array;
  timeoutMs: number;
  /** Close the connection after this request (--noCurlCache). */
  close: boolean;
  /** A spare buffer (transferred) for the body, if it fits; handed back unused otherwise. */
  into: ArrayBuffer | undefined;
}

/** The thread is ending: it closes its own sockets (see HttpThreads.close). */
export interface Shutdown {
  shutdown: true;
}

/** What the main thread asks of an HTTP thread besides requests: the MD5s of PUT bodies it staged (in shared memory). */
export interface HashJob {
  id: number;
  md5Of: Uint8Array[];
}

/** An HTTP thread's answer: the response, or why there is none; or the digests of a HashJob. */
export type HttpAnswer =
  | { id: number; status: number; headers: [string, string][]; body: Uint8Array; crc32: number; unused: ArrayBuffer | undefined }
  | { id: number; error: string; timedOut: boolean; unused: ArrayBuffer | undefined }
  | { id: number; digests: Uint8Array[] };

export interface PooledResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The body's CRC-32, taken on the HTTP thread. */
  crc32: number;
}

/** The error of a request that got no response; `timedOut` when it ran out of time. */
export class HttpThreadError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(message);
  }
}

interface Pending {
  resolve(r: PooledResponse): void;
  reject(e: unknown): void;
  thread: Thread;
  /** Where a GET's spare buffer goes back if the thread did not use it. */
  spares: BufferPool | undefined;
  /** The shared memory of a PUT's body: free again once the thread has answered. */
  slot: SharedArrayBuffer | undefined;
}

/** A PUT body's copy in shared memory: the slot, and the view of the body in it. */
export interface StagedBody {
  slot: SharedArrayBuffer;
  view: Uint8Array;
}

/** Most body slots kept for the next PUTs. */
const KEPT_SLOTS = 32;
/** Slot sizes are rounded up to this, so that bodies of about one size share slots. */
const SLOT_STEP = 64 * 1024;

/** Shared memory for PUT bodies, reused: after the first PUTs, a body's copy faults in nothing. */
export class BodySlots {
  private readonly free: SharedArrayBuffer[] = [];

  /** A slot of at least `length` bytes: a kept one if one fits. */
  take(length: number): SharedArrayBuffer {
    const at = this.free.findIndex((slot) => slot.byteLength >= length);
    if (at >= 0) return this.free.splice(at, 1)[0]!;
    return new SharedArrayBuffer(Math.max(SLOT_STEP, Math.ceil(length / SLOT_STEP) * SLOT_STEP));
  }

  /** A slot no thread reads any more. */
  give(slot: SharedArrayBuffer): void {
    if (this.free.length < KEPT_SLOTS) this.free.push(slot);
  }
}

interface Thread {
  worker: Worker;
  inFlight: number;
  /** Jobs posted before the thread said it listens. */
  waiting: (HttpJob | HashJob)[] | undefined;
  /** How to wake the thread when it waits in poll(2) on plain sockets (see plain-connections.ts). */
  wake: { fd: number; signals: Int32Array } | undefined;
}

/** What a thread says once it listens. */
interface Ready {
  ready: true;
  wake: Thread["wake"];
}

/** Posts a job (or the end) to a thread that listens. */
function post(thread: Thread, job: HttpJob | HashJob | Shutdown): void {
  thread.worker.postMessage(job, transferOf(job));
  if (thread.wake) jobPosted(runtime.plainSockets!, thread.wake.signals, thread.wake.fd);
}

/** A job's transfer list: its spare buffer moves to the thread (no view of it here sees it any more). */
const transferOf = (job: HttpJob | HashJob | Shutdown): ArrayBuffer[] => ("into" in job && job.into ? [job.into] : []);

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"];

/** Whether requests can go through threads of their own here: the runtime has sockets, and no proxy is set. */
export function httpThreadsUsable(env: Record<string, string | undefined> = process.env): boolean {
  return runtime.connectStream !== undefined && !PROXY_VARIABLES.some((name) => env[name]);
}

/** One per core, at least two (so that one busy thread is no ceiling) and at most four. */
export function defaultHttpThreads(): number {
  return Math.min(4, Math.max(2, navigator.hardwareConcurrency || 2));
}

export class HttpThreads {
  private readonly threads: Thread[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly slots = new BodySlots();
  /** Hash jobs on their way: each group's answer, and the thread it is on. */
  private readonly hashing = new Map<number, { resolve(digests: Uint8Array[]): void; reject(e: unknown): void; thread: Thread }>();
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
    const job = this.job("GET", url, headers, timeoutMs);
    job.into = spares?.takeSpare()?.buffer as ArrayBuffer | undefined;
    return this.send(job, { spares, slot: undefined });
  }

  /** A copy of a PUT's body in a slot, for its first attempt to send (put's `staged`) and to hash there first (md5Staged). */
  stage(body: Uint8Array): StagedBody {
    const slot = this.slots.take(body.length);
    const view = new Uint8Array(slot, 0, body.length);
    view.set(body);
    return { slot, view };
  }

  /** The MD5s of staged bodies (views that stage() returned), taken on an HTTP thread. */
  md5Staged(views: Uint8Array[]): Promise<Uint8Array[]> {
    const thread = this.leastBusy();
    thread.inFlight++;
    const job: HashJob = { id: this.nextId++, md5Of: views };
    return new Promise((resolve, reject) => {
      this.hashing.set(job.id, { resolve, reject, thread });
      if (thread.waiting) thread.waiting.push(job);
      else post(thread, job);
    });
  }

  /**
   * PUTs `body` to `url` with these (already signed) headers; `body` is copied before this returns,
   * unless `staged` holds its copy already (once: its slot is free again after the answer).
   */
  put(url: URL, headers: Record<string, string>, body: Uint8Array, timeoutMs: number, staged?: StagedBody): Promise<PooledResponse> {
    const slot = staged?.slot ?? this.slots.take(body.length);
    const view = staged?.view ?? new Uint8Array(slot, 0, body.length);
    if (!staged) view.set(body);
    const job = this.job("PUT", url, { ...headers, "content-length": String(body.length) }, timeoutMs);
    job.body = view;
    return this.send(job, { spares: undefined, slot });
  }

  private job(method: HttpJob["method"], url: URL, headers: Record<string, string>, timeoutMs: number): HttpJob {
    const https = url.protocol === "https:";
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    return {
      id: this.nextId++,
      method,
      host,
      port: Number(url.port || (https ? 443 : 80)),
      tls: https ? { verify: !this.tls.insecure, serverName: host, ca: this.tls.ca } : undefined,
      request: requestBytes(method, url.pathname + url.search, url.host, headers),
      timeoutMs,
      close: (headers.connection ?? "").toLowerCase() === "close",
      into: undefined,
    };
  }

  private send(job: HttpJob, keep: Pick<Pending, "spares" | "slot">): Promise<PooledResponse> {
    const thread = this.leastBusy();
    thread.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject, thread, ...keep });
      if (thread.waiting) thread.waiting.push(job);
      else post(thread, job);
    });
  }

  /** Ends the threads; requests still on their way fail. */
  close(): void {
    for (const t of this.threads) {
      // A thread with sockets of its own closes them first (the runtime does not know them).
      if (!t.wake || t.waiting) {
        t.worker.terminate();
        continue;
      }
      post(t, { shutdown: true });
      setTimeout(() => t.worker.terminate(), 1000).unref?.();
    }
    this.threads.length = 0;
    for (const [id, p] of [...this.pending, ...this.hashing]) {
      p.reject(new HttpThreadError("the S3 client was closed", false));
      this.pending.delete(id);
      this.hashing.delete(id);
    }
  }

  /** The thread with the fewest requests in flight. All start with the first request: one that starts later makes its first requests wait for it. */
  private leastBusy(): Thread {
    while (this.threads.length < this.size) this.start();
    return this.threads.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
  }

  private start(): Thread {
    const worker = runtime.startWorker("http/http.worker.ts");
    const thread: Thread = { worker, inFlight: 0, waiting: [], wake: undefined };
    // The threads must not keep the process alive (the mount's end decides that).
    (worker as Worker & { unref?: () => void }).unref?.();
    worker.onmessage = (e: MessageEvent<HttpAnswer | Ready>) => {
      const data = e.data;
      if ("ready" in data) {
        thread.wake = data.wake;
        for (const job of thread.waiting ?? []) post(thread, job);
        thread.waiting = undefined;
        return;
      }
      this.answered(data);
    };
    worker.onerror = (e) => {
      // A thread that failed takes its requests with it (and the memory of their bodies: it may
      // have stopped in the middle of sending one); a new one is started for the next.
      const at = this.threads.indexOf(thread);
      if (at >= 0) this.threads.splice(at, 1);
      for (const [id, p] of [...this.pending, ...this.hashing]) {
        if (p.thread !== thread) continue;
        this.pending.delete(id);
        this.hashing.delete(id);
        p.reject(new HttpThreadError(`HTTP thread failed: ${e.message}`, false));
      }
    };
    this.threads.push(thread);
    return thread;
  }

  private answered(answer: HttpAnswer): void {
    if ("digests" in answer) {
      const h = this.hashing.get(answer.id);
      if (!h) return;
      this.hashing.delete(answer.id);
      h.thread.inFlight--;
      return h.resolve(answer.digests);
    }
    const p = this.pending.get(answer.id);
    if (!p) return;
    this.pending.delete(answer.id);
    p.thread.inFlight--;
    if (p.slot) this.slots.give(p.slot);
    if (answer.unused) p.spares?.give(new Uint8Array(answer.unused));
    if ("error" in answer) return p.reject(new HttpThreadError(answer.error, answer.timedOut));
    p.resolve({ status: answer.status, headers: new Headers(answer.headers), body: answer.body, crc32: answer.crc32 });
  }
}
