/**
 * Positioned file reads and writes that do not hold up the event loop: node:fs runs them on the
 * runtime's I/O threads, in Bun and in Deno alike.
 */
import { read, write } from "node:fs";

export function readAt(fd: number, buffer: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buffer, 0, buffer.length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

export async function writeAt(fd: number, buffer: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    done += await new Promise<number>((resolve, reject) =>
      write(fd, buffer, done, buffer.length - done, position + done, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }
}
