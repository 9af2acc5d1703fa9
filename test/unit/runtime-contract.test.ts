/**
 * What the code relies on from the runtime beyond its documentation, checked under Bun and Deno:
 * socket.write() keeps a copy of what the socket did not take at once, so the NBD server may hand
 * it the cache's own bytes and let the cache reuse them on its next turn; and a paused stream
 * connection stops taking bytes, so a client that sends faster than the server works is held back;
 * and an aborted one closes at once though its peer reads nothing (a hang-up cannot be held open).
 */
import { expect, test } from "bun:test";
import { createConnection, createServer } from "node:net";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { tempDir, waitFor } from "../helpers/data.ts";
import { runtime } from "../../src/runtime/index.ts";
import type { StreamConnection } from "../../src/runtime/runtime.ts";

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

test("a paused stream connection takes no more: the peer's sends block; resumed, every byte comes, in order", async () => {
  const dir = tempDir("contract");
  const path = join(dir, "socket");
  const size = 32 << 20;
  let received = 0;
  let wrong = 0;
  let connection: StreamConnection | undefined;
  const listener = await runtime.listenStream({ path }, (c) => {
    connection = c;
    return {
      data(chunk) {
        if (received === 0) c.pause(); // stops at once, mid-stream
        for (let i = 0; i < chunk.length; i++) if (chunk[i] !== ((received + i) & 0xff)) wrong++;
        received += chunk.length;
      },
      closed() {},
    };
  });
  const client = createConnection(path);
  try {
    const bytes = Uint8Array.from({ length: size }, (_, i) => i & 0xff);
    let flushed = 0;
    for (let at = 0; at < size; at += 1 << 20) client.write(bytes.subarray(at, at + (1 << 20)), () => (flushed += 1 << 20));
    await new Promise((r) => setTimeout(r, 500));
    // Held back: what the kernel's socket buffers hold, not the 32 MiB sent.
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(4 << 20);
    expect(flushed).toBeLessThan(8 << 20);
    connection!.resume();
    await waitFor("every byte", () => received >= size, 20_000);
    expect({ received, wrong }).toEqual({ received: size, wrong: 0 });
  } finally {
    client.destroy();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("abort closes an accepted connection at once, with bytes queued for a peer that reads nothing; drained() then resolves", async () => {
  const dir = tempDir("contract");
  const path = join(dir, "socket");
  let connection: StreamConnection | undefined;
  const listener = await runtime.listenStream({ path }, (c) => {
    connection = c;
    return { data() {}, closed() {} };
  });
  const client = createConnection(path);
  try {
    client.pause(); // reads nothing
    const closed = new Promise<void>((resolve) => client.on("close", () => resolve()));
    client.on("error", () => {});
    await waitFor("the connection", () => connection !== undefined);
    const bytes = new Uint8Array(16 << 20);
    for (let i = 0; i < 4; i++) connection!.write(bytes); // far more than the kernel's buffers hold
    const drained = connection!.drained();
    let settled = false;
    void drained.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    connection!.abort();
    await drained;
    client.resume(); // the closing is seen on reading: what reached the kernel first, then the end
    await closed;
  } finally {
    client.destroy();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
