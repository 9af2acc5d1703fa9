/**
 * One FUSE connection: takes requests from the device readers, answers INIT, dispatches the rest
 * to the filesystem, and writes exactly one reply per request (none for FORGET). Requests are
 * handled concurrently: a slow block read does not hold up the others.
 */
import { writevSync } from "node:fs";
import { errnoOf, Errno, FsError, messageOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import * as wire from "./wire.ts";
import { Request } from "./wire.ts";
import { DeviceReaders } from "./device-readers.ts";
import type { FuseOps } from "./ops.ts";
import { FUSE_KERNEL_VERSION, InitFlag, MIN_KERNEL_MINOR, Op, OUR_MINOR, Size } from "./kernel-abi.ts";

export const MAX_WRITE = 1 << 20;
const MAX_PAGES = MAX_WRITE / 4096;

export interface SessionOptions {
  maxReadahead: number;
  readers: number;
  slotsPerReader: number;
  /** Slots of the main thread's own door to the device (0: reader threads only). */
  directSlots: number;
  /** -o max_write: the largest write the kernel may send (ours at most). */
  maxWrite?: number;
  /** -o sync_read: the kernel sends a file's reads one at a time. */
  syncRead?: boolean;
  /** -s: one request handled at a time, the next once it is answered. */
  singleThreaded?: boolean;
  /** -o allow_root: requests from users other than root and this one are refused, as libfuse does. */
  servesOnly?: number;
}

/** What libfuse lets through from any user under allow_root: what the kernel sends on its own behalf. */
const ANY_USER = new Set<number>([Op.INIT, Op.READ, Op.WRITE, Op.FSYNC, Op.RELEASE, Op.READDIR, Op.FSYNCDIR, Op.RELEASEDIR, Op.DESTROY]);

/** What the kernel granted at INIT. */
export interface Negotiated {
  kernelMinor: number;
  flags: number;
  maxWrite: number;
}

type Body = Uint8Array[] | null;

const ANSWERED = -1;
/** fuse_notify_code: a message the filesystem sends unasked, in the error field of a header whose unique is 0. */
const NOTIFY_INVAL_INODE = 2;
/** Where a request's unique id sits in its header (struct fuse_in_header). */
const UNIQUE_AT = 8;

export class FuseSession {
  private readonly header = new Uint8Array(Size.OUT_HEADER);
  private readers: DeviceReaders | undefined;
  /**
   * Requests being handled, by unique id: the descriptor their reply goes to, or ANSWERED once
   * answered (an INTERRUPT may answer first).
   */
  private readonly pending = new Map<number, number>();
  negotiated: Negotiated | undefined;
  private resolveEnd!: (reason: string) => void;
  /** Resolves with "ENODEV" when the filesystem was unmounted, or with the error that stopped it. */
  readonly ended = new Promise<string>((resolve) => (this.resolveEnd = resolve));
  private resolveReady!: () => void;
  /** Resolves once INIT is answered: the mount is usable. */
  readonly ready = new Promise<void>((resolve) => (this.resolveReady = resolve));

  constructor(
    private readonly fd: number,
    private readonly fs: FuseOps,
    private readonly log: Logger,
    private readonly options: SessionOptions,
  ) {}

  start(): void {
    const o = this.options;
    this.readers = new DeviceReaders(this.fd, MAX_WRITE, o.readers, o.slotsPerReader, o.directSlots, {
      request: (bytes, release, replyFd) => this.handle(new Request(bytes), release, replyFd),
      end: (reason) => this.resolveEnd(reason),
      awaiting: () => this.pending.size > 0,
    });
    const why = this.readers.noDirectDoor;
    this.log.debug(why ? `requests come through the reader threads only (${why})` : "the main thread reads requests itself while busy");
  }

  stop(): void {
    this.readers?.stop();
  }

  private handle(req: Request, release: () => void, fd: number): void {
    switch (req.opcode) {
      case Op.FORGET:
      case Op.BATCH_FORGET:
        return release(); // no reply: we keep no per-lookup state
      case Op.INTERRUPT:
        this.interrupt(req);
        return release();
    }
    if (!this.options.singleThreaded) return void this.run(req, release, fd);
    this.queue.push(() => this.run(req, release, fd));
    if (this.queue.length === 1) this.runQueued();
  }

  /** -s: requests one at a time, each once the one before it is answered. */
  private readonly queue: (() => Promise<void> | undefined)[] = [];
  private runQueued(): void {
    const done = this.queue[0]!();
    const next = () => {
      this.queue.shift();
      if (this.queue.length > 0) this.runQueued();
    };
    if (done) void done.then(next);
    else next();
  }

  /** Handles a request; returns a promise only when its answer has to wait. */
  private run(req: Request, release: () => void, fd: number): Promise<void> | undefined {
    const only = this.options.servesOnly;
    if (only !== undefined && req.uid !== only && req.uid !== 0 && !ANY_USER.has(req.opcode)) {
      this.failed(req, new FsError(Errno.EACCES, `user ${req.uid} refused (-o allow_root)`), release, fd);
      return undefined;
    }
    let result: Body | Promise<Body>;
    try {
      result = this.dispatch(req);
    } catch (err) {
      this.failed(req, err, release, fd);
      return undefined;
    }
    // Most requests (cache hits, writes that land at once) are answered in this same turn, before
    // any INTERRUPT could be read: only the others are noted as pending.
    if (result instanceof Promise) {
      this.pending.set(req.unique, fd);
      return result.then(
        (body) => this.answered(req, body, release, fd),
        (err) => this.failed(req, err, release, fd),
      );
    }
    this.answered(req, result, release, fd);
    return undefined;
  }

  private answered(req: Request, body: Body, release: () => void, fd: number): void {
    this.reply(req, fd, 0, body ?? []);
    this.pending.delete(req.unique);
    release();
  }

  private failed(req: Request, err: unknown, release: () => void, fd: number): void {
    const errno = errnoOf(err);
    if (errno === Errno.EIO || !(err instanceof FsError)) this.log.error(`op ${req.opcode} on inode ${req.nodeid}: ${messageOf(err)}`);
    else this.log.debug(`op ${req.opcode} on inode ${req.nodeid}: ${messageOf(err)}`);
    this.reply(req, fd, errno, []);
    this.pending.delete(req.unique);
    release();
  }

  private dispatch(req: Request): Body | Promise<Body> {
    const fs = this.fs;
    const ino = req.nodeid;
    switch (req.opcode) {
      case Op.INIT:
        return [this.init(wire.decodeInit(req))];
      case Op.DESTROY:
        return [];
      case Op.LOOKUP: {
        let attr;
        try {
          attr = fs.lookup(ino, req.name());
        } catch (err) {
          // -o negative_timeout: the kernel remembers the absence that long.
          if (errnoOf(err) === Errno.ENOENT && fs.negativeValidSeconds > 0) return [wire.negativeEntryOut(fs.negativeValidSeconds)];
          throw err;
        }
        return [wire.entryOut(attr, fs.nameValidSeconds, fs.attrValidSeconds(attr.ino))];
      }
      case Op.GETATTR:
        return [wire.attrOut(fs.getattr(ino), this.fs.attrValidSeconds(ino))];
      case Op.SETATTR:
        return [wire.attrOut(fs.setattr(ino, wire.decodeSetattr(req)), this.fs.attrValidSeconds(ino))];
      case Op.OPEN: {
        const o = fs.open(ino, wire.decodeOpen(req).flags);
        return [wire.openOut(o.fh, o.flags)];
      }
      case Op.READ: {
        const r = wire.decodeRead(req);
        return fs.read(ino, r.fh, r.offset, r.size);
      }
      case Op.WRITE: {
        const w = wire.decodeWrite(req);
        const written = fs.write(ino, w.offset, w.data);
        return typeof written === "number" ? [wire.writeOut(written)] : written.then((n) => [wire.writeOut(n)]);
      }
      case Op.FLUSH:
      case Op.FSYNC:
        return fs.fsync(ino).then(() => []);
      case Op.RELEASE:
        fs.release(ino, wire.decodeFh(req).fh);
        return [];
      case Op.OPENDIR:
        fs.readdir(ino);
        return [wire.openOut(0, 0)];
      case Op.READDIR: {
        const r = wire.decodeRead(req);
        return [wire.dirents(fs.readdir(ino), r.offset, r.size)];
      }
      case Op.RELEASEDIR:
      case Op.FSYNCDIR:
        return [];
      case Op.STATFS:
        return [wire.statfsOut(fs.statfs())];
      case Op.ACCESS:
        fs.access(ino, wire.decodeAccess(req).mask);
        return [];
      case Op.UNLINK:
        fs.unlink(ino, req.name());
        return [];
      case Op.FALLOCATE: {
        const f = wire.decodeFallocate(req);
        return fs.fallocate(ino, f.offset, f.length, f.mode).then(() => []);
      }
      default:
        throw new FsError(Errno.ENOSYS, `opcode ${req.opcode} not implemented`);
    }
  }

  private init(i: wire.InitIn): Uint8Array {
    if (i.major !== FUSE_KERNEL_VERSION || i.minor < MIN_KERNEL_MINOR) {
      throw new FsError(Errno.EPROTO, `kernel FUSE protocol ${i.major}.${i.minor} is too old (need 7.${MIN_KERNEL_MINOR})`);
    }
    const wanted = (this.options.syncRead ? 0 : InitFlag.ASYNC_READ) | InitFlag.BIG_WRITES | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.ASYNC_DIO;
    const flags = wanted & i.flags; // only what the kernel offered
    const minor = Math.min(i.minor, OUR_MINOR);
    // The kernel takes no less than a page.
    const maxWrite = Math.max(4096, Math.min(flags & InitFlag.MAX_PAGES ? MAX_WRITE : 128 * 1024, this.options.maxWrite ?? Infinity));
    this.negotiated = { kernelMinor: i.minor, flags, maxWrite };
    this.log.debug(
      `INIT: kernel 7.${i.minor} offered flags 0x${i.flags.toString(16)}; replying 7.${minor}, flags 0x${flags.toString(16)}, max_write ${maxWrite}`,
    );
    queueMicrotask(() => this.resolveReady());
    return wire.initOut(
      {
        minor,
        maxReadahead: Math.min(this.options.maxReadahead, i.maxReadahead),
        flags,
        maxBackground: 64,
        congestionThreshold: 48,
        maxWrite,
        maxPages: MAX_PAGES,
      },
      FUSE_KERNEL_VERSION,
    );
  }

  /**
   * INTERRUPT: answer a request still being handled with EINTR now; one not seen yet (still in a
   * reader's ring, so read from the session's descriptor), EAGAIN: the kernel sends it again.
   */
  private interrupt(req: Request): void {
    const target = wire.decodeInterrupt(req).unique;
    const fd = this.pending.get(target);
    this.log.debug(`INTERRUPT of request ${target}: ${fd === undefined ? "not seen yet" : fd === ANSWERED ? "already answered" : "answering EINTR"}`);
    if (fd === undefined) {
      this.write(this.fd, [wire.outHeader(Size.OUT_HEADER, Errno.EAGAIN, req.uniqueBytes)]);
    } else if (fd !== ANSWERED) {
      this.pending.set(target, ANSWERED);
      // The interrupted request's id is the INTERRUPT's argument.
      this.write(fd, [wire.outHeader(Size.OUT_HEADER, Errno.EINTR, req.bytes, Size.IN_HEADER)]);
    }
  }

  /**
   * Tells the kernel an inode's attributes changed (the file's size, after a resize), so that it
   * asks again instead of trusting its cache: FUSE_NOTIFY_INVAL_INODE, attributes only (offset -1).
   */
  invalidateAttributes(ino: number): void {
    const body = new Uint8Array(24);
    const view = new DataView(body.buffer);
    view.setBigUint64(0, BigInt(ino), true);
    view.setBigInt64(8, -1n, true);
    this.write(this.fd, [wire.outHeader(Size.OUT_HEADER + body.length, -NOTIFY_INVAL_INODE, new Uint8Array(8)), body]);
  }

  private reply(req: Request, fd: number, errno: number, body: Uint8Array[]): void {
    if (this.pending.get(req.unique) === ANSWERED) return; // already answered by an INTERRUPT
    let length = Size.OUT_HEADER;
    for (const part of body) length += part.length;
    // The header buffer is reused: the write below is synchronous.
    wire.fillOutHeader(this.header, errno ? Size.OUT_HEADER : length, errno, req.bytes, UNIQUE_AT);
    this.write(fd, errno ? [this.header] : [this.header, ...body]);
  }

  /** One writev per reply: block data goes to the kernel straight from the store's buffers. */
  private write(fd: number, parts: Uint8Array[]): void {
    try {
      writevSync(fd, parts);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // ENOENT: the kernel gave up on that request (interrupted); ENODEV: unmounted meanwhile.
      if (code !== "ENOENT" && code !== "ENODEV") this.log.error(`reply to kernel failed: ${messageOf(err)}`);
    }
  }
}
