/**
 * An HTTP thread (see http-threads.ts): sends the requests it is given over keep-alive HTTP/1.1
 * connections of its own, reads each response into one buffer of its size, takes the body's CRC-32,
 * and hands the buffer back to the main thread (transferred, not copied). A PUT's body is written
 * to the socket from the shared memory the main thread put it in, without a copy here; its MD5 is
 * taken here too when the main thread asks (a HashJob, groups of bodies in SIMD lanes).
 *
 * A request sent on a kept connection that the server had closed meanwhile gets no byte of answer:
 * it is sent again at once on a new connection (a GET changes nothing, and a PUT sends the same
 * bytes again), as fetch() does. A connection that fails, or is answered before it took the whole
 * body, is aborted: the rest of that body is never sent (the main thread reuses its memory).
 */
import { runtime } from "../runtime/index.ts";
import type { ClientConnection } from "../runtime/runtime.ts";
import { messageOf } from "../errors.ts";
import { ResponseReader, type ParsedResponse } from "./http1.ts";
import type { HashJob, HttpAnswer, HttpJob, Shutdown } from "./http-threads.ts";
import { hashGroupHere } from "../util/md5.ts";
import { PlainLoop } from "./plain-connections.ts";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

declare const self: Worker;

interface Connection {
  key: string;
  stream: ClientConnection | undefined;
  /** The request it carries, if any. */
  current: Running | undefined;
  reused: boolean;
  gone: boolean;
}

interface Running {
  job: HttpJob;
  reader: ResponseReader;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Whether this is the job's second try (after a kept connection turned out closed). */
  retried: boolean;
  /** On a plain socket of this thread's own (see plain-connections.ts), not the runtime's. */
  plain: boolean;
}

/** Kept connections, per server, idle. */
const idle = new Map<string, Connection[]>();
/** Requests being answered on plain sockets: they are polled only while there are some. */
let plainInFlight = 0;
/** Work the event loop does meanwhile (hashes, name lookups, requests on the runtime's sockets): polling must not hold it back. */
let loopWork = 0;
/** Plain HTTP on sockets this thread polls itself, where the runtime has them. */
const plain = runtime.plainSockets && new PlainLoop(runtime.plainSockets, () => plainInFlight > 0, () => loopWork > 0);

const reply = (answer: HttpAnswer, transfer: ArrayBuffer[] = []) => self.postMessage(answer, transfer);

function finish(conn: Connection, run: Running): void {
  clearTimeout(run.timer);
  if (conn.current === run) {
    if (run.plain) plainInFlight--;
    else loopWork--;
  }
  conn.current = undefined;
}

/** Takes a connection out of the kept ones: it carries no more requests. */
function forget(conn: Connection): void {
  conn.gone = true;
  const list = idle.get(conn.key);
  const at = list?.indexOf(conn) ?? -1;
  if (at >= 0) list!.splice(at, 1);
}

function drop(conn: Connection): void {
  forget(conn);
  conn.stream?.abort();
}

/** Hands the response to the main thread, its body's buffer transferred, and the spare buffer if unused. */
function answer(run: Running, response: ParsedResponse): void {
  const body = response.body;
  const unused = run.reader.unusedBuffer;
  const transfer = [body.buffer as ArrayBuffer, ...(unused ? [unused] : [])];
  reply({ id: run.job.id, status: response.status, headers: response.headers, body, crc32: runtime.crc32(body) >>> 0, unused }, transfer);
}

function fail(conn: Connection, run: Running, error: string, timedOut = false): void {
  finish(conn, run);
  drop(conn);
  // The spare buffer goes back whole, even if a body was partly read into it: it is spare again.
  const spare = run.job.into;
  reply({ id: run.job.id, error, timedOut, unused: spare }, spare ? [spare] : []);
}

function received(conn: Connection, chunk: Uint8Array): void {
  const run = conn.current;
  if (!run) return drop(conn); // bytes nobody asked for: the connection is out of step
  let done;
  try {
    done = run.reader.push(chunk);
  } catch (err) {
    return fail(conn, run, messageOf(err));
  }
  if (done) completed(conn, run, done.response, done.used < chunk.length);
}

/** Bytes received straight into the body (plain sockets: see plain-connections.ts). */
function receivedInPlace(conn: Connection, length: number): void {
  const run = conn.current!;
  const response = run.reader.bodyFilled(length);
  if (response) completed(conn, run, response, false);
}

