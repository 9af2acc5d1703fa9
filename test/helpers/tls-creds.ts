/**
 * TLS credentials for tests, made fresh with openssl in a directory the caller removes: a CA, a
 * server certificate for localhost/127.0.0.1, a client certificate the CA signed, one a rogue CA
 * signed, psktool-style key files. Client directories are laid out as qemu's tls-creds-x509
 * (dir=) and libnbd's tls-certificates= read them: ca-cert.pem, client-cert.pem, client-key.pem.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { requireCommands } from "./data.ts";

export interface TestCreds {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Client directories: signed by the CA; signed by a rogue CA; no certificate at all. */
  client: string;
  rogue: string;
  noCert: string;
  /** psktool files: alice's key, and a wrong key for alice. */
  psk: string;
  wrongPsk: string;
  pskKey: Uint8Array;
  /** The file's text (PEM), for in-process servers. */
  read(path: string): string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A key and a certificate signed by `ca` (or self-signed for a CA), with these extensions. */
function certificate(cwd: string, name: string, subject: string, extensions: string[], ca?: string): void {
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}-key.pem`], cwd);
  writeFileSync(join(cwd, `${name}.ext`), extensions.join("\n") + "\n");
  openssl(["req", "-new", "-key", `${name}-key.pem`, "-subj", subject, "-out", `${name}.csr`], cwd);
  const signer = ca ? ["-CA", `${ca}-cert.pem`, "-CAkey", `${ca}-key.pem`, "-CAcreateserial"] : ["-signkey", `${name}-key.pem`];
  openssl(["x509", "-req", "-in", `${name}.csr`, ...signer, "-days", "3650", "-extfile", `${name}.ext`, "-out", `${name}-cert.pem`], cwd);
  chmodSync(join(cwd, `${name}-key.pem`), 0o600);
}

export function makeCreds(dir: string): TestCreds {
  requireCommands({ openssl: "openssl" });
  const pki = join(dir, "pki");
  mkdirSync(pki, { recursive: true });
  const caExt = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"];
  certificate(pki, "ca", "/CN=s3backer test CA", caExt);
  certificate(pki, "rogue-ca", "/CN=rogue CA", caExt);
  certificate(pki, "server", "/O=s3backer test/CN=localhost", [
    "basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], "ca");
  const clientExt = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"];
  certificate(pki, "client", "/O=s3backer test/CN=client1", clientExt, "ca");
  certificate(pki, "rogue", "/O=evil/CN=client1", clientExt, "rogue-ca");
  const clientDir = (name: string, cert?: string) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "ca-cert.pem"), readFileSync(join(pki, "ca-cert.pem")));
    if (cert) {
      writeFileSync(join(d, "client-cert.pem"), readFileSync(join(pki, `${cert}-cert.pem`)));
      writeFileSync(join(d, "client-key.pem"), readFileSync(join(pki, `${cert}-key.pem`)), { mode: 0o600 });
    }
    return d;
  };
  const pskKey = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 255);
  const pskFile = (name: string, key: Uint8Array) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "keys.psk"), `alice:${Buffer.from(key).toString("hex")}\n`, { mode: 0o600 });
    return join(d, "keys.psk");
  };
  return {
    dir,
    caCert: join(pki, "ca-cert.pem"),
    serverCert: join(pki, "server-cert.pem"),
    serverKey: join(pki, "server-key.pem"),
    client: clientDir("client", "client"),
    rogue: clientDir("rogue", "rogue"),
    noCert: clientDir("nocert"),
    psk: pskFile("psk", pskKey),
    wrongPsk: pskFile("badpsk", pskKey.map((b) => b ^ 0x5a)),
    pskKey,
    read: (path) => readFileSync(path, "utf8"),
  };
}
