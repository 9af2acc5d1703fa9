/** Whether a host name or address (as a flag gives it) is this machine's loopback: reachable from here only. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
