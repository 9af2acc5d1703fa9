/**
 * A proxy that misbehaves on purpose, between an S3 client (a mount, an NBD server, a test's own
 * requests) and a real S3 server (the bundled one, Ceph RGW): path-style HTTP/1.1, requests
 * forwarded byte for byte (signatures stay valid), answers changed as the faults say.
 *
 * Faults, each a chance per request whose key matches `keyPattern` and whose path and query match
 * `targetPattern` (all requests when unset):
 * truncated bodies, wrong Content-Lengths, reset connections (before the request reaches the
 * server, or after it was carried out), 503 answers, delays, swapped bodies (another key's body,
 * with or without its headers), stale answers (the version from before a PUT or DELETE served for
 * `staleMs` after it), per-key errors in DeleteObjects answers (those keys left in place), and
 * outages: a black hole (requests are taken and never answered until it ends) or refused
 * connections (nothing listens until it ends). Every fault counts how often it fired, in `fired`,
 * so a test can assert that what it injected happened.
 *
 * Faults that change a request (DeleteObjects) or fetch the previous version (stale answers) sign
 * their own requests: they need the credentials.
 */
import net from "node:net";
import { AwsClient } from "aws4fetch";
import { decodeXml, escapeXml } from "../../src/util/xml.ts";
import { md5Base64 } from "../../src/util/md5.ts";
import { errorBytes, exchange, RequestReader, responseBytes, type ParsedResponse, type ProxiedRequest } from "./proxy-wire.ts";

export interface ProxyFaults {
  /** The body is cut off halfway (its Content-Length right), and the connection closed. */
  truncate: number;
  /** The Content-Length is off (more or fewer bytes than sent), and the connection closed. */
  wrongLength: number;
  /** The connection is reset: half the time before the request is forwarded, half after (its answer lost). */
  reset: number;
  /** Answered 503 SlowDown without being forwarded. */
  status503: number;
  /** Held for `delayMs` (a value, or a [min, max] range) before being forwarded. */
  delay: number;
  delayMs: number | [number, number];
  /** A GET answered with the body of another key seen earlier (same size when one is). */
  swap: number;
  /** Swapped bodies come with the other key's headers (its ETag: only the content can tell). */
  swapHeaders: boolean;
  /** At most this many swaps, truncations and wrong lengths each, then answers are healthy again (a transient fault). */
  limit: number;
  /** After a PUT or DELETE of a key, GET and HEAD of it answer the version from before, this long. */
  staleMs: number;
  /** Per key of a DeleteObjects request: answered with an <Error> entry, and not deleted. */
  deleteErrors: number;
  outage: "none" | "blackhole" | "refuse";
  keyPattern: RegExp | undefined;
  /** Only requests whose path and query match are affected (default: all). */
  targetPattern: RegExp | undefined;
}

export const NO_PROXY_FAULTS: ProxyFaults = {
  truncate: 0, wrongLength: 0, reset: 0, status503: 0, delay: 0, delayMs: 0, swap: 0, swapHeaders: false, limit: Infinity,
  staleMs: 0, deleteErrors: 0, outage: "none", keyPattern: undefined, targetPattern: undefined,
};

export type FaultName = "truncate" | "wrongLength" | "reset" | "status503" | "delay" | "swap" | "stale" | "deleteErrors" | "blackhole" | "refuse";
const noneFired = (): Record<FaultName, number> => ({ truncate: 0, wrongLength: 0, reset: 0, status503: 0, delay: 0, swap: 0, stale: 0, deleteErrors: 0, blackhole: 0, refuse: 0 });

export interface ProxyOptions {
  /** The real server's base URL (http). */
  upstream: string;
  credentials?: { accessKey: string; secretKey: string; region?: string };
  /** Where the faults' dice come from (default Math.random); pass a seeded one to replay a run. */
  random?: () => number;
}

interface Remembered {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

const SEEN_KEYS = 256;

export class FaultProxy {
  faults: ProxyFaults = { ...NO_PROXY_FAULTS };
  fired = noneFired();
  requests = 0;
  private listener: net.Server | undefined;
  private port = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly upstream: URL;
  private readonly random: () => number;
  private readonly signer: AwsClient | undefined;
  private readonly stale = new Map<string, { previous: Remembered; until: number }>();
  /** The last 200 answer to a GET, per key: what swapped bodies are taken from. */
  private readonly seen = new Map<string, Remembered>();
  /** Requests held by a black hole, released (their connections closed) when it ends. */
  private held: (() => void)[] = [];
  private timers = new Set<ReturnType<typeof setTimeout>>();

  private constructor(options: ProxyOptions) {
    this.upstream = new URL(options.upstream);
    if (this.upstream.protocol !== "http:") throw new Error(`fault proxy: ${options.upstream}: only http upstreams`);
    this.random = options.random ?? Math.random;
    const c = options.credentials;
    this.signer = c && new AwsClient({ accessKeyId: c.accessKey, secretAccessKey: c.secretKey, region: c.region ?? "us-east-1", service: "s3", retries: 0 });
  }

