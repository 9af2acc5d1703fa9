/**
 * Every command-line flag in one table: the parser, `--help` and the validation all read it,
 * so they cannot drift apart. Names and defaults follow the original s3backer.
 */
import { MAX_AGE_DELAYS } from "../store/block-cache/write-back-queue.ts";

export type FlagGroup =
  | "Disk layout"
  | "S3 connection"
  | "Consistency"
  | "Block cache"
  | "Compression and encryption"
  | "Maintenance"
  | "NBD"
  | "Mount and process";

export interface Flag {
  /** Long name without dashes, exactly as the original spells it. */
  readonly name: string;
  /** One-letter aliases, each letter one (`f` is -f; `h?` is -h and -?). */
  readonly short?: string;
  /** Placeholder of the value; absent for on/off flags. */
  readonly value?: string;
  /** The value may be left out (`--compress` or `--compress=9`). */
  readonly optionalValue?: boolean;
  /** The default: shown in `--help`, and the value src/config/ uses (through flagDefault). */
  readonly default?: string;
  readonly group: FlagGroup;
  readonly help: string;
}

export const FLAGS: readonly Flag[] = [
  // Disk layout
  { name: "blockSize", value: "SIZE", default: "4k", group: "Disk layout", help: "Block size: one block is one object, a power of two from 512 to 2G (suffixes k, M, G)" },
  { name: "size", value: "SIZE", group: "Disk layout", help: "Size of the backed file (suffixes k, M, G, T); auto-detected from an existing disk" },
  { name: "prefix", value: "STRING", default: "", group: "Disk layout", help: "Prefix for object names within the bucket" },
  { name: "base", value: "BUCKET/DISK[@SNAPSHOT]", group: "Disk layout", help: "Make a new disk that reads through this one (a clone: nothing copied; writes stay in the new disk); later mounts need no --base" },
  { name: "blockHashPrefix", group: "Disk layout", help: "Prepend a hash to block names to spread them over the key space" },
  { name: "filename", value: "NAME", default: "file", group: "Disk layout", help: "Name of the backed file in the mounted directory" },
  { name: "statsFilename", value: "NAME", default: "stats", group: "Disk layout", help: "Name of the statistics file; empty for none (delete it to reset counters)" },
  { name: "fileMode", value: "MODE", default: "0600 (0400 with --readOnly)", group: "Disk layout", help: "Permissions of the backed file, octal" },
  { name: "readOnly", group: "Disk layout", help: "Refuse every write with 'Read-only file system'" },
  { name: "listBlocks", group: "Disk layout", help: "List existing blocks in the background while the disk is in use, so absent blocks then cost no request (progress in the stats file)" },
  { name: "sharedDiskMode", group: "Disk layout", help: "For cluster filesystems (GFS2, OCFS2) shared by several mounts: no caching at all, and the mounted flag admits other shared mounts" },
  { name: "listBlocksThreads", value: "NUM", default: "16", group: "Disk layout", help: "Parallel list requests for --listBlocks (0 is accepted without it)" },
  { name: "force", group: "Disk layout", help: "Mount even if auto-detected sizes differ or the disk looks mounted elsewhere" },
  { name: "noAutoDetect", group: "Disk layout", help: "Do not read block and file size from the disk's metadata" },
  { name: "test", group: "Disk layout", help: "Local test mode: the bucket argument is a directory (':memory:' keeps blocks in RAM)" },
  { name: "test-errors", group: "Disk layout", help: "In --test mode, fail one block read or write in a hundred with an I/O error" },
  { name: "test-delays", group: "Disk layout", help: "In --test mode, delay each block read and write by 0 to 200 ms at random" },
  { name: "test-discard", group: "Disk layout", help: "In --test mode, store nothing: writes are dropped and every block reads as zeros" },

  // S3 connection
  { name: "baseURL", value: "URL", default: "https://s3.amazonaws.com/", group: "S3 connection", help: "Base URL of the S3 service (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)" },
  { name: "region", value: "REGION", default: "us-east-1", group: "S3 connection", help: "AWS region for request signing (else AWS_REGION, AWS_DEFAULT_REGION); as a flag it also turns on --vhost for AWS, as upstream does" },
  { name: "vhost", group: "S3 connection", help: "Virtual-hosted style URLs (bucket.host/key)" },
  { name: "no-vhost", group: "S3 connection", help: "Path-style URLs (host/bucket/key): the default, unless --region is given" },
  { name: "ssl", group: "S3 connection", help: "Require https (the default base URL already uses it)" },
  { name: "insecure", group: "S3 connection", help: "Do not verify the server's TLS certificate" },
  { name: "cacert", value: "FILE", group: "S3 connection", help: "CA certificate file for TLS" },
  { name: "accessId", value: "ID", group: "S3 connection", help: "S3 access key ID (else --accessFile, then AWS_* variables)" },
  { name: "accessKey", value: "KEY", group: "S3 connection", help: "S3 secret access key" },
  { name: "accessKeyEnv", value: "VARNAME", group: "S3 connection", help: "Take the secret access key from this environment variable" },
  { name: "accessFile", value: "FILE", default: "~/.s3backer_passwd", group: "S3 connection", help: "File of 'accessId:accessKey' lines" },
  { name: "accessEC2IAM", value: "ROLE", group: "S3 connection", help: "Take credentials from the EC2 instance metadata for ROLE" },
  { name: "accessEC2IAM-IMDSv2", group: "S3 connection", help: "Accepted for the original's command lines: the instance metadata is always read IMDSv2 style" },
  { name: "accessType", value: "TYPE", default: "private", group: "S3 connection", help: "ACL for new objects: private, public-read, public-read-write, authenticated-read" },
  { name: "authVersion", value: "TYPE", default: "aws4", group: "S3 connection", help: "Request signing: aws4 only" },
  { name: "storageClass", value: "TYPE", group: "S3 connection", help: "Storage class of written blocks" },
  { name: "rrs", group: "S3 connection", help: "Reduced redundancy storage (deprecated: --storageClass=REDUCED_REDUNDANCY)" },
  { name: "sse", value: "TYPE", group: "S3 connection", help: "Server-side encryption: AES256 or aws:kms" },
  { name: "sse-key-id", value: "ID", group: "S3 connection", help: "KMS key ID for --sse=aws:kms" },
  { name: "timeout", value: "SECONDS", default: "30", group: "S3 connection", help: "Time limit of one HTTP attempt (0: none)" },
  { name: "initialRetryPause", value: "MILLIS", default: "200", group: "S3 connection", help: "First pause before a retry (0: the first retry at once, the next after 1 ms)" },
  { name: "maxRetryPause", value: "MILLIS", default: "30000", group: "S3 connection", help: "Total pause allowed over all retries of one request" },
  { name: "maxUploadSpeed", value: "BITSPERSEC", default: "0", group: "S3 connection", help: "Upload bandwidth limit of each transfer, in bits per second (suffixes k, M, G: 1M is 1048576; 0: none)" },
  { name: "maxDownloadSpeed", value: "BITSPERSEC", default: "0", group: "S3 connection", help: "Download bandwidth limit of each transfer, in bits per second (suffixes k, M, G; 0: none)" },
  { name: "defaultContentEncoding", value: "STRING", group: "S3 connection", help: "Content-Encoding assumed when a server drops the header" },
  { name: "debug-http", group: "S3 connection", help: "Log HTTP request and response headers" },
  { name: "http11", group: "S3 connection", help: "Accepted for the original's command lines: requests always use HTTP/1.1" },
  { name: "noCurlCache", group: "S3 connection", help: "Open a new connection for every request (no keep-alive), for debugging" },
  { name: "ipTOS", value: "VALUE", group: "S3 connection", help: "IP type of service of the HTTP sockets: refused with the reason, the runtime's HTTP client cannot set it" },

  // Consistency
  { name: "md5CacheSize", value: "NUM", default: "10000", group: "Consistency", help: "Blocks whose MD5 is remembered after a write to catch stale reads (0 disables the guard)" },
  { name: "md5CacheTime", value: "MILLIS", default: "10000", group: "Consistency", help: "How long a written block's MD5 is remembered (0 = forever)" },
  { name: "minWriteDelay", value: "MILLIS", default: "0", group: "Consistency", help: "Minimum time between two writes of the same block (for services that may apply them out of order)" },

  // Block cache
  { name: "blockCacheSize", value: "NUM", default: "1000", group: "Block cache", help: "Blocks held in the cache (0 disables it; at most the disk's blocks are used)" },
  { name: "blockCacheThreads", value: "NUM", default: "20", group: "Block cache", help: "Parallel write-back and read-ahead transfers" },
  { name: "blockCacheWriteDelay", value: "MILLIS", default: "250", group: "Block cache", help: `A dirty block is written back once it has rested this long (and at least every ${MAX_AGE_DELAYS} delays)` },
  { name: "blockCacheTimeout", value: "MILLIS", default: "0", group: "Block cache", help: "Drop clean blocks idle this long (0 = never)" },
  { name: "blockCacheMaxDirty", value: "NUM", default: "0", group: "Block cache", help: "Most dirty blocks at once; writers wait (0, or more than the cache holds: the cache size)" },
  { name: "blockCacheSync", group: "Block cache", help: "Write through: writes return once stored (needs --blockCacheWriteDelay=0)" },
  { name: "blockCacheFile", value: "FILE", group: "Block cache", help: "Keep the cache in this file so it survives a restart" },
  { name: "blockCacheMemory", value: "SIZE", default: "64M", group: "Block cache", help: "With --blockCacheFile: memory for the blocks in use (at least 64 blocks); the rest are read from the file" },
  { name: "blockCacheNoVerify", group: "Block cache", help: "Trust a reloaded cache file without checking it against S3" },
  { name: "blockCacheRecoverDirtyBlocks", group: "Block cache", help: "Write back dirty blocks found in the cache file at start-up" },
  { name: "blockCacheNumProtected", value: "NUM", default: "0", group: "Block cache", help: "Evict the first NUM blocks of the disk (where file systems keep their journal) only when nothing else can go" },
  { name: "blockCacheFileAdvise", group: "Block cache", help: "Tell the kernel not to keep the cache file's pages in its page cache (posix_fadvise), so blocks are not cached twice" },
  { name: "readAhead", value: "NUM", default: "4", group: "Block cache", help: "Fetches kept in flight ahead of a sequential reader (more while it still has to wait for them)" },
  { name: "readAheadTrigger", value: "NUM", default: "2", group: "Block cache", help: "Sequential block reads that start read-ahead (0 and 1: the first read does)" },

  // Compression and encryption
  { name: "compress", value: "ALGORITHM", optionalValue: true, group: "Compression and encryption", help: "Compress new blocks: deflate (the default) or zstd, optionally :LEVEL; a bare number is a deflate level, as in 1.x" },
  { name: "compress-level", value: "LEVEL", group: "Compression and encryption", help: "Level of --compress: deflate 1 (fast) to 9 (small), 0 none, -1 the default; zstd -7 to 22, 0 the default (default: 6 for deflate, 3 for zstd)" },
  { name: "encrypt", value: "CIPHER", optionalValue: true, group: "Compression and encryption", help: "Encrypt and authenticate blocks (default AES-128-CBC; implies --compress)" },
  { name: "password", value: "PASSWORD", group: "Compression and encryption", help: "Encryption password (visible to other users: prefer --passwordFile)" },
  { name: "passwordFile", value: "FILE", group: "Compression and encryption", help: "File holding the encryption password" },
  { name: "keyLength", value: "NUM", default: "0", group: "Compression and encryption", help: "Override the cipher key length (0: the cipher's own)" },
  { name: "keyWrap", group: "Compression and encryption", help: "With --encrypt, for a new disk: a random data key, kept wrapped by the password in the object s3backer-key, so that 's3backer passwd' can change the password without rewriting blocks (the original s3backer cannot read such a disk)" },

  // Maintenance
  { name: "erase", group: "Maintenance", help: "Delete every block of the disk and exit (asks first unless --force)" },
  { name: "reset-mounted-flag", group: "Maintenance", help: "Clear the 'already mounted' flag and exit" },
  { name: "newPasswordFile", value: "FILE", group: "Maintenance", help: "For 'passwd': file holding the new password (else it is asked twice on the terminal)" },
  { name: "repair-from", value: "PATH", group: "Maintenance", help: "For 'scrub': rewrite damaged blocks from this image of the disk (a file or block device of the disk's size)" },
  { name: "scrub-rate", value: "SIZE", default: "0", group: "Maintenance", help: "For 'scrub': check at most this many bytes of the disk per second (suffixes k, M, G; 0: no limit)" },
  { name: "scrub-threads", value: "NUM", default: "16", group: "Maintenance", help: "For 'scrub': blocks read at once" },

  // NBD
  { name: "nbd", group: "NBD", help: "Serve the disk over NBD instead of mounting it: the second argument is unix:PATH, tcp:HOST:PORT or /dev/nbdX" },
  { name: "nbd-tls", value: "MODE", default: "require with a --nbd-tls-* file, else off", group: "NBD", help: "TLS for NBD clients: require it (refuse clients that do not start it), on (offer it) or off" },
  { name: "nbd-tls-cert", value: "FILE", group: "NBD", help: "Serve NBD over TLS with this X.509 certificate (PEM, the chain may follow it)" },
  { name: "nbd-tls-key", value: "FILE", group: "NBD", help: "The private key of --nbd-tls-cert (PEM, unencrypted)" },
  { name: "nbd-tls-ca", value: "FILE", group: "NBD", help: "With --nbd-tls-cert: admit only clients whose certificate this CA (PEM) signed" },
  { name: "nbd-tls-psk", value: "FILE", group: "NBD", help: "Serve NBD over TLS 1.3 with pre-shared keys: psktool's file of identity:hexkey lines" },
  { name: "nbd-flag", value: "STRING", group: "NBD", help: "The original's nbdkit flag: refused, the NBD server is built in" },
  { name: "nbd-param", value: "STRING", group: "NBD", help: "The original's nbdkit parameter: refused, the NBD server is built in" },

  // Mount and process
  { name: "foreground", short: "f", group: "Mount and process", help: "Stay in the foreground and log to stderr" },
  { name: "debug", short: "d", group: "Mount and process", help: "Log debug messages (-d also stays in the foreground, as the original)" },
  { name: "directIO", group: "Mount and process", help: "Bypass the kernel page cache for the backed file" },
  { name: "options", short: "o", value: "OPT[,OPT...]", group: "Mount and process", help: "Mount options: FUSE ones (allow_other, allow_root, uid=, gid=, umask=, ro, entry_timeout=, attr_timeout=, negative_timeout=, max_read=, ...) or any flag above as name=value; a flag given twice takes the last value" },
  { name: "logFile", value: "FILE", group: "Mount and process", help: "Log here when running in the background (else the system log)" },
  { name: "logFormat", value: "FORMAT", default: "text", group: "Mount and process", help: "Log lines as text or json (one object a line, for log collectors)" },
  { name: "statsFormat", value: "FORMAT", default: "text", group: "Mount and process", help: "The stats file as text or json" },
  { name: "statsFileMirror", value: "FILE", group: "Mount and process", help: "Also write the stats to this plain file every interval (delete it to reset the counters)" },
  { name: "statsFileMirrorInterval", value: "MILLIS", default: "1000", group: "Mount and process", help: "How often --statsFileMirror is rewritten (10 at least: 0 means 10)" },
  { name: "metrics", value: "[HOST:]PORT", group: "Mount and process", help: "Serve Prometheus metrics at http://HOST:PORT/metrics (host 127.0.0.1 unless given; port 0 picks one, named in the log)" },
  { name: "pidFile", value: "FILE", group: "Mount and process", help: "Write the daemon's process ID here" },
  { name: "unmountTimeout", value: "SECONDS", default: "0", group: "Mount and process", help: "At unmount or SIGTERM, blocks not yet stored are retried until stored; give up after this long (0 = never; they stay in --blockCacheFile if given)" },
  { name: "quiet", group: "Mount and process", help: "No progress output" },
  { name: "singleThreaded", short: "s", group: "Mount and process", help: "Handle one FUSE request at a time (FUSE's -s)" },
  { name: "version", short: "vV", group: "Mount and process", help: "Print the version and exit" },
  { name: "help", short: "h?", group: "Mount and process", help: "Print this help and exit" },
  { name: "configFile", short: "F", value: "FILE", group: "Mount and process", help: "Read more flags from FILE, one a line (# starts a comment), in place of this flag; may nest" },
];

export const FLAG_BY_NAME: ReadonlyMap<string, Flag> = new Map(FLAGS.map((f) => [f.name, f]));

/** A flag's default as the table writes it: the one place each default is written. */
export function flagDefault(name: string): string {
  const value = FLAG_BY_NAME.get(name)?.default;
  if (value === undefined) throw new Error(`--${name} has no default in the flag table`);
  return value;
}
