/** --metrics=[HOST:]PORT: where /metrics is served; loopback unless a host is given, with a warning if it is not loopback. */
import type { FlagValues } from "./flag-values.ts";
import type { ListenAddress } from "./settings.ts";
import { isLoopback } from "../util/loopback.ts";

const DEFAULT_HOST = "127.0.0.1";

export function metricsAddress(f: FlagValues): ListenAddress | undefined {
  const text = f.text("metrics");
  if (text === undefined) return undefined;
  // PORT, HOST:PORT, or [IPv6]:PORT.
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw f.fail("metrics", "expected PORT or HOST:PORT (an IPv6 host in brackets), the port from 0 to 65535");
  const host = m[1] ?? m[2] ?? DEFAULT_HOST;
  if (!isLoopback(host)) f.warn(`${f.typed("metrics")}: /metrics is served to anyone who can reach ${host} (the disk's activity, not its data)`);
  return { host, port };
}
