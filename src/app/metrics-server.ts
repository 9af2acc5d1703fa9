/**
 * --metrics: GET /metrics over HTTP, for Prometheus; every other request is a 404. It runs on the
 * event loop that serves the disk, so it must cost that loop next to nothing whoever calls: an
 * answer is made from counters in memory, never waits for the disk, and is made at most once a
 * RENDER_INTERVAL_MS (scrapes in between get the same bytes), so a scraper in a loop costs no
 * more than one a second. A slow reader holds only its own answer's bytes, which the runtime
 * sends as the socket takes them.
 */
import type { ListenAddress } from "../config/settings.ts";
import { ConfigError, messageOf } from "../errors.ts";
import { log } from "../log.ts";
import { runtime } from "../runtime/index.ts";
import type { HttpServer } from "../runtime/runtime.ts";
import { CONTENT_TYPE } from "./metrics-text.ts";

export const RENDER_INTERVAL_MS = 1000;

export class MetricsServer {
  private body: Uint8Array | undefined;
  private madeAt = -Infinity;
  private failing = false;
  private readonly http: HttpServer;

  /**
   * Listens at once (before anything is mounted): a port that is taken, or a host that is not
   * this machine's, is a ConfigError naming the flag as typed.
   */
  constructor(
    private readonly address: ListenAddress,
    typed: string,
    private readonly render: () => string,
  ) {
    try {
      this.http = runtime.serve({ port: address.port, hostname: address.host }, (req) => Promise.resolve(this.answer(req)));
    } catch (err) {
      throw new ConfigError(`${typed}: ${listenFailure(err, address)}`);
    }
  }

  get url(): string {
    const host = this.address.host.includes(":") ? `[${this.address.host}]` : this.address.host;
    return `http://${host}:${this.http.port}/metrics`;
  }

  stop(): Promise<void> {
    return this.http.stop();
  }

  private answer(req: Request): Response {
    if (req.method !== "GET" || new URL(req.url).pathname !== "/metrics") return new Response("not found\n", { status: 404 });
    const now = performance.now();
    if (!this.body || now - this.madeAt >= RENDER_INTERVAL_MS) {
      try {
        this.body = new TextEncoder().encode(this.render());
        this.madeAt = now;
        this.failing = false;
      } catch (err) {
        if (!this.failing) log.error(`/metrics: ${messageOf(err)}`);
        this.failing = true;
        return new Response(null, { status: 500 });
      }
    }
    return new Response(this.body, { headers: { "content-type": CONTENT_TYPE } });
  }
}

function listenFailure(err: unknown, { host, port }: ListenAddress): string {
  const code = (err as { code?: unknown }).code;
  if (code === "EADDRINUSE") return `port ${port} is already in use`;
  if (code === "EADDRNOTAVAIL") return `${host} is not an address of this machine`;
  if (code === "EACCES") return `not allowed to listen on port ${port}`;
  return `cannot listen on ${host}:${port}: ${messageOf(err)}`;
}
