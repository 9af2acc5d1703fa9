/**
 * The fixed-newstyle handshake: the greeting, then the client's options until one of them
 * (EXPORT_NAME or GO) starts the transmission phase. One export is offered, under the disk's file
 * name or the empty (default) name.
 *
 * TLS as doc/proto.md sets it out: NBD_OPT_STARTTLS is answered with ACK and the connection turns
 * into TLS at once. When TLS is required (FORCEDTLS), every option before it but STARTTLS and
 * ABORT gets NBD_REP_ERR_TLS_REQD, and EXPORT_NAME (which cannot be refused) a hang-up. What was
 * negotiated in the clear is forgotten once TLS is on.
 *
 * A client that sends options without reading the replies is read no further until they have gone
 * (its sends wait in its own socket), and one that sends MAX_OPTIONS without choosing an export is
 * hung up on: nobody has been authenticated yet, so nothing it sends may grow the server's memory.
 */
import { concatBytes } from "../util/bytes.ts";
import { messageOf } from "../errors.ts";
import type { TlsSessionInfo } from "../runtime/runtime.ts";
import type { ByteReader } from "./byte-reader.ts";
import {
  BASE_ALLOCATION, blockSizeInfo, decodeOptionHeader, EXPORT_NAME_PADDING, exportInfo, greeting, HandshakeFlag, Info, Opt,
  optionReply, Rep, TxFlag, withU32,
} from "./protocol.ts";

/** Requests the server accepts; the NBD default maximum, and a minimum every disk tool uses. */
export const MIN_BLOCK = 512;
export const MAX_REQUEST = 32 * 1024 * 1024;
/** Options carry names and queries: anything longer is not a client worth serving. */
const MAX_OPTION = 64 * 1024;
/** Options a client may send before it chooses an export (nbdkit allows as many; a real client sends a handful). */
export const MAX_OPTIONS = 32;
/** A client has this long from connecting to choosing an export, TLS handshake included (qemu-nbd's limit too). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** The id of base:allocation in replies to NBD_CMD_BLOCK_STATUS. */
export const ALLOCATION_CONTEXT_ID = 1;

export interface ExportSpec {
  name: string;
  description: string;
  size: number;
  blockSize: number;
  readOnly: boolean;
}

/** TLS as this server offers it. */
export interface HandshakeTls {
  /** Clients must start TLS before anything else (FORCEDTLS); else they may (SELECTIVETLS, one export). */
  required: boolean;
  /** Makes the connection TLS: called in the same turn as STARTTLS's ACK is sent. */
  start(): Promise<TlsSessionInfo>;
}

/** Where the handshake's replies go. */
export interface ReplySink {
  send(bytes: Uint8Array): void;
  /** Resolves once the replies sent have gone to the socket, or the connection is gone. */
  drained(): Promise<void>;
}

/** The server ends the connection on purpose: one line in the log, and the socket closed at once. */
export class HangUp extends Error {}

/** What the handshake settled for the transmission phase. */
export interface Negotiated {
  structured: boolean;
  /** base:allocation was selected: BLOCK_STATUS may be asked. */
  allocation: boolean;
  /** The client learned the block-size constraints, so requests that break them are refused. */
  strictAlignment: boolean;
  flags: number;
}

export function transmissionFlags(spec: ExportSpec, structured: boolean): number {
  let flags = TxFlag.HAS_FLAGS | TxFlag.SEND_FLUSH | TxFlag.SEND_FUA | TxFlag.CAN_MULTI_CONN | TxFlag.SEND_CACHE;
  flags |= spec.readOnly ? TxFlag.READ_ONLY : TxFlag.SEND_TRIM | TxFlag.SEND_WRITE_ZEROES | TxFlag.SEND_FAST_ZERO;
  if (structured) flags |= TxFlag.SEND_DF;
  return flags;
}

class Invalid extends Error {}

/** Reads a message's fields in order; running past its end is an invalid option. */
class Fields {
  private at = 0;
  private readonly view: DataView;
  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.length);
  }
  private need(n: number): void {
    if (this.at + n > this.data.length) throw new Invalid("option data too short");
  }
  u16(): number {
    this.need(2);
    this.at += 2;
    return this.view.getUint16(this.at - 2);
  }
  u32(): number {
    this.need(4);
    this.at += 4;
    return this.view.getUint32(this.at - 4);
  }
  text(length: number): string {
    this.need(length);
    this.at += length;
    return new TextDecoder("utf-8", { fatal: true }).decode(this.data.subarray(this.at - length, this.at));
  }
  end(): void {
    if (this.at !== this.data.length) throw new Invalid("option data too long");
  }
}

/**
 * Runs the handshake. Resolves with what was negotiated, or undefined when the client aborted or
 * broke the protocol (the caller closes the connection). Rejects when the connection ends, and
 * with HangUp when the client sent too many options.
 */
