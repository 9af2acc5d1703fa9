/** The 'already mounted' flag of a disk, kept by the bottom store (an S3 object, or a file in --test mode). */
export interface MountFlagStore {
  /** Who holds the flag, or undefined when it is clear. */
  holder(): Promise<string | undefined>;
  /** The mount token of the flag's holder, or undefined when it is clear. */
  token(): Promise<number | undefined>;
  /** Sets the flag with a new token, which it returns; refuses (ConfigError) if it is already set, unless `force`. */
  acquire(force: boolean): Promise<number>;
  clear(): Promise<void>;
}

export const newToken = () => (Math.random() * 2 ** 32) >>> 0 || 1;
