/**
 * `s3backer s3-server`: the embedded S3 server as a command, for trying s3backer without a cloud
 * account and for the quick-start demo. Listens on loopback until SIGINT/SIGTERM.
 */
import { cac } from "cac";
import { UsageError } from "../errors.ts";
import { DirStorage } from "./objects.ts";
import { S3Server } from "./s3-server.ts";

export const S3_SERVER_COMMAND = "s3-server";

export async function s3ServerMain(argv: string[]): Promise<number> {
  const cli = cac("s3backer s3-server");
  cli.option("--dir <DIR>", "Keep objects in this directory (default: in memory)");
  cli.option("--port <PORT>", "Port to listen on (0: any free port)", { default: "9000" });
  cli.option("--host <HOST>", "Address to listen on", { default: "127.0.0.1" });
  cli.option("--access-key <ID>", "Access key ID clients sign with (default: $AWS_ACCESS_KEY_ID)");
  cli.option("--secret-key <KEY>", "Secret key (default: $AWS_SECRET_ACCESS_KEY)");
  cli.option("--bucket <NAME>", "Create this bucket at start (repeatable)");
  cli.option("--anonymous-read", "Allow unsigned GET and HEAD (a public bucket)");
  cli.help();
  let options: Record<string, unknown>;
  try {
    ({ options } = cli.parse(["", "", ...argv], { run: false }));
    cli.globalCommand.checkUnknownOptions();
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/`/g, "'"));
  }
  if (options.help) return 0;
  const accessKey = String(options.accessKey ?? process.env.AWS_ACCESS_KEY_ID ?? "");
  const secretKey = String(options.secretKey ?? process.env.AWS_SECRET_ACCESS_KEY ?? "");
  if (!accessKey || !secretKey) throw new UsageError("s3-server needs --access-key and --secret-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
  const port = Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port=${options.port}: not a port number`);
  const buckets = options.bucket === undefined ? [] : [options.bucket].flat().map(String);
  const server = new S3Server({
    objects: options.dir ? new DirStorage(String(options.dir)) : undefined,
    credentials: { [accessKey]: { secretAccessKey: secretKey } },
    buckets,
    anonymousRead: options.anonymousRead === true,
    port,
    hostname: String(options.host),
  });
  const url = server.start();
  process.stdout.write(`s3-server listening on ${url} (${options.dir ? `objects in ${options.dir}` : "objects in memory"})\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await server.stop();
  return 0;
}
