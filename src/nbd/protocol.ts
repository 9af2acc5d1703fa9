/**
 * The NBD wire protocol (the NBD project's doc/proto.md): magic numbers, option, command, reply and
 * error codes, and the byte layouts of each message. All integers are big-endian. No serving logic
 * here: that is handshake.ts and connection.ts.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

const ERR = 0x80000000;
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
} as const;

export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags, sent with the export's size. */
export const TxFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CmdFlag = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

export const ReplyFlag = { DONE: 1 << 0 } as const;
export const ReplyType = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: (1 << 15) + 1 } as const;

/** Errors a reply may carry (Linux values, fixed by the protocol). */
export const NbdErrno = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** The one metadata context: which extents are holes, and read as zeros. */
export const BASE_ALLOCATION = "base:allocation";
export const State = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;

export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const CHUNK_HEADER_SIZE = 20;
/** The oldstyle padding after an EXPORT_NAME reply, unless both sides said NO_ZEROES. */
export const EXPORT_NAME_PADDING = 124;

export interface Request {
  flags: number;
  type: number;
  /** The client's handle, echoed in the reply (8 bytes, kept as they came). */
  cookie: Uint8Array;
  offset: number;
  length: number;
}

/** Reads a 64-bit offset; above 2^53 it is past any export anyway, so it becomes Infinity. */
function getOffset(view: DataView, at: number): number {
  const high = view.getUint32(at);
  const low = view.getUint32(at + 4);
  return high >= 0x200000 ? Infinity : high * 0x100000000 + low;
}

function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x100000000));
  view.setUint32(at + 4, value >>> 0);
}

/** A transmission request from its 28 bytes, or undefined when the magic is wrong. */
export function decodeRequest(bytes: Uint8Array): Request | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, REQUEST_SIZE);
  if (view.getUint32(0) !== REQUEST_MAGIC) return undefined;
  return {
    flags: view.getUint16(4),
    type: view.getUint16(6),
    cookie: bytes.slice(8, 16),
    offset: getOffset(view, 16),
    length: view.getUint32(24),
  };
}

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function greeting(): Uint8Array {
  const out = new Uint8Array(18);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, NBDMAGIC);
  view.setBigUint64(8, IHAVEOPT);
  view.setUint16(16, HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES);
  return out;
}

export interface OptionHeader {
  option: number;
  length: number;
}

/** An option's 16-byte header, or undefined when it does not start with IHAVEOPT. */
export function decodeOptionHeader(bytes: Uint8Array): OptionHeader | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  if (view.getBigUint64(0) !== IHAVEOPT) return undefined;
  return { option: view.getUint32(8), length: view.getUint32(12) };
}

export function optionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, OPTION_REPLY_MAGIC);
  view.setUint32(8, option);
  view.setUint32(12, type);
  view.setUint32(16, data.length);
  out.set(data, 20);
  return out;
}

/** Size and transmission flags: NBD_INFO_EXPORT's payload, and the EXPORT_NAME reply's start. */
export function exportInfo(size: number, flags: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  view.setUint16(0, Info.EXPORT);
  setU64(view, 2, size);
  view.setUint16(10, flags);
  return out;
}

export function blockSizeInfo(minimum: number, preferred: number, maximum: number): Uint8Array {
  const out = new Uint8Array(14);
  const view = new DataView(out.buffer);
  view.setUint16(0, Info.BLOCK_SIZE);
  view.setUint32(2, minimum);
  view.setUint32(6, preferred);
  view.setUint32(10, maximum);
  return out;
}

/** A length-prefixed string: SERVER replies and META_CONTEXT ids are built from it. */
export function withU32(value: number, text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, value);
  out.set(body, 4);
  return out;
}

export function simpleReply(cookie: Uint8Array, error: number): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, SIMPLE_REPLY_MAGIC);
  view.setUint32(4, error);
  out.set(cookie, 8);
  return out;
}

/** A structured reply chunk of `length` payload bytes, with room for the first `room` of them. */
function chunk(cookie: Uint8Array, flags: number, type: number, length: number, room = length): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(CHUNK_HEADER_SIZE + room);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, STRUCTURED_REPLY_MAGIC);
  view.setUint16(4, flags);
  view.setUint16(6, type);
  bytes.set(cookie, 8);
  view.setUint32(16, length);
  return { bytes, view };
}

/** The start of an OFFSET_DATA chunk with DONE: its header and offset; `length` data bytes follow. */
export function dataChunk(cookie: Uint8Array, offset: number, length: number): Uint8Array {
  const { bytes, view } = chunk(cookie, ReplyFlag.DONE, ReplyType.OFFSET_DATA, 8 + length, 8);
  setU64(view, CHUNK_HEADER_SIZE, offset);
  return bytes;
}

export function errorChunk(cookie: Uint8Array, error: number, message: string): Uint8Array {
  const text = new TextEncoder().encode(message).subarray(0, 4096);
  const { bytes, view } = chunk(cookie, ReplyFlag.DONE, ReplyType.ERROR, 6 + text.length);
  view.setUint32(CHUNK_HEADER_SIZE, error);
  view.setUint16(CHUNK_HEADER_SIZE + 4, text.length);
  bytes.set(text, CHUNK_HEADER_SIZE + 6);
  return bytes;
}

export function doneChunk(cookie: Uint8Array): Uint8Array {
  return chunk(cookie, ReplyFlag.DONE, ReplyType.NONE, 0).bytes;
}

export interface Extent {
  length: number;
  flags: number;
}

export function blockStatusChunk(cookie: Uint8Array, contextId: number, extents: readonly Extent[]): Uint8Array {
  const { bytes, view } = chunk(cookie, ReplyFlag.DONE, ReplyType.BLOCK_STATUS, 4 + 8 * extents.length);
  view.setUint32(CHUNK_HEADER_SIZE, contextId);
  extents.forEach((e, i) => {
    view.setUint32(CHUNK_HEADER_SIZE + 4 + 8 * i, e.length);
    view.setUint32(CHUNK_HEADER_SIZE + 8 + 8 * i, e.flags);
  });
  return bytes;
}
