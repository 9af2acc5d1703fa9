/**
 * Every flag of upstream master's option table, in its forms (a suffixed, a plain and a boundary
 * value), with the value each parses to here (`is`) and, where that differs, what upstream makes of
 * the same form (`up`, with why); and the refused forms. test/unit/flag-values.test.ts parses them
 * here; test/mount/flag-values.test.ts has upstream parse them too.
 */
import type { Config } from "../../src/config/settings.ts";

/** The environment both programs parse the forms in. */
export const ENV = { S3B_TEST_KEY: "from-env" };

export type Value = string | number | boolean | undefined;
/** One form: its arguments, upstream's name for the setting (dump_config), ours in upstream's units, the value both give. */
export interface Form {
  args: string[];
  key: string;
  ours: (c: Config) => Value;
  is: Value;
  /** What upstream makes of it when that differs (`"refused"`: it exits with an error), and why ours differs. */
  up?: Value;
}
const f = (args: string[], key: string, ours: (c: Config) => Value, is: Value, up?: Value): Form => ({ args, key, ours, is, ...(up !== undefined ? { up } : {}) });
export const REFUSED = "refused";
const s3 = (c: Config) => c.s3;
const cache = (c: Config) => c.cache;
const secret = (c: Config) => (c.s3.accessKey ? "****" : "");

