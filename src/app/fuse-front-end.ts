/** The FUSE front end: the disk as a file in a mounted directory, with its stats file beside it. */
import { messageOf } from "../errors.ts";
import { BackedFile } from "../file/backed-file.ts";
import { FILE_INODE, SingleFileFs } from "../fuse/filesystem.ts";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { isMounted, mount, raiseReadahead, unmount } from "../fuse/mount.ts";
import { FuseSession } from "../fuse/session.ts";
import { log } from "../log.ts";
import type { FrontEnd, FrontEndContext } from "./front-end.ts";

/**
 * The reader thread and the request slots it owns, and the slots the main thread reads requests
 * into itself while busy (see fuse/device-readers.ts): up to 6 requests in flight. The cache
 * answers most at once, and each slot a 1 MiB write has used stays resident (as does each thread,
 * about 4 MiB), so they are few.
 */
const READERS = 1;
const SLOTS_PER_READER = 2;
const DIRECT_SLOTS = 4;

export function startFuse({ config, disk, statsText, resetStats }: FrontEndContext): FrontEnd {
  const { store, geometry } = disk;
  const mounted = mount(config.mountpoint, config.fuse);
  const fs = new SingleFileFs(new BackedFile(store, disk.blockCache), {
    filename: config.filename,
    statsFilename: config.statsFilename,
    fileMode: config.fileMode,
    uid: config.fuse.uid,
    gid: config.fuse.gid,
    readOnly: config.readOnly,
    directIO: config.directIO,
    blockSize: geometry.blockSize,
    entryTimeout: config.fuse.entryTimeout,
    attrTimeout: config.fuse.attrTimeout,
    negativeTimeout: config.fuse.negativeTimeout,
    umask: config.fuse.umask,
    statsText,
    resetStats,
    flush: () => store.flush(),
  });
  const session = new FuseSession(mounted.fd, fs, log, {
    maxReadahead: config.fuse.maxReadahead,
    readers: READERS,
    slotsPerReader: SLOTS_PER_READER,
    directSlots: DIRECT_SLOTS,
    maxWrite: config.fuse.maxWrite,
    syncRead: config.fuse.syncRead,
    singleThreaded: config.fuse.singleThreaded,
    servesOnly: config.fuse.allowRoot ? (process.getuid?.() ?? 0) : undefined,
  });
  session.start();

  const ready = Promise.race([session.ready.then(() => true), session.ended.then(() => false)]).then((up) => {
    if (up && process.getuid?.() === 0) {
      const why = raiseReadahead(mounted.path, config.fuse.maxReadahead);
      if (why) log.debug(`kernel read-ahead left at its default: ${why}`);
    }
    return up;
  });
  const ended = session.ended.then((reason) => {
    session.stop();
    // A detached (lazily unmounted) connection can end as ECONNABORTED instead of ENODEV once its
    // last user lets go: the mount is gone all the same. Aborted while still mounted is an error.
    const gone = reason === "ENODEV" || (reason === "ECONNABORTED" && !isMounted(mounted.path));
    if (!gone) log.error(`FUSE device: ${reason}`);
    log.info(`unmounted ${config.mountpoint}: flushing`);
    return gone;
  });
  let stopping = false;
  return {
    ready,
    ended,
    async resized() {
      // The kernel drops the file's cached attributes; a stat then fetches the new size into the
      // inode (what `losetup -c` reads). Asynchronous: this same process answers the stat.
      session.invalidateAttributes(FILE_INODE);
      await stat(join(config.mountpoint, config.filename)).catch((err) => log.warn(`after the resize: ${messageOf(err)}`));
    },
    readyMessage: () =>
      `mounted ${config.mountpoint}: ${geometry.numBlocks} blocks of ${geometry.blockSize} bytes (${session.negotiated!.maxWrite / 1024} KiB transfers)`,
    stop(signal) {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: unmounting ${config.mountpoint}`);
      try {
        if (unmount(config.mountpoint, mounted.via) === "lazy") {
          log.warn(`${config.mountpoint} is busy (a loop device on the file?): detached; exiting once its last user lets go`);
        }
      } catch (err) {
        log.error(`unmount ${config.mountpoint}: ${messageOf(err)}`);
      }
    },
  };
}
