/** Stream servers on node:net (Deno): its write keeps a copy of what the socket does not take at once. */
import { createServer, type Socket } from "node:net";
import type { StreamAddress, StreamConnection, StreamListener, StreamSession } from "./runtime.ts";

export function listenStream(address: StreamAddress, open: (c: StreamConnection) => StreamSession): Promise<StreamListener> {
  const server = createServer({ noDelay: true }, (socket: Socket) => {
    let waiters: (() => void)[] = [];
    const wake = () => {
      const waiting = waiters;
      waiters = [];
      for (const w of waiting) w();
    };
    const session = open({
      peer: socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : "unix client",
      write: (bytes) => socket.write(bytes),
      drained: () => (socket.writableNeedDrain && !socket.destroyed ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve()),
      end: () => socket.end(),
      pause: () => socket.pause(),
      resume: () => socket.resume(),
    });
    let closed = false;
    const gone = (why: string) => {
      wake();
      if (closed) return;
      closed = true;
      session.closed(why);
    };
    socket.on("data", (chunk: Uint8Array) => session.data(chunk));
    socket.on("drain", wake);
    socket.on("end", () => gone("the client closed the connection"));
    socket.on("close", () => gone("connection closed"));
    socket.on("error", (err) => gone(err.message));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      const bound = server.address();
      resolve({ port: bound && typeof bound === "object" ? bound.port : undefined, close: () => server.close() });
    };
    if ("path" in address) server.listen(address.path, listening);
    else server.listen(address.port, address.host, listening);
  });
}