export const FORMS: Form[] = [
  f(["--accessFile=/etc/s3b-passwd"], "accessFile", (c) => s3(c).accessFile, "/etc/s3b-passwd"),
  f(["--accessId=AKID", "--accessKey=SECRET"], "accessId", (c) => s3(c).accessId, "AKID"),
  f(["--accessId=AKID", "--accessKey=SECRET"], "accessKey", secret, "****"),
  f(["--accessId=AKID", "--accessKeyEnv=S3B_TEST_KEY"], "accessKey", secret, "****"),
  f(["--accessType=public-read"], "accessType", (c) => s3(c).putHeaders["x-amz-acl"], "public-read"),
  f([], "accessType", (c) => s3(c).putHeaders["x-amz-acl"], "private"),
  f(["--accessEC2IAM=role1"], "ec2iam_role", (c) => s3(c).accessEC2IAM, "role1"),
  // Ours always reads the instance metadata IMDSv2 style (the flag is accepted); upstream's default is v1.
  f(["--accessEC2IAM=role1", "--accessEC2IAM-IMDSv2"], "ec2iam_mode", (c) => (s3(c).accessEC2IAM ? "IMDSv2" : "N/A"), "IMDSv2"),
  f(["--accessEC2IAM=role1"], "ec2iam_mode", (c) => (s3(c).accessEC2IAM ? "IMDSv2" : "N/A"), "IMDSv2", "IMDSv1"),
  f(["--authVersion=aws4"], "authVersion", () => "aws4", "aws4"),
  f(["--listBlocks"], "list_blocks", (c) => c.listBlocks, true),
  f(["--listBlocksThreads=3"], "list_blocks_threads", (c) => s3(c).listBlocksThreads, 3),
  f(["--listBlocksThreads=1000"], "list_blocks_threads", (c) => s3(c).listBlocksThreads, 1000),
  // 0 without --listBlocks: nothing lists; --erase lists one at a time here (upstream's would list nothing).
  f(["--listBlocksThreads=0"], "list_blocks_threads", (c) => s3(c).listBlocksThreads, 1, 0),
  f(["--baseURL=http://127.0.0.1:9000/"], "baseURL", (c) => s3(c).baseURL, "http://127.0.0.1:9000/"),
  // The missing slash is added here; upstream refuses the URL.
  f(["--baseURL=http://127.0.0.1:9000"], "baseURL", (c) => s3(c).baseURL, "http://127.0.0.1:9000/", REFUSED),
  f(["--ssl"], "baseURL", (c) => s3(c).baseURL, "https://s3.amazonaws.com/"),
  f(["--region=eu-west-1"], "region", (c) => s3(c).region, "eu-west-1"),
  f(["--sse=AES256"], "sse", (c) => s3(c).putHeaders["x-amz-server-side-encryption"], "AES256"),
  f(["--sse=aws:kms", "--sse-key-id=key1"], "sse-key-id", (c) => s3(c).putHeaders["x-amz-server-side-encryption-aws-kms-key-id"], "key1"),
  // Ignored without --sse=aws:kms, as upstream's man page says (it keeps the text, and sends nothing).
  f(["--sse-key-id=key1"], "sse-key-id", (c) => s3(c).putHeaders["x-amz-server-side-encryption-aws-kms-key-id"], undefined, "key1"),
  // AWS's default KMS key here; upstream wants --sse-key-id.
  f(["--sse=aws:kms"], "sse", (c) => s3(c).putHeaders["x-amz-server-side-encryption"], "aws:kms", REFUSED),
  f(["--blockCacheSize=20"], "block_cache_size", (c) => cache(c).size, 20),
  f(["--blockCacheSize=0"], "block_cache_size", (c) => cache(c).size, 0),
  // The most blocks a disk has; used up to this disk's count, which upstream clamps to at once (1T of 4k blocks).
  f(["--blockCacheSize=4294967296"], "block_cache_size", (c) => Math.min(cache(c).size, 2 ** 28), 2 ** 28, 0),
  f(["--blockCacheSync", "--blockCacheWriteDelay=0"], "block_cache_sync", (c) => cache(c).sync, true),
  f(["--blockCacheThreads=3"], "block_cache_threads", (c) => cache(c).threads, 3),
  f(["--blockCacheThreads=1000"], "block_cache_threads", (c) => cache(c).threads, 1000),
  f(["--blockCacheTimeout=5000"], "block_cache_timeout", (c) => cache(c).timeoutMs, 5000),
  f(["--blockCacheTimeout=0"], "block_cache_timeout", (c) => cache(c).timeoutMs, 0),
  f(["--blockCacheTimeout=2147483647"], "block_cache_timeout", (c) => cache(c).timeoutMs, 2147483647),
  f(["--blockCacheWriteDelay=0"], "block_cache_write_delay", (c) => cache(c).writeDelayMs, 0),
  f(["--blockCacheWriteDelay=17895697"], "block_cache_write_delay", (c) => cache(c).writeDelayMs, 17895697),
  f(["--blockCacheMaxDirty=10"], "block_cache_max_dirty", (c) => cache(c).maxDirty, 10),
  // 0 means the cache size in both; here the setting holds what it means.
  f(["--blockCacheMaxDirty=0"], "block_cache_max_dirty", (c) => cache(c).maxDirty, 1000, 0),
  // More than the cache: clamped with a warning; upstream keeps the number (and has no more dirty blocks than it caches).
  f(["--blockCacheSize=10", "--blockCacheMaxDirty=20"], "block_cache_max_dirty", (c) => cache(c).maxDirty, 10, 20),
  f(["--blockCacheFile=/var/cache/s3b", "--blockCacheRecoverDirtyBlocks"], "recover_dirty_blocks", (c) => cache(c).recoverDirty, true),
  f(["--readAhead=8"], "read_ahead", (c) => cache(c).readAhead, 8),
  f(["--readAhead=0"], "read_ahead", (c) => cache(c).readAhead, 0),
  f(["--readAheadTrigger=3"], "read_ahead_trigger", (c) => cache(c).readAheadTrigger, 3),
  // 0 starts read-ahead at the first read, as 1 does: the setting holds that.
  f(["--readAheadTrigger=0"], "read_ahead_trigger", (c) => cache(c).readAheadTrigger, 1, 0),
  f(["--blockCacheFile=/var/cache/s3b"], "block_cache_cache_file", (c) => cache(c).file, "/var/cache/s3b"),
  f(["--blockCacheFile=/var/cache/s3b", "--blockCacheNoVerify"], "block_cache_no_verify", (c) => cache(c).noVerify, true),
  f(["--blockCacheFile=/var/cache/s3b", "--blockCacheFileAdvise"], "fadvise", (c) => cache(c).fileAdvise, true),
  f(["--blockSize=4k"], "block_size", (c) => c.blockSize, 4096),
  f(["--blockSize=128M"], "block_size", (c) => c.blockSize, 128 * 2 ** 20),
  f(["--blockSize=2G"], "block_size", (c) => c.blockSize, 2 ** 31),
  // Plain numbers are sizes here too; upstream wants a suffix.
  f(["--blockSize=4096"], "block_size", (c) => c.blockSize, 4096, REFUSED),
  f(["--maxUploadSpeed=80M"], "max_upload", (c) => s3(c).maxUploadBps, 80 * 2 ** 20),
  f(["--maxUploadSpeed=1G"], "max_upload", (c) => s3(c).maxUploadBps, 2 ** 30),
  f(["--maxUploadSpeed=1000000"], "max_upload", (c) => s3(c).maxUploadBps, 1000000, REFUSED),
  f(["--maxUploadSpeed=0"], "max_upload", (c) => s3(c).maxUploadBps, 0, REFUSED),
  f(["--maxDownloadSpeed=256k"], "max_download", (c) => s3(c).maxDownloadBps, 256 * 1024),
  f(["--maxDownloadSpeed=10m"], "max_download", (c) => s3(c).maxDownloadBps, 10 * 2 ** 20),
  f(["--md5CacheSize=1000", "--md5CacheTime=5000"], "md5_cache_size", (c) => c.consistency.md5CacheSize, 1000),
  f(["--md5CacheSize=1000", "--md5CacheTime=5000"], "md5_cache_time", (c) => c.consistency.md5CacheTimeMs, 5000),
  f(["--md5CacheSize=0", "--md5CacheTime=0"], "md5_cache_size", (c) => c.consistency.md5CacheSize, 0),
  f(["--md5CacheSize=100", "--md5CacheTime=5000", "--minWriteDelay=500"], "min_write_delay", (c) => c.consistency.minWriteDelayMs, 500),
  f(["--noCurlCache"], "noCurlCache", (c) => !s3(c).keepAlive, true),
  f(["--fileMode=0644"], "file_mode", (c) => `0${c.fileMode.toString(8)}`, "0644"),
  f(["--fileMode=00644"], "file_mode", (c) => `0${c.fileMode.toString(8)}`, "0644"),
  f(["--fileMode=644"], "file_mode", (c) => `0${c.fileMode.toString(8)}`, "0644"),
  f(["--fileMode=7777"], "file_mode", (c) => `0${c.fileMode.toString(8)}`, "07777"),
  f(["--readOnly"], "file_mode", (c) => `0${c.fileMode.toString(8)}`, "0400"),
  f(["--readOnly"], "read_only", (c) => c.readOnly, true),
  f(["--filename=disk.img"], "filename", (c) => c.filename, "disk.img"),
  f(["--initialRetryPause=500"], "initial_retry_pause", (c) => s3(c).initialRetryPauseMs, 500),
  f(["--initialRetryPause=0"], "initial_retry_pause", (c) => s3(c).initialRetryPauseMs, 0),
  f(["--maxRetryPause=60000"], "max_retry_pause", (c) => s3(c).maxRetryPauseMs, 60000),
  f(["--initialRetryPause=0", "--maxRetryPause=0"], "max_retry_pause", (c) => s3(c).maxRetryPauseMs, 0),
  f(["--blockHashPrefix"], "blockHashPrefix", (c) => c.blockHashPrefix, true),
  f(["--prefix=disks/one/"], "prefix", (c) => c.prefix, "disks/one/"),
  f(["--prefix="], "prefix", (c) => c.prefix, ""),
  f(["--defaultContentEncoding=deflate"], "defaultContentEncoding", (c) => c.codec.defaultEncoding, "deflate"),
  f(["--size=1G"], "file_size", (c) => c.fileSize, 2 ** 30),
  f(["--size=1073741824"], "file_size", (c) => c.fileSize, 2 ** 30, REFUSED),
  f(["--statsFilename=s"], "stats_filename", (c) => c.statsFilename, "s"),
  f(["--statsFilename="], "stats_filename", (c) => c.statsFilename, ""),
  f(["--statsFileMirror=/run/s3b.stats"], "stats_mirror_path", (c) => c.statsFileMirror, "/run/s3b.stats"),
  f(["--statsFileMirrorInterval=5000"], "stats_mirror_interval", (c) => c.statsFileMirrorIntervalMs, 5000),
  // Upstream's 0 rewrites the file without a pause: here every 10 ms (with a warning).
  f(["--statsFileMirror=/run/s3b.stats", "--statsFileMirrorInterval=0"], "stats_mirror_interval", (c) => c.statsFileMirrorIntervalMs, 10, 0),
  f(["--compress"], "compress", (c) => c.codec.compression?.algorithm, "deflate"),
  f(["--compress=zstd"], "compress", (c) => c.codec.compression?.algorithm, "zstd"),
  f(["--compress=9"], "compress", (c) => c.codec.compression?.algorithm, "deflate"),
  f(["--compress=0"], "compress", (c) => c.codec.compression?.algorithm, "deflate"),
  f(["--compress=-1"], "compress", (c) => c.codec.compression?.algorithm, "deflate"),
  f(["--compress=zstd", "--compress-level=0"], "compress", (c) => c.codec.compression?.algorithm, "zstd"),
  f(["--compress=deflate", "--compress-level=-1"], "compress", (c) => c.codec.compression?.algorithm, "deflate"),
  f(["--encrypt", "--password=pw"], "encryption", (c) => c.codec.encryption?.cipher.name, "AES-128-CBC"),
  f(["--encrypt=aes-256-cbc", "--password=pw"], "encryption", (c) => c.codec.encryption?.cipher.name, "AES-256-CBC"),
  f(["--encrypt", "--password=pw"], "password", (c) => (c.codec.encryption?.password ? "****" : ""), "****"),
  f(["--encrypt", "--password=pw", "--keyLength=64"], "key_length", (c) => c.codec.encryption?.keyLength, 64),
  // 0 is the cipher's own length in both: the setting holds it.
  f(["--encrypt", "--password=pw", "--keyLength=0"], "key_length", (c) => c.codec.encryption?.keyLength, 16, 0),
  f(["--timeout=30"], "timeout", (c) => s3(c).timeoutMs / 1000, 30),
  f(["--timeout=0"], "timeout", (c) => s3(c).timeoutMs / 1000, 0),
  f(["--timeout=2147483"], "timeout", (c) => s3(c).timeoutMs / 1000, 2147483),
  f(["--directIO"], "directIO", (c) => c.directIO, true),
  f(["--sharedDiskMode"], "shared disk mode", (c) => c.sharedDisk, true),
  f(["--sharedDiskMode"], "directIO", (c) => c.directIO, true),
  // -o spells every flag, and the last one given wins, in either spelling.
  f(["-o", "blockCacheSize=20"], "block_cache_size", (c) => cache(c).size, 20),
  f(["-o", "blockSize=64k,size=1G"], "block_size", (c) => c.blockSize, 65536),
  f(["--blockCacheSize=10", "-o", "blockCacheSize=20"], "block_cache_size", (c) => cache(c).size, 20),
  f(["-o", "blockCacheSize=20", "--blockCacheSize=10"], "block_cache_size", (c) => cache(c).size, 10),
  f(["--timeout=5", "--timeout=6"], "timeout", (c) => s3(c).timeoutMs / 1000, 6),
];