  /** Listens on a free port of 127.0.0.1. */
  static async start(options: ProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    await proxy.listen();
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** Sets some faults (the rest keep their values). */
  set(faults: Partial<ProxyFaults>): void {
    if ((faults.staleMs || faults.deleteErrors) && !this.signer) throw new Error("fault proxy: stale answers and DeleteObjects errors need credentials");
    const before = this.faults.outage;
    this.faults = { ...this.faults, ...faults };
    if (before !== this.faults.outage) this.outageChanged(before);
  }

  /** Sets faults for `ms`, then puts those fields back as they were; resolves then. */
  during(ms: number, faults: Partial<ProxyFaults>): Promise<void> {
    const saved = Object.fromEntries(Object.keys(faults).map((k) => [k, this.faults[k as keyof ProxyFaults]])) as Partial<ProxyFaults>;
    this.set(faults);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.set(saved);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** No faults, counts zeroed, stale versions forgotten. */
  reset(): void {
    this.set({ ...NO_PROXY_FAULTS });
    this.fired = noneFired();
    this.requests = 0;
    this.stale.clear();
    this.seen.clear();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const release of this.held.splice(0)) release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
    this.listener = undefined;
  }

  private listen(): Promise<void> {
    const listener = net.createServer((socket) => this.accept(socket));
    this.listener = listener;
    return new Promise((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(this.port, "127.0.0.1", () => {
        this.port = (listener.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private outageChanged(before: ProxyFaults["outage"]): void {
    if (before === "blackhole") for (const release of this.held.splice(0)) release();
    if (before === "refuse") void this.listen();
    if (this.faults.outage === "refuse") {
      this.fired.refuse++;
      this.listener?.close();
      this.listener = undefined;
      for (const s of this.sockets) s.resetAndDestroy();
    }
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
    socket.setNoDelay(true);
    const reader = new RequestReader();
    let busy = false;
    let closing = false;
    let continued = false;
    const pump = async () => {
      if (busy || closing) return;
      busy = true;
      try {
        for (;;) {
          const req = reader.next();
          if (!req) {
            if (reader.waitingForBody?.get("expect")?.toLowerCase() === "100-continue" && !continued) {
              continued = true;
              socket.write("HTTP/1.1 100 Continue\r\n\r\n");
            }
            break;
          }
          continued = false;
          if (!(await this.serve(socket, req))) {
            closing = true;
            socket.end(); // after what was written (a reset connection is gone already)
            return;
          }
        }
      } catch {
        socket.destroy();
      } finally {
        busy = false;
      }
    };
    socket.on("data", (chunk: Buffer) => {
      reader.feed(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      void pump();
    });
  }

  private roll(rate: number): boolean {
    return rate > 0 && this.random() < rate;
  }

  /** Answers one request; false when the connection must go. */
  private async serve(socket: net.Socket, req: ProxiedRequest): Promise<boolean> {
    this.requests++;
    const f = this.faults;
    const { bucket, key, query } = parseTarget(req.target);
    const affected = (!f.keyPattern || (key !== "" && f.keyPattern.test(key))) && (!f.targetPattern || f.targetPattern.test(req.target));
    if (f.outage === "blackhole") {
      this.fired.blackhole++;
      await new Promise<void>((resolve) => this.held.push(resolve));
      return false;
    }
    if (f.outage === "refuse") {
      socket.resetAndDestroy();
      return false;
    }
    if (affected && this.roll(f.delay)) {
      this.fired.delay++;
      const ms = typeof f.delayMs === "number" ? f.delayMs : f.delayMs[0] + this.random() * (f.delayMs[1] - f.delayMs[0]);
      await new Promise((r) => setTimeout(r, ms));
    }
    if (affected && this.roll(f.status503)) {
      this.fired.status503++;
      socket.write(errorBytes(503, "SlowDown", req.method));
      return true;
    }
    const resetAfter = affected && this.roll(f.reset) ? this.random() < 0.5 : undefined;
    if (resetAfter === false) {
      this.fired.reset++;
      socket.resetAndDestroy();
      return false;
    }
    const id = `${bucket}/${key}`;
    const old = this.stale.get(id);
    if (old && (req.method === "GET" || req.method === "HEAD") && !req.headers.has("range")) {
      if (Date.now() < old.until) {
        this.fired.stale++;
        return this.answer(socket, req.method, { ...old.previous, close: false });
      }
      this.stale.delete(id);
    }
    if (affected && key !== "" && f.staleMs > 0 && (req.method === "PUT" || req.method === "DELETE")) {
      const previous = old && Date.now() < old.until ? old.previous : await this.current(bucket, key);
      this.stale.set(id, { previous, until: Date.now() + f.staleMs });
    }

    let r: ParsedResponse;
    try {
      r = req.method === "POST" && query.has("delete") && f.deleteErrors > 0 ? await this.deleteWithErrors(req, bucket) : await this.forward(req);
    } catch {
      socket.write(errorBytes(502, "BadGateway", req.method));
      return false;
    }
    if (resetAfter) {
      this.fired.reset++;
      socket.resetAndDestroy();
      return false;
    }
    if (req.method === "GET" && r.status === 200 && key !== "" && !req.headers.has("range")) {
      const other = affected && this.fired.swap < f.limit && this.roll(f.swap) ? this.another(key, r.body.length) : undefined;
      this.remember(key, r);
      if (other) {
        this.fired.swap++;
        r = f.swapHeaders ? { ...other, close: r.close } : { ...r, body: other.body };
      }
    }
    return this.answer(socket, req.method, r, affected);
  }

  /** Writes the answer, damaged as the faults say; false when the connection must go. */
  private answer(socket: net.Socket, method: string, r: ParsedResponse, affected = false): boolean {
    const f = this.faults;
    if (affected && r.body.length > 1 && this.fired.truncate < f.limit && this.roll(f.truncate)) {
      this.fired.truncate++;
      const whole = responseBytes(r, method, r.body);
      socket.end(whole.subarray(0, whole.length - Math.ceil(r.body.length / 2)));
      return false;
    }
    if (affected && r.body.length > 1 && this.fired.wrongLength < f.limit && this.roll(f.wrongLength)) {
      this.fired.wrongLength++;
      const off = 1 + Math.floor(this.random() * (r.body.length - 1));
      socket.end(responseBytes(r, method, r.body, this.random() < 0.5 ? r.body.length - off : r.body.length + off));
      return false;
    }
    socket.write(responseBytes(r, method, r.body));
    return !r.close;
  }

  private forward(req: ProxiedRequest): Promise<ParsedResponse> {
    return exchange(this.upstream.hostname, Number(this.upstream.port || 80), req.method, req.raw);
  }

  private remember(key: string, r: ParsedResponse): void {
    this.seen.delete(key);
    this.seen.set(key, { status: r.status, headers: r.headers, body: r.body });
    if (this.seen.size > SEEN_KEYS) this.seen.delete(this.seen.keys().next().value!);
  }

  /** Another key's last answer: one of the same size if any. */
  private another(key: string, size: number): Remembered | undefined {
    const others = [...this.seen].filter(([k]) => k !== key).map(([, r]) => r);
    const same = others.filter((r) => r.body.length === size);
    const pool = same.length ? same : others;
    return pool.length ? pool[Math.floor(this.random() * pool.length)] : undefined;
  }

  /** What the server holds for a key now, fetched with the proxy's own signature. */
  private async current(bucket: string, key: string): Promise<Remembered> {
    const r = await this.signed("GET", `${bucket}/${encodeKey(key)}`);
    const body = new Uint8Array(await r.arrayBuffer());
    const headers = [...r.headers].filter(([n]) => n !== "content-length");
    return { status: r.status, headers: [...headers, ["content-length", String(body.length)]], body };
  }

  /**
   * DeleteObjects with some keys failing: the request goes on without them (signed again), and
   * the answer gains an <Error> entry for each.
   */
  private async deleteWithErrors(req: ProxiedRequest, bucket: string): Promise<ParsedResponse> {
    const text = new TextDecoder().decode(req.body);
    const keys = [...text.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => decodeXml(m[1]!));
    const pattern = this.faults.keyPattern;
    const failing = new Set(keys.filter((k) => (!pattern || pattern.test(k)) && this.roll(this.faults.deleteErrors)));
    this.fired.deleteErrors += failing.size;
    const rest = keys.filter((k) => !failing.has(k));
    const quiet = /<Quiet>true<\/Quiet>/i.test(text);
    let inner = "";
    if (rest.length > 0) {
      const body = `<?xml version="1.0" encoding="UTF-8"?><Delete>${quiet ? "<Quiet>true</Quiet>" : ""}${rest.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join("")}</Delete>`;
      const r = await this.signed("POST", `${bucket}?delete`, { body, headers: { "content-md5": md5Base64(new TextEncoder().encode(body)), "content-type": "application/xml" } });
      const answer = await r.text();
      if (r.status !== 200) return { status: r.status, headers: [["content-type", "application/xml"]], body: new TextEncoder().encode(answer), close: false };
      inner = /<DeleteResult[^>]*>([\s\S]*)<\/DeleteResult>/.exec(answer)?.[1] ?? "";
    }
    const errors = [...failing].map((k) => `<Error><Key>${escapeXml(k)}</Key><Code>InternalError</Code><Message>injected by the fault proxy</Message></Error>`).join("");
    const xml = `<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}${errors}</DeleteResult>`;
    return { status: 200, headers: [["content-type", "application/xml"]], body: new TextEncoder().encode(xml), close: false };
  }

  private async signed(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    const request = await this.signer!.sign(`${this.upstream.origin}/${path}`, { method, ...init });
    return fetch(request, { decompress: false } as RequestInit);
  }
}

function parseTarget(target: string): { bucket: string; key: string; query: URLSearchParams } {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const slash = path.indexOf("/", 1);
  const bucket = slash < 0 ? path.slice(1) : path.slice(1, slash);
  let key = slash < 0 ? "" : path.slice(slash + 1);
  try {
    key = decodeURIComponent(key);
  } catch {}
  return { bucket, key, query: new URLSearchParams(q < 0 ? "" : target.slice(q + 1)) };
}

const encodeKey = (key: string) => key.split("/").map(encodeURIComponent).join("/");
