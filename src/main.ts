#!/usr/bin/env bun
/** Entry point: parse, validate, then mount (in the background unless -f) and serve. */
import { commandHelp, helpText } from "./cli/help.ts";
import { parseArgs } from "./cli/parse.ts";
import { buildConfig } from "./config/build-config.ts";
import { checkPaths } from "./app/check-paths.ts";
import { announceReady, applyAllocatorSettings, isDaemonChild, startDaemon } from "./app/daemon.ts";
import { ConfigError, messageOf, UsageError } from "./errors.ts";
import { log, type Logger } from "./log.ts";
import type { Config, Mode } from "./config/settings.ts";
import { erase, resetMountedFlag } from "./app/maintenance.ts";
import { obtainPassword, passwordWarning } from "./app/password.ts";
import { changePassword } from "./app/passwd.ts";
import { scrub } from "./app/scrub.ts";
import { serve } from "./app/serve.ts";
import { checkLogFile } from "./app/own-files.ts";
import { S3_SERVER_COMMAND, s3ServerMain } from "./s3server/cli.ts";
import { runtime } from "./runtime/index.ts";
import { snapshotCommand } from "./app/layers/snapshot.ts";
import { flattenCommand } from "./app/layers/flatten.ts";
import { infoCommand } from "./app/layers/info.ts";
import { resizeCommand } from "./app/layers/resize.ts";
import { VERSION } from "./version.ts";

/** What runs instead of a mount, by mode: --erase, --reset-mounted-flag and the commands (cli/commands.ts). */
const NOT_A_MOUNT: Record<Exclude<Mode, "mount">, (config: Config, log: Logger) => Promise<number>> = {
  erase,
  "reset-mounted-flag": resetMountedFlag,
  snapshot: snapshotCommand,
  flatten: flattenCommand,
  info: infoCommand,
  resize: resizeCommand,
  passwd: changePassword,
  scrub,
};

async function main(argv: string[]): Promise<number> {
  if (argv[0] === S3_SERVER_COMMAND) return s3ServerMain(argv.slice(1));
  const args = parseArgs(argv);
  if (args.values.has("help")) {
    process.stdout.write(`${args.command ? commandHelp(args.command) : helpText()}\n`);
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
    return NOT_A_MOUNT[config.mode](config, log);
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
