/**
 * The encryption password: --password, else the first line of --passwordFile, else asked on the
 * terminal with echo off. The background process cannot ask, so the foreground one does and hands
 * the answer over on the child's stdin (never through argv or the environment).
 */
import { readSync } from "node:fs";
import { isatty } from "node:tty";
import { ConfigError } from "../errors.ts";
import type { EncryptionSettings } from "../config/settings.ts";
import { runtime } from "../runtime/index.ts";
import { readInputFile } from "../util/flag-paths.ts";

/** Set in the background child's environment when its password comes on stdin. */
export const PASSWORD_ON_STDIN = "S3BACKER_PASSWORD_ON_STDIN";

export function passwordWarning(enc: EncryptionSettings): string | undefined {
  if (enc.password === undefined) return undefined;
  return "warning: --password is visible to other users of this machine (ps, /proc); use --passwordFile or type it at the prompt";
}

/** Where the password comes from, and the password. */
export function obtainPassword(enc: EncryptionSettings, env: Record<string, string | undefined> = process.env): { password: string; prompted: boolean } {
  if (enc.password !== undefined) return { password: enc.password, prompted: false };
  if (enc.passwordFile !== undefined) return { password: fromFile(enc.passwordFile), prompted: false };
  if (env[PASSWORD_ON_STDIN] === "1") return { password: readLine(0), prompted: false };
  if (!isatty(0)) throw new ConfigError("--encrypt needs a password: give --passwordFile=FILE, or run on a terminal to be asked for it");
  return { password: ask("Password: "), prompted: true };
}

/** For 'passwd': the new password, from --newPasswordFile, else typed twice on the terminal. */
export function obtainNewPassword(file: string | undefined): string {
  if (file !== undefined) return fromFile(file, "newPasswordFile");
  if (!isatty(0)) throw new ConfigError("passwd needs the new password: give --newPasswordFile=FILE, or run on a terminal to be asked for it");
  const password = ask("New password: ");
  if (ask("New password again: ") !== password) throw new ConfigError("the two new passwords differ: nothing was changed");
  return password;
}

/** A line typed on the terminal with echo off. */
function ask(prompt: string): string {
  process.stderr.write(prompt);
  runtime.libc.setEcho(0, false);
  try {
    const password = readLine(0);
    if (password === "") throw new ConfigError("the password is empty");
    return password;
  } finally {
    runtime.libc.setEcho(0, true);
    process.stderr.write("\n");
  }
}

function fromFile(path: string, flag = "passwordFile"): string {
  const text = readInputFile(`--${flag}=${path}`, path)!;
  const password = text.split(/\r?\n/)[0]!;
  if (password === "") throw new ConfigError(`--${flag}=${path}: the first line is empty`);
  return password;
}

/** One line from a file descriptor, read byte by byte so nothing after the newline is consumed. */
function readLine(fd: number): string {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (readSync(fd, one, 0, 1, null) === 1 && one[0] !== 0x0a) bytes.push(one[0]!);
  return new TextDecoder().decode(new Uint8Array(bytes)).replace(/\r$/, "");
}
