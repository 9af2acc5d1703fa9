/**
 * NBD's TLS flags, and their files read and checked at start-up: Deno's TLS checks nothing until
 * a client connects (a key that does not match its certificate would fail every handshake, not
 * the start), so each problem is found here, as one line naming the flag: a missing or unreadable
 * file, a file without the PEM it should hold, a key that does not match its certificate, an
 * expired certificate, a malformed PSK file.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { statSync } from "node:fs";
import { ConfigError, messageOf } from "../errors.ts";
import type { NbdTls } from "../nbd/server.ts";
import type { TlsServerCreds } from "../runtime/runtime.ts";
import { readInputFile } from "../util/flag-paths.ts";
import type { FlagValues } from "./flag-values.ts";
import type { NbdTarget } from "./settings.ts";

const FILE_FLAGS = ["nbd-tls-cert", "nbd-tls-key", "nbd-tls-ca", "nbd-tls-psk"];
/** A pre-shared key shorter than this is refused (psktool makes 32 bytes). */
export const MIN_PSK_BYTES = 16;

export function nbdTlsSettings(f: FlagValues, target: NbdTarget | undefined, now = Date.now()): NbdTls | undefined {
  const given = ["nbd-tls", ...FILE_FLAGS].filter((name) => f.has(name));
  if (given.length === 0) return undefined;
  if (!target) throw new ConfigError(`${f.typed(given[0]!)} needs --nbd`);
  if (target.kind === "device") throw new ConfigError(`${f.typed(given[0]!)}: ${target.path} is attached over a private socket, without TLS; TLS is for unix: and tcp: servers`);
  const mode = f.text("nbd-tls") ?? "require";
  if (mode !== "off" && mode !== "on" && mode !== "require") throw f.fail("nbd-tls", "expected off, on or require");
  const files = FILE_FLAGS.filter((name) => f.has(name));
  if (mode === "off") {
    if (files.length > 0) f.warn(`${files.map((name) => f.typed(name)).join(", ")}: not used with ${f.typed("nbd-tls")}`);
    return undefined;
  }
  if (files.length === 0) throw f.fail("nbd-tls", "needs --nbd-tls-cert and --nbd-tls-key, or --nbd-tls-psk");
  return { required: mode === "require", creds: loadCreds(f, now) };
}

function loadCreds(f: FlagValues, now: number): TlsServerCreds {
  if (f.has("nbd-tls-psk")) {
    const other = FILE_FLAGS.find((name) => name !== "nbd-tls-psk" && f.has(name));
    if (other) throw new ConfigError(`${f.typed("nbd-tls-psk")} cannot be combined with ${f.form(other)}: a server takes pre-shared keys or certificates`);
    return { kind: "psk", keys: parsePskFile(f.typed("nbd-tls-psk"), secretFile(f, "nbd-tls-psk")) };
  }
  if (!f.has("nbd-tls-cert")) throw new ConfigError(`${f.typed(f.has("nbd-tls-key") ? "nbd-tls-key" : "nbd-tls-ca")} needs --nbd-tls-cert (and --nbd-tls-key)`);
  if (!f.has("nbd-tls-key")) throw new ConfigError(`${f.typed("nbd-tls-cert")} needs --nbd-tls-key, the certificate's private key`);
  const cert = readFile(f, "nbd-tls-cert");
  const certificates = certificatesIn(f, "nbd-tls-cert", cert);
  const leaf = certificates[0]!;
  if (Date.parse(leaf.validTo) < now) throw f.fail("nbd-tls-cert", `expired on ${leaf.validTo}`);
  if (Date.parse(leaf.validFrom) > now) f.warn(`${f.typed("nbd-tls-cert")}: not valid before ${leaf.validFrom}: clients refuse it until then`);
  const key = secretFile(f, "nbd-tls-key");
  const keyObject = privateKeyIn(f, key);
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(keyObject);
  } catch {
    matches = false; // a key of another type (EC for an RSA certificate) throws in some runtimes
  }
  if (!matches) throw new ConfigError(`${f.typed("nbd-tls-key")}: does not match the certificate in ${f.form("nbd-tls-cert")}`);
  let ca: string | undefined;
  if (f.has("nbd-tls-ca")) {
    ca = readFile(f, "nbd-tls-ca");
    certificatesIn(f, "nbd-tls-ca", ca);
  }
  return { kind: "x509", cert, key, ca };
}

function readFile(f: FlagValues, name: string): string {
  return readInputFile(f.typed(name), f.text(name)!)!;
}

/** A file holding a secret: read as any other, with a warning when others may read it too. */
function secretFile(f: FlagValues, name: string): string {
  const text = readFile(f, name);
  const mode = statSync(f.text(name)!).mode;
  if (mode & 0o077) f.warn(`${f.typed(name)}: other users may read it (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
  return text;
}

/** PEM blocks of these labels, in order. */
function pemBlocks(text: string, labels: RegExp): { label: string; pem: string }[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)].filter((m) => labels.test(m[1]!)).map((m) => ({ label: m[1]!, pem: m[0] }));
}

function certificatesIn(f: FlagValues, name: string, text: string): X509Certificate[] {
  const blocks = pemBlocks(text, /^CERTIFICATE$/);
  if (blocks.length === 0) throw f.fail(name, "no PEM certificate in it (-----BEGIN CERTIFICATE-----)");
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b.pem);
    } catch (err) {
      throw f.fail(name, `certificate ${i + 1} is not valid (${messageOf(err)})`);
    }
  });
}

function privateKeyIn(f: FlagValues, text: string): KeyObject {
  const blocks = pemBlocks(text, /PRIVATE KEY$/);
  if (blocks.length === 0) throw f.fail("nbd-tls-key", "no PEM private key in it (-----BEGIN PRIVATE KEY-----)");
  if (blocks[0]!.label === "ENCRYPTED PRIVATE KEY" || /Proc-Type: 4,ENCRYPTED/.test(blocks[0]!.pem)) {
    throw f.fail("nbd-tls-key", "the key is encrypted: give it unencrypted (openssl pkey -in KEY -out PLAIN), mode 600");
  }
  try {
    return createPrivateKey(blocks[0]!.pem);
  } catch (err) {
    throw f.fail("nbd-tls-key", `not a valid private key (${messageOf(err)})`);
  }
}

/** psktool's format, as GnuTLS (qemu, nbdkit, libnbd) reads it: one `identity:hexkey` a line. */
export function parsePskFile(typed: string, text: string): Map<string, Uint8Array> {
  const keys = new Map<string, Uint8Array>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "") return;
    const where = `${typed} line ${i + 1}`;
    const colon = line.indexOf(":"); // the identity ends at the first colon, as GnuTLS reads it
    if (colon <= 0) throw new ConfigError(`${where}: expected identity:hexkey`);
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new ConfigError(`${where}: the key is not hex digits in pairs`);
    if (hex.length / 2 < MIN_PSK_BYTES) throw new ConfigError(`${where}: a key of ${hex.length / 2} bytes is too short: at least ${MIN_PSK_BYTES} (psktool makes 32)`);
    if (keys.has(identity)) throw new ConfigError(`${where}: identity '${identity}' appears twice`);
    keys.set(identity, Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16)));
  });
  if (keys.size === 0) throw new ConfigError(`${typed}: no keys in it (psktool -u NAME -p FILE makes one)`);
  return keys;
}
