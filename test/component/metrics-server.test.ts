/**
 * --metrics's listener: loopback unless given a host (a warning for one that is not), only GET
 * /metrics answered, a port that is taken or a host that is not ours refused in one line naming
 * the flag, and scrapes in a burst answered from one rendering.
 */
import { afterEach, expect, test } from "bun:test";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { parseArgs } from "../../src/cli/parse.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { MetricsServer, RENDER_INTERVAL_MS } from "../../src/app/metrics-server.ts";
import { ConfigError } from "../../src/errors.ts";

const configOf = (...flags: string[]) => buildConfig(parseArgs(["--test", "--size=1M", ...flags, "blocks", "mnt"]), { uid: 0, gid: 0 }, {});

const servers: MetricsServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

function start(flag: string, render: () => string = () => "# metrics\n"): MetricsServer {
  const config = configOf(flag);
  const server = new MetricsServer(config.metrics!, config.typed.metrics!, render);
  servers.push(server);
  return server;
}

const portOf = (server: MetricsServer) => Number(new URL(server.url).port);

/** Whether a TCP connection to host:port is accepted. */
const accepts = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

test("a port alone listens on 127.0.0.1 only: not on this machine's other addresses", async () => {
  const server = start("--metrics=0");
  expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  expect(await accepts("127.0.0.1", portOf(server))).toBe(true);
  const other = Object.values(networkInterfaces()).flat().find((a) => a && a.family === "IPv4" && !a.internal)?.address;
  if (!other) return console.log("no non-loopback IPv4 address here: only the loopback half was checked");
  expect(await accepts(other, portOf(server))).toBe(false);
});

test("a host that is not loopback is taken, with a warning naming the flag; loopback names are not warned about", () => {
  expect(configOf("--metrics=0.0.0.0:9100").metrics).toEqual({ host: "0.0.0.0", port: 9100 });
  expect(configOf("--metrics=0.0.0.0:9100").warnings).toEqual(["--metrics=0.0.0.0:9100: /metrics is served to anyone who can reach 0.0.0.0 (the disk's activity, not its data)"]);
  expect(configOf("--metrics=[::1]:9100").metrics).toEqual({ host: "::1", port: 9100 });
  for (const flag of ["--metrics=9100", "--metrics=localhost:9100", "--metrics=[::1]:9100", "--metrics=127.0.0.2:0"]) expect(configOf(flag).warnings).toEqual([]);
});

test.each([["--metrics=abc"], ["--metrics=70000"], ["--metrics=host:"], ["--metrics=::1:9100"], ["--metrics=-1"], ["-o metrics=1.2.3.4:x"]])("%p is refused in one line naming the flag as typed", (flag) => {
  const argv = flag.startsWith("-o ") ? ["-o", flag.slice(3)] : [flag];
  let caught: unknown;
  try {
    buildConfig(parseArgs(["--test", "--size=1M", ...argv, "blocks", "mnt"]), { uid: 0, gid: 0 }, {});
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  expect((caught as Error).message).toBe(`${flag}: expected PORT or HOST:PORT (an IPv6 host in brackets), the port from 0 to 65535`);
});

test("GET /metrics is answered as Prometheus' text format; any other path or method is a 404", async () => {
  const server = start("--metrics=0", () => "s3backer_x 1\n");
  const ok = await fetch(server.url);
  expect(ok.status).toBe(200);
  expect(ok.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  expect(await ok.text()).toBe("s3backer_x 1\n");
  const base = server.url.replace(/metrics$/, "");
  for (const [url, method] of [[base, "GET"], [`${base}metrics/x`, "GET"], [`${base}stats`, "GET"], [server.url, "POST"], [server.url, "PUT"], [server.url, "DELETE"]] as const) {
    const r = await fetch(url, { method });
    await r.arrayBuffer();
    expect(`${method} ${url} ${r.status}`).toBe(`${method} ${url} 404`);
  }
});

test("a port already taken, or a host that is not this machine's, is one ConfigError naming the flag as typed", () => {
  const first = start("--metrics=0");
  const port = portOf(first);
  expect(() => start(`--metrics=127.0.0.1:${port}`)).toThrow(new ConfigError(`--metrics=127.0.0.1:${port}: port ${port} is already in use`));
  expect(() => start("--metrics=192.0.2.123:0")).toThrow(new ConfigError("--metrics=192.0.2.123:0: 192.0.2.123 is not an address of this machine"));
});

test("scrapes in a burst are answered from one rendering: a scraper in a loop costs the serving loop one a second", async () => {
  let renders = 0;
  const server = start("--metrics=0", () => `s3backer_renders ${++renders}\n`);
  const burst = await Promise.all(Array.from({ length: 50 }, () => fetch(server.url).then((r) => r.text())));
  expect(renders).toBe(1);
  expect(new Set(burst)).toEqual(new Set(["s3backer_renders 1\n"]));
  await new Promise((r) => setTimeout(r, RENDER_INTERVAL_MS + 50));
  expect(await (await fetch(server.url)).text()).toBe("s3backer_renders 2\n");
});
