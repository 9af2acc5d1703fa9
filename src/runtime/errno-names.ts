/** errno numbers (Linux) to the names Node-style errors carry in `code`. */
import { Errno } from "../errors.ts";

const NAMES = new Map<number, string>(Object.entries(Errno).map(([name, n]) => [n, name]));

export function errnoError(call: string, errno: number): Error {
  const code = NAMES.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${call}: ${code} (errno ${errno})`), { code, errno });
}
