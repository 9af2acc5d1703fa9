/**
 * NBD's TLS flags and files, checked at start-up (src/config/nbd-tls.ts), under Bun and Deno
 * alike: Deno's TLS takes a key that does not match its certificate without a word, so these
 * checks are the only ones before a client connects. Each bad input is one line naming the flag.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { parseArgs } from "../../src/cli/parse.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { FlagValues } from "../../src/config/flag-values.ts";
import { nbdTlsSettings } from "../../src/config/nbd-tls.ts";
import { tempDir } from "../helpers/data.ts";
import { makeCreds } from "../helpers/tls-creds.ts";

const dir = tempDir("nbd-tls-config");
const creds = makeCreds(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string, mode = 0o600) => {
  const path = join(dir, name);
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
};
const SERVER = [`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${creds.serverKey}`];

function config(...flags: string[]) {
  return buildConfig(parseArgs(["--nbd", "--test", "--size=1M", ...flags, join(dir, "blocks"), "tcp:127.0.0.1:0"]), { uid: 0, gid: 0 }, {});
}
/** The one line a bad command line gets. */
function refusal(...flags: string[]): string {
  try {
    config(...flags);
  } catch (err) {
    const message = (err as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("accepted");
}

describe("accepted", () => {
  test("X.509: the files' text, client certificates with --nbd-tls-ca, required by default", () => {
    const c = config(...SERVER, `--nbd-tls-ca=${creds.caCert}`);
    expect(c.nbdTls?.required).toBe(true);
    expect(c.nbdTls?.creds).toMatchObject({ kind: "x509", ca: creds.read(creds.caCert), cert: creds.read(creds.serverCert) });
    expect(c.warnings).toEqual([]);
  });

  test("PSK: psktool's lines (CRLF too), keys as bytes; --nbd-tls=on offers TLS without requiring it", () => {
    const path = file("two.psk", `alice:${"ab".repeat(32)}\r\nbob:${"0F".repeat(16)}\r\n`);
    const c = config(`--nbd-tls-psk=${path}`, "--nbd-tls=on");
    expect(c.nbdTls?.required).toBe(false);
    const keys = (c.nbdTls?.creds as { keys: ReadonlyMap<string, Uint8Array> }).keys;
    expect([...keys.keys()]).toEqual(["alice", "bob"]);
    expect(keys.get("bob")).toEqual(new Uint8Array(16).fill(15));
  });

  test("no TLS flag: no TLS; --nbd-tls=off with files: no TLS, and a warning that they go unused", () => {
    expect(config().nbdTls).toBeUndefined();
    const c = config("--nbd-tls=off", ...SERVER);
    expect(c.nbdTls).toBeUndefined();
    expect(c.warnings.join()).toMatch(/not used with --nbd-tls=off/);
  });

  test("a key file others may read is taken, with a warning", () => {
    const loose = file("loose-key.pem", creds.read(creds.serverKey), 0o644);
    const c = config(`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${loose}`);
    expect(c.warnings.join()).toMatch(/other users may read it \(mode 644\): chmod 600 it/);
  });
});

describe("refused, one line each", () => {
  test("files that are missing or are not files", () => {
    expect(refusal(`--nbd-tls-cert=${dir}/nope.pem`, `--nbd-tls-key=${creds.serverKey}`)).toBe(`--nbd-tls-cert=${dir}/nope.pem: no such file`);
    mkdirSync(join(dir, "adir"), { recursive: true });
    expect(refusal(`--nbd-tls-psk=${dir}/adir`)).toMatch(/^--nbd-tls-psk=.*adir: is a directory, not a file$/);
  });

  test("a certificate file without a certificate, a key file without a key, an encrypted key", () => {
    expect(refusal(`--nbd-tls-cert=${file("junk.pem", "hello\n")}`, `--nbd-tls-key=${creds.serverKey}`)).toMatch(/junk.pem: no PEM certificate in it/);
    expect(refusal(`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${creds.serverCert}`)).toMatch(/^--nbd-tls-key=.*: no PEM private key in it/);
    const encrypted = join(dir, "encrypted-key.pem");
    spawnSync("openssl", ["pkey", "-in", creds.serverKey, "-aes256", "-passout", "pass:secret", "-out", encrypted]);
    expect(refusal(`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${encrypted}`)).toMatch(/the key is encrypted: give it unencrypted/);
    const broken = file("broken-cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    expect(refusal(`--nbd-tls-cert=${broken}`, `--nbd-tls-key=${creds.serverKey}`)).toMatch(/certificate 1 is not valid/);
  });

  test("a key that does not match the certificate: another key of its type, and one of another type", () => {
    const other = join(dir, "pki", "client-key.pem");
    expect(refusal(`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${other}`)).toBe(`--nbd-tls-key=${other}: does not match the certificate in --nbd-tls-cert=${creds.serverCert}`);
    const rsa = join(dir, "rsa-key.pem");
    spawnSync("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa]);
    chmodSync(rsa, 0o600);
    expect(refusal(`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${rsa}`)).toMatch(/rsa-key.pem: does not match the certificate/);
  });

  test("an expired certificate", () => {
    const f = new FlagValues(parseArgs([...SERVER]).values);
    expect(() => nbdTlsSettings(f, { kind: "tcp", host: "127.0.0.1", port: 0 }, Date.now() + 20 * 365 * 86400_000)).toThrow(/--nbd-tls-cert=.*: expired on /);
  });

  test("malformed PSK files", () => {
    const cases: [string, RegExp][] = [
      ["alice\n", /line 1: expected identity:hexkey/],
      [`:${"ab".repeat(32)}\n`, /line 1: expected identity:hexkey/],
      [`alice:${"zz".repeat(32)}\n`, /line 1: the key is not hex digits in pairs/],
      [`alice:${"a".repeat(63)}\n`, /line 1: the key is not hex digits in pairs/],
      ["alice:abcd\n", /line 1: a key of 2 bytes is too short: at least 16/],
      [`alice:${"ab".repeat(32)}\n\nalice:${"cd".repeat(32)}\n`, /line 3: identity 'alice' appears twice/],
      ["\n\n", /no keys in it/],
    ];
    for (const [text, why] of cases) expect(refusal(`--nbd-tls-psk=${file("bad.psk", text)}`)).toMatch(why);
  });

  test("flags that do not go together, or without what they need", () => {
    expect(refusal(`--nbd-tls-psk=${creds.psk}`, ...SERVER)).toMatch(/--nbd-tls-psk=.* cannot be combined with --nbd-tls-cert=/);
    expect(refusal(`--nbd-tls-key=${creds.serverKey}`)).toMatch(/^--nbd-tls-key=.* needs --nbd-tls-cert/);
    expect(refusal(`--nbd-tls-cert=${creds.serverCert}`)).toMatch(/needs --nbd-tls-key, the certificate's private key/);
    expect(refusal(`--nbd-tls-ca=${creds.caCert}`)).toMatch(/^--nbd-tls-ca=.* needs --nbd-tls-cert/);
    expect(refusal("--nbd-tls=require")).toBe("--nbd-tls=require: needs --nbd-tls-cert and --nbd-tls-key, or --nbd-tls-psk");
    expect(refusal("--nbd-tls=yes", ...SERVER)).toBe("--nbd-tls=yes: expected off, on or require");
    const noNbd = () => buildConfig(parseArgs(["--test", "--size=1M", `--nbd-tls-psk=${creds.psk}`, join(dir, "blocks"), join(dir, "mnt")]), { uid: 0, gid: 0 }, {});
    expect(noNbd).toThrow(/--nbd-tls-psk=.* needs --nbd/);
    const device = () => buildConfig(parseArgs(["--nbd", "--test", "--size=1M", `--nbd-tls-psk=${creds.psk}`, join(dir, "blocks"), "/dev/nbd0"]), { uid: 0, gid: 0 }, {});
    expect(device).toThrow(/\/dev\/nbd0 is attached over a private socket, without TLS/);
  });
});
