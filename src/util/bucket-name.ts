/** Bucket names as S3 services take them (and the original's, which allows more than AWS does). */
export const isBucketName = (name: string) => /^[a-z0-9][a-z0-9.\-_]{1,254}$/i.test(name);
