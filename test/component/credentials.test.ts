/** Credentials from the EC2 instance metadata service (a fake one on loopback). */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { credentialSource } from "../../src/object/s3/credentials.ts";
import { ImdsCredentials } from "../../src/object/s3/imds.ts";
import { tempDir } from "../helpers/data.ts";

const home = tempDir("home"); // empty: no ~/.s3backer_passwd, no ~/.aws
afterAll(() => rmSync(home, { recursive: true, force: true }));
const none = { accessId: undefined, accessKey: undefined, accessFile: undefined, accessEC2IAM: undefined };

test("EC2 instance metadata: IMDSv2 token first, credentials of the role, refreshed before expiry", async () => {
  let tokenRequests = 0;
  let credentialRequests = 0;
  let expiresIn = 60 * 60 * 1000;
  const fake = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req) {
      const url = new URL(req.url);
      if (req.method === "PUT" && url.pathname === "/latest/api/token") {
        tokenRequests++;
        if (!req.headers.get("x-aws-ec2-metadata-token-ttl-seconds")) return new Response("", { status: 400 });
        return new Response("TOKEN123");
      }
      if (req.headers.get("x-aws-ec2-metadata-token") !== "TOKEN123") return new Response("", { status: 401 });
      if (url.pathname === "/latest/meta-data/iam/security-credentials/my-role") {
        credentialRequests++;
        return Response.json({ AccessKeyId: `ASIA${credentialRequests}`, SecretAccessKey: "s", Token: "t", Expiration: new Date(Date.now() + expiresIn).toISOString() });
      }
      return new Response("", { status: 404 });
    },
  });
  try {
    const imds = () => credentialSource({ ...none, accessEC2IAM: "my-role" }, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${fake.port}` }, home);
    const source = imds();
    expect(await source.get()).toEqual({ accessKeyId: "ASIA1", secretAccessKey: "s", sessionToken: "t" });
    expect(await source.get()).toEqual({ accessKeyId: "ASIA1", secretAccessKey: "s", sessionToken: "t" }); // cached
    expect([tokenRequests, credentialRequests]).toEqual([1, 1]);
    expiresIn = 60 * 1000; // the next ones expire within the refresh margin
    const soon = imds();
    expect((await soon.get())!.accessKeyId).toBe("ASIA2");
    expect((await soon.get())!.accessKeyId).toBe("ASIA3"); // refreshed again: too close to expiry
    const wrongRole = new ImdsCredentials("other", `http://127.0.0.1:${fake.port}`);
    await expect(wrongRole.get()).rejects.toThrow(/role 'other' answered 404/);
  } finally {
    fake.stop(true);
  }
});