/** `extra`: bytes came after the response, which no request asked for. */
function completed(conn: Connection, run: Running, response: ParsedResponse, extra: boolean): void {
  finish(conn, run);
  answer(run, response);
  if (response.close || extra || run.job.close || conn.stream!.queuedBytes > 0) return drop(conn);
  conn.reused = true;
  const list = idle.get(conn.key) ?? [];
  list.push(conn);
  idle.set(conn.key, list);
}

function closed(conn: Connection, why: string): void {
  if (conn.gone && !conn.current) return;
  forget(conn);
  const run = conn.current;
  if (!run) return;
  if (!run.reader.started && conn.reused && !run.retried) {
    finish(conn, run);
    return void start(run.job, true);
  }
  let response;
  try {
    response = run.reader.end();
  } catch (err) {
    return fail(conn, run, `${messageOf(err)} (${why})`);
  }
  finish(conn, run);
  answer(run, response);
}

/** A name's address for plain sockets: IPv4 first (one address is tried, and a name may have an IPv6 one the server does not listen on). */
async function addressOf(host: string): Promise<string> {
  const all = await lookup(host, { all: true });
  const chosen = all.find((a) => a.family === 4) ?? all[0];
  if (!chosen) throw new Error(`${host}: no address`);
  return chosen.address;
}

/** A kept connection to `key` the server has not closed meanwhile (plain sockets are not read while idle). */
function keptConnection(key: string): Connection | undefined {
  for (;;) {
    const conn = idle.get(key)?.pop();
    if (!conn?.stream?.closedByPeer?.()) return conn;
    drop(conn);
  }
}

async function start(job: HttpJob, retried = false): Promise<void> {
  const key = `${job.host}:${job.port}:${job.tls ? "tls" : ""}`;
  // A second try goes on a new connection: the kept ones may all have been closed at once.
  const kept = retried ? undefined : keptConnection(key);
  const conn: Connection = kept ?? { key, stream: undefined, current: undefined, reused: false, gone: false };
  // A link-local IPv6 address with a zone is left to the runtime's sockets.
  const usePlain = plain !== undefined && !job.tls && !job.host.includes("%");
  const run: Running = {
    job,
    reader: new ResponseReader(job.method, job.into),
    retried,
    plain: usePlain,
    // --timeout=0: no time limit, as curl's.
    timer: job.timeoutMs > 0 ? setTimeout(() => fail(conn, run, `timed out after ${job.timeoutMs} ms`, true), job.timeoutMs) : undefined,
  };
  conn.current = run;
  if (usePlain) plainInFlight++;
  else loopWork++;
  if (!conn.stream) {
    const session = () => ({
      data: (chunk: Uint8Array) => received(conn, chunk),
      closed: (why: string) => closed(conn, why),
      space: () => conn.current?.reader.bodySpace(),
      filled: (length: number) => receivedInPlace(conn, length),
    });
    try {
      if (usePlain) {
        const ip = isIP(job.host) ? job.host : await lookingUp(job.host);
        if (conn.current !== run) return; // timed out while looking up the name
        conn.stream = plain!.connect(ip, job.port, session);
      } else {
        conn.stream = await runtime.connectStream!(job.host, job.port, job.tls, session);
      }
    } catch (err) {
      if (conn.current === run) fail(conn, run, messageOf(err));
      return;
    }
    if (conn.current !== run) return void conn.stream.abort(); // timed out while connecting
  }
  conn.stream.write(job.request);
  if (job.body) conn.stream.writeBorrowed(job.body);
  if (usePlain) plain!.start();
}

/** A name's address, looked up on the event loop (which the poll must then leave to it). */
async function lookingUp(host: string): Promise<string> {
  loopWork++;
  try {
    return await addressOf(host);
  } finally {
    loopWork--;
  }
}

self.onmessage = (event: MessageEvent<HttpJob | HashJob | Shutdown>) => {
  plain?.jobTaken();
  const job = event.data;
  // The thread is ending: its sockets are closed now, the main thread terminates it.
  if ("shutdown" in job) return plain?.closeAll();
  if ("md5Of" in job) {
    loopWork++;
    return void hashGroupHere(job.md5Of)
      .then((digests) => reply({ id: job.id, digests }))
      .finally(() => loopWork--);
  }
  void start(job);
};
self.postMessage({ ready: true, wake: plain && { fd: plain.wakeFd, signals: plain.signals } });
