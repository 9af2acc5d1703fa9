/** The S3 contract (test/helpers/s3-contract.ts) against Ceph RGW, a real S3 server (always there in CI). */
import { describe, test } from "bun:test";
import { rgwPeer } from "../helpers/s3.ts";
import { s3ContractTests } from "../helpers/s3-contract.ts";

const rgw = rgwPeer();
if (rgw) describe(`S3 contract: ${rgw.name}`, () => s3ContractTests(rgw));
else test.skip("S3 contract: ceph-rgw (S3_RGW_URL is not set)", () => {});
