/** The man page, s3backer(1), made from the flag table like --help, so the two cannot drift. */
import { VERSION } from "../version.ts";
import { FLAGS, type Flag, type FlagGroup } from "./flags.ts";
import { COMMANDS, commandSpec, type Command } from "./commands.ts";

const COMMAND_NAMES = Object.keys(COMMANDS) as Command[];

const esc = (s: string) => s.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/^\./, "\\&.");

function synopsis(flag: Flag): string {
  const long = `\\fB\\-\\-${esc(flag.name)}\\fR`;
  const names = `${[...(flag.short ?? "")].map((c) => `\\fB\\-${c}\\fR, `).join("")}${long}`;
  if (!flag.value) return names;
  return `${names}${flag.optionalValue ? "[" : ""}=\\fI${esc(flag.value)}\\fR${flag.optionalValue ? "]" : ""}`;
}

export function manPage(): string {
  const groups = new Map<FlagGroup, Flag[]>();
  for (const flag of FLAGS) groups.set(flag.group, [...(groups.get(flag.group) ?? []), flag]);
  const lines = [
    `.TH S3BACKER 1 "" "s3backer ${VERSION}" "User Commands"`,
    ".SH NAME",
    "s3backer \\- a virtual disk whose blocks are objects in an S3 bucket",
    ".SH SYNOPSIS",
    "\\fBs3backer\\fR [\\fIoptions\\fR] \\fIbucket\\fR[/\\fIprefix\\fR] \\fImountpoint\\fR",
    ".br",
    "\\fBs3backer \\-\\-test\\fR [\\fIoptions\\fR] \\fIdirectory\\fR \\fImountpoint\\fR",
    ".br",
    "\\fBs3backer \\-\\-erase\\fR|\\fB\\-\\-reset\\-mounted\\-flag\\fR [\\fIoptions\\fR] \\fIbucket\\fR[/\\fIprefix\\fR]",
    ".br",
    "\\fBs3backer \\-\\-base\\fR=\\fIbucket\\fR/\\fIgolden\\fR[@\\fIsnap\\fR] [\\fIoptions\\fR] \\fIbucket\\fR/\\fIclone\\fR \\fImountpoint\\fR",
    ".br",
    ...COMMAND_NAMES.flatMap((c) => [`\\fBs3backer ${c}\\fR [\\fIoptions\\fR] \\fI${esc(commandSpec(c).args)}\\fR`, ".br"]),
    "\\fBs3backer s3\\-server\\fR [\\fB\\-\\-dir\\fR=\\fIDIR\\fR] [\\fB\\-\\-port\\fR=\\fIN\\fR] \\fB\\-\\-access\\-key\\fR=\\fIID\\fR \\fB\\-\\-secret\\-key\\fR=\\fIKEY\\fR",
    ".SH DESCRIPTION",
    "s3backer mounts a filesystem holding one file of fixed size; each block of the file is one object in an S3 bucket.",
    "Put a filesystem on the file through a loop device to have a disk in object storage.",
    "The command returns once the mount answers; \\fB\\-f\\fR stays in the foreground.",
    "Every option can also be given as \\fB\\-o\\fR \\fIname\\fR=\\fIvalue\\fR, as from /etc/fstab.",
    ".SH COMMANDS",
    "Each command takes the mount's options for the S3 connection and encryption.",
    ...COMMAND_NAMES.flatMap((c) => [".TP", `\\fB${c}\\fR`, esc(commandSpec(c).summary)]),
  ];
  for (const [group, flags] of groups) {
    lines.push(`.SH ${group.toUpperCase()}`);
    for (const flag of flags) {
      lines.push(".TP", synopsis(flag));
      let text = esc(flag.help);
      if (flag.default !== undefined) text += ` (default: ${flag.default === "" ? "empty" : esc(flag.default)})`;
      lines.push(text);
    }
  }
  lines.push(
    ".SH EXIT STATUS",
    "0 on success; 1 on an error (one line on standard error says which); 2 on bad usage; for scrub, 3 when damaged blocks are left and 4 when all the damaged blocks found were repaired.",
    ".SH ENVIRONMENT",
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_PROFILE.",
    ".SH FILES",
    "~/.s3backer_passwd, ~/.aws/credentials, ~/.aws/config.",
  );
  return `${lines.join("\n")}\n`;
}
