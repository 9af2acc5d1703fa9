#!/usr/bin/env bun
/** Entry point: parse, validate, then mount (in the background unless -f) and serve. */
import { helpText } from "./cli/help.ts";
import { parseArgs } from "./cli/parse.ts";
import { buildConfig } from "./config/build-config.ts";
import { checkPaths } from "./app/check-paths.ts";
import { announceReady, applyAllocatorSettings, isDaemonChild, startDaemon } from "./app/daemon.ts";
import { ConfigError, messageOf, UsageError } from "./errors.ts";
import { log } from "./log.ts";
import { erase, resetMountedFlag } from "./app/maintenance.ts";
import { obtainPassword, passwordWarning } from "./app/password.ts";
import { serve } from "./app/serve.ts";
import { checkLogFile } from "./app/own-files.ts";
import { S3_SERVER_COMMAND, s3ServerMain } from "./s3server/cli.ts";
import { runtime } from "./runtime/index.ts";
import { snapshotCommand } from "./app/layers/snapshot.ts";
import { flattenCommand } from "./app/layers/flatten.ts";
import { infoCommand } from "./app/layers/info.ts";
import { resizeCommand } from "./app/layers/resize.ts";
import { VERSION } from "./version.ts";

/** Subcommands, `s3backer <name> [their arguments]`: each parses what follows its name. */
const COMMANDS: ReadonlyMap<string, (argv: string[]) => Promise<number>> = new Map([
  [S3_SERVER_COMMAND, s3ServerMain],
  ["snapshot", snapshotCommand],
  ["flatten", flattenCommand],
  ["info", infoCommand],
  ["resize", resizeCommand],
]);

async function main(argv: string[]): Promise<number> {
  const command = COMMANDS.get(argv[0] ?? "");
  if (command) return command(argv.slice(1));
  const args = parseArgs(argv);
  if (args.values.has("help")) {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  if (args.values.has("version")) {
    process.stdout.write(`s3backer ${VERSION} (${runtime.name})\n`);
    return 0;
  }
  const config = buildConfig(args);
  checkPaths(config);
  const child = isDaemonChild();
  // A mount in the foreground may start itself again in place first: the warnings come after that.
  const untuned = config.mode === "mount" ? applyAllocatorSettings(config.foreground) : undefined;
  if (!child) for (const warning of config.warnings) process.stderr.write(`s3backer: warning: ${warning}\n`);
  if (config.mode !== "mount") {
    log.configure({ kind: "stderr" }, config.debug, config.logFormat);
    return config.mode === "erase" ? erase(config, log) : resetMountedFlag(config, log);
  }
  let prompted: string | undefined;
  const encryption = config.codec.encryption;
  if (encryption) {
    const warning = passwordWarning(encryption);
    if (warning && !child) process.stderr.write(`s3backer: ${warning}\n`);
    const got = obtainPassword(encryption);
    encryption.password = got.password;
    if (got.prompted) prompted = got.password;
  }
  if (!config.foreground && !child) return startDaemon(argv, prompted);

  log.configure({ kind: "stderr" }, config.debug, config.logFormat);
  // Checked before anything is mounted: the switch to it comes only once the mount is up.
  if (child && config.logFile) checkLogFile(config.typed.logFile!, config.logFile);
  if (untuned) log.debug(`running with the allocator's default settings: ${untuned}`);
  return serve(config, (readyMessage) => {
    // Until now the parent relayed our stderr to the user; from here on we log on our own. The
    // ready message is logged before the parent is told, so the log holds it once the command returns.
    if (child) log.configure(config.logFile ? { kind: "file", path: config.logFile } : { kind: "syslog" }, config.debug);
    log.info(readyMessage);
    if (child) announceReady();
  });
}

function fail(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`s3backer: ${err.message} (see 's3backer --help')\n`);
    return 2;
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`s3backer: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`s3backer: ${messageOf(err)}\n`);
  if (process.env.S3BACKER_DEBUG) console.error(err);
  return 1;
}

const code = await main(process.argv.slice(2)).catch(fail);
process.exit(code);
