/**
 * What the code relies on from the runtime beyond its documentation, checked under Bun and Deno:
 * socket.write() keeps a copy of what the socket did not take at once, so the NBD server may hand
 * it the cache's own bytes and let the cache reuse them on its next turn.
 */
import { expect, test } from "bun:test";
import { createConnection, createServer } from "node:net";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./helpers/data.ts";

test("socket.write copies the bytes it could not send yet", async () => {
  const dir = tempDir("contract");
  const path = join(dir, "socket");
  const size = 8 << 20; // far more than a socket buffer: most of it waits in the runtime
  const server = createServer((s) => {
    const bytes = new Uint8Array(size).fill(1);
    s.write(bytes);
    bytes.fill(2);
    s.end();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const client = createConnection(path);
    client.pause();
    await new Promise((r) => setTimeout(r, 100));
    let total = 0;
    let changed = 0;
    client.on("data", (d: Uint8Array) => {
      total += d.length;
      for (const b of d) if (b !== 1) changed++;
    });
    client.resume();
    await new Promise((r) => client.on("end", r));
    expect({ total, changed }).toEqual({ total: size, changed: 0 });
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
