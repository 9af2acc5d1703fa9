/**
 * The life of a mount: build the store stack, mount, serve until unmounted or signalled, then
 * flush every dirty block and close. The exit code says whether everything reached storage.
 */
import { rmSync, writeFileSync } from "node:fs";
import { BackedFile } from "./backed-file.ts";
import type { Config } from "./config.ts";
import { messageOf } from "./errors.ts";
import { SingleFileFs } from "./fuse/filesystem.ts";
import { checkMountpoint, mount, unmount } from "./fuse/mount.ts";
import { FuseSession } from "./fuse/session.ts";
import { log } from "./log.ts";
import { statsText } from "./stats-text.ts";
import { buildStack } from "./store/build-stack.ts";

/** Reader threads and the request slots each owns: up to 32 requests of 1 MiB in flight. */
const READERS = 2;
const SLOTS_PER_READER = 16;

export async function serve(config: Config, onReady: () => void): Promise<number> {
  checkMountpoint(config.mountpoint);
  const store = await buildStack(config);
  const file = new BackedFile(store);
  const fs = new SingleFileFs(file, {
    filename: config.filename,
    statsFilename: config.statsFilename,
    fileMode: config.fileMode,
    uid: config.fuse.uid,
    gid: config.fuse.gid,
    readOnly: config.readOnly,
    directIO: config.directIO,
    blockSize: config.blockSize,
    statsText: () => statsText(store.stats()),
    resetStats: () => store.resetStats(),
    flush: () => store.flush(),
  });

  const mounted = mount(config.mountpoint, config.fuse);
  const session = new FuseSession(mounted.fd, fs, log, {
    maxReadahead: config.fuse.maxReadahead,
    readers: READERS,
    slotsPerReader: SLOTS_PER_READER,
  });
  session.start();

  let unmounting = false;
  const onSignal = (signal: string) => {
    if (unmounting) return;
    unmounting = true;
    log.info(`${signal}: unmounting ${config.mountpoint}`);
    try {
      if (unmount(config.mountpoint, mounted.via) === "lazy") {
        log.warn(`${config.mountpoint} is busy (a loop device on the file?): detached; exiting once its last user lets go`);
      }
    } catch (err) {
      log.error(`unmount ${config.mountpoint}: ${messageOf(err)}`);
    }
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, onSignal);

  const first = await Promise.race([session.ready.then(() => "ready"), session.ended]);
  if (first === "ready") {
    if (config.pidFile) writeFileSync(config.pidFile, `${process.pid}\n`);
    onReady();
    log.info(`mounted ${config.mountpoint}: ${config.numBlocks} blocks of ${config.blockSize} bytes (${session.negotiated!.maxWrite / 1024} KiB transfers)`);
  }
  const reason = await session.ended;
  session.stop();
  if (reason !== "ENODEV") log.error(`FUSE device: ${reason}`);
  log.info(`unmounted ${config.mountpoint}: flushing`);

  let code = reason === "ENODEV" ? 0 : 1;
  try {
    await store.close();
    log.info("all data stored; exiting");
  } catch (err) {
    log.error(`flushing at unmount failed, data may be lost: ${messageOf(err)}`);
    code = 1;
  }
  for (const s of signals) process.off(s, onSignal);
  if (config.pidFile) rmSync(config.pidFile, { force: true });
  return code;
}