export async function negotiate(
  reader: ByteReader,
  out: ReplySink,
  spec: ExportSpec,
  tls?: HandshakeTls,
): Promise<Negotiated | undefined> {
  const send = (bytes: Uint8Array) => out.send(bytes);
  send(greeting());
  const clientFlags = new DataView((await reader.take(4)).slice().buffer).getUint32(0);
  if (clientFlags & ~(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES)) return undefined;
  const noZeroes = (clientFlags & HandshakeFlag.NO_ZEROES) !== 0;
  let structured = false;
  let allocation = false;
  let tlsOn = false;
  const known = (name: string) => name === "" || name === spec.name;

  for (let options = 0; ; options++) {
    await reader.holdUntil(out.drained());
    if (options === MAX_OPTIONS) throw new HangUp(`${MAX_OPTIONS} options and no export chosen`);
    const header = decodeOptionHeader((await reader.take(16)).slice());
    if (!header || header.length > MAX_OPTION) return undefined;
    const data = (await reader.take(header.length)).slice();
    const { option } = header;
    const reply = (type: number, body?: Uint8Array) => send(optionReply(option, type, body));
    const refuse = (type: number, message: string) => reply(type, new TextEncoder().encode(message));
    if (tls?.required && !tlsOn && option !== Opt.STARTTLS && option !== Opt.ABORT) {
      if (option === Opt.EXPORT_NAME) return undefined;
      refuse(Rep.ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS first");
      continue;
    }
    try {
      switch (option) {
        case Opt.EXPORT_NAME: {
          const name = new TextDecoder().decode(data);
          if (!known(name)) return undefined; // this option has no way to say no but closing
          const info = exportInfo(spec.size, transmissionFlags(spec, structured)).subarray(2);
          send(noZeroes ? info : concatBytes([info, new Uint8Array(EXPORT_NAME_PADDING)]));
          return { structured, allocation, strictAlignment: false, flags: transmissionFlags(spec, structured) };
        }
        case Opt.ABORT:
          reply(Rep.ACK);
          return undefined;
        case Opt.LIST:
          if (data.length !== 0) throw new Invalid("NBD_OPT_LIST takes no data");
          reply(Rep.SERVER, concatBytes([withU32(new TextEncoder().encode(spec.name).length, spec.name), new TextEncoder().encode(spec.description)]));
          reply(Rep.ACK);
          break;
        case Opt.STARTTLS:
          if (!tls) {
            refuse(Rep.ERR_POLICY, "TLS is not enabled on this server (--nbd-tls-cert, --nbd-tls-psk)");
            break;
          }
          if (tlsOn) throw new Invalid("TLS is already on");
          if (data.length !== 0) throw new Invalid("NBD_OPT_STARTTLS takes no data");
          // Bytes sent after STARTTLS, before its ACK, would be taken as if they came inside TLS: a
          // man in the middle's injection (as in CVE-2011-0411). The protocol lets us only hang up.
          if (reader.held > 0) throw new Error("bytes came after NBD_OPT_STARTTLS before TLS began (injected?): hanging up");
          reply(Rep.ACK);
          // A failed handshake ends the connection: no error of it may pass for an option's.
          await tls.start().catch((err: unknown) => Promise.reject(new Error(messageOf(err))));
          tlsOn = true;
          structured = false;
          allocation = false;
          break;
        case Opt.STRUCTURED_REPLY:
          if (data.length !== 0) throw new Invalid("NBD_OPT_STRUCTURED_REPLY takes no data");
          structured = true;
          reply(Rep.ACK);
          break;
        case Opt.INFO:
        case Opt.GO: {
          const f = new Fields(data);
          const name = f.text(f.u32());
          const wanted = Array.from({ length: f.u16() }, () => f.u16());
          f.end();
          if (!known(name)) {
            refuse(Rep.ERR_UNKNOWN, `no export '${name}' (this server has '${spec.name}', also the default '')`);
            break;
          }
          const flags = transmissionFlags(spec, structured);
          reply(Rep.INFO, exportInfo(spec.size, flags));
          reply(Rep.INFO, blockSizeInfo(minimumBlock(spec), Math.min(spec.blockSize, MAX_REQUEST), MAX_REQUEST));
          if (wanted.includes(Info.NAME)) reply(Rep.INFO, withInfoType(Info.NAME, spec.name));
          if (wanted.includes(Info.DESCRIPTION)) reply(Rep.INFO, withInfoType(Info.DESCRIPTION, spec.description));
          reply(Rep.ACK);
          if (option === Opt.GO) return { structured, allocation, strictAlignment: wanted.includes(Info.BLOCK_SIZE), flags };
          break;
        }
        case Opt.LIST_META_CONTEXT:
        case Opt.SET_META_CONTEXT: {
          if (!structured) throw new Invalid("metadata contexts need structured replies first");
          const f = new Fields(data);
          const name = f.text(f.u32());
          const queries = Array.from({ length: f.u32() }, () => f.text(f.u32()));
          f.end();
          if (!known(name)) {
            refuse(Rep.ERR_UNKNOWN, `no export '${name}'`);
            break;
          }
          const listing = option === Opt.LIST_META_CONTEXT;
          // A listing with no query, or the query "base:", names every context of that namespace.
          const matched = queries.some((q) => q === BASE_ALLOCATION || (listing && q === "base:")) || (listing && queries.length === 0);
          if (!listing) allocation = matched;
          if (matched) reply(Rep.META_CONTEXT, withU32(listing ? 0 : ALLOCATION_CONTEXT_ID, BASE_ALLOCATION));
          reply(Rep.ACK);
          break;
        }
        default:
          refuse(Rep.ERR_UNSUP, `option ${option} is not supported`);
      }
    } catch (err) {
      if (!(err instanceof Invalid) && !(err instanceof TypeError)) throw err;
      refuse(Rep.ERR_INVALID, err instanceof Invalid ? err.message : "a string is not valid UTF-8");
    }
  }
}

/** The smallest request the client should send: 512 bytes, or one block if blocks are smaller. */
export function minimumBlock(spec: ExportSpec): number {
  return Math.min(MIN_BLOCK, spec.blockSize);
}

function withInfoType(type: number, text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(2 + body.length);
  new DataView(out.buffer).setUint16(0, type);
  out.set(body, 2);
  return out;
}
