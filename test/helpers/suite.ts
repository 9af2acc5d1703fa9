/**
 * What most mount tests set up alike: the embedded S3 server, and temp directories; after each
 * test the mounts it left are cleaned up, its directories removed and the server's faults reset,
 * and the server stops after the file's last test.
 */
import { afterAll, afterEach } from "bun:test";
import { rmSync } from "node:fs";
import { cleanupDisks, tempDir } from "./disk.ts";
import { embeddedPeer, startEmbedded } from "./s3.ts";

export function embeddedSuite() {
  const server = startEmbedded();
  const peer = embeddedPeer(server);
  const dirs: string[] = [];
  afterEach(async () => {
    server.reset();
    await cleanupDisks();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  afterAll(() => server.stop());
  /** A temp directory removed after the test. */
  const workDir = (tag: string) => {
    const d = tempDir(tag);
    dirs.push(d);
    return d;
  };
  return { server, peer, workDir };
}