/**
 * [arguments, the offending one last; what ours says after the form as typed; upstream's name for
 * the setting and what it parses the form to, or "refused"].
 */
export const REFUSED_FORMS: [string[], RegExp, string, Value][] = [
  [["--listBlocksThreads=1001"], /expected a whole number from 0 to 1000/, "list_blocks_threads", 1001],
  [["--listBlocksThreads=4k"], /expected a whole number/, "list_blocks_threads", 4], // upstream reads the digits
  [["--listBlocks", "--listBlocksThreads=0"], /--listBlocks needs at least 1/, "", REFUSED],
  [["--blockCacheSize=1k"], /expected a whole number from 0 to 4294967296/, "block_cache_size", 1],
  // Upstream wraps it to 32 bits (1215752191), then clamps that to the disk's blocks.
  [["--blockCacheSize=99999999999"], /expected a whole number from 0 to 4294967296/, "block_cache_size", 2 ** 28],
  [["--blockCacheThreads=1001"], /expected a whole number from 0 to 1000/, "block_cache_threads", 1001],
  [["--blockCacheThreads=100000"], /expected a whole number from 0 to 1000/, "block_cache_threads", 100000],
  [["--blockCacheThreads=0"], /the block cache needs at least 1/, "", REFUSED],
  [["--blockCacheTimeout=-1"], /expected a whole number from 0 to 2147483647/, "block_cache_timeout", 4294967295],
  [["--blockCacheTimeout=2147483648"], /expected a whole number from 0 to 2147483647/, "block_cache_timeout", 2147483648],
  [["--blockCacheWriteDelay=17895698"], /expected a whole number from 0 to 17895697/, "block_cache_write_delay", 17895698],
  [["--blockSize=4G"], /must be from 512 to 2G/, "block_size", 4096], // upstream wraps it to 0, then takes its default
  [["--blockSize=3k"], /power of two/, "", REFUSED],
  [["--size=0"], /must be greater than zero/, "", REFUSED],
  [["--maxUploadSpeed=80Mbps"], /not a size/, "", REFUSED],
  [["--fileMode=0999"], /expected octal permissions/, "file_mode", "00"], // upstream reads the 0 and stops
  [["--fileMode=rw"], /expected octal permissions/, "", REFUSED],
  [["--timeout=30s"], /expected a whole number from 0 to 2147483/, "timeout", 30],
  [["--timeout=2147484"], /expected a whole number from 0 to 2147483/, "timeout", 2147484],
  [["--initialRetryPause=1s"], /expected a whole number/, "initial_retry_pause", 1],
  [["--initialRetryPause=500", "--maxRetryPause=100"], /must be at least --initialRetryPause=500/, "", REFUSED],
  [["--md5CacheSize=100", "--minWriteDelay=5000", "--md5CacheTime=1000"], /must be at least --minWriteDelay/, "", REFUSED],
  // Upstream parses it, and (its man page says) refuses it once the cipher is set up.
  [["--encrypt", "--password=pw", "--keyLength=8"], /must be 0 or from 16/, "key_length", 8],
  [["--encrypt", "--password=pw", "--keyLength=65"], /expected a whole number from 0 to 64/, "", REFUSED],
  [["--compress=10"], /expected a deflate level from -1 to 9/, "", REFUSED],
  [["--authVersion=aws2"], /only aws4 signing is supported/, "authVersion", "aws2"],
  [["--ipTOS=lowdelay"], /cannot be honoured here/, "ip_tos", "lowdelay"],
];
