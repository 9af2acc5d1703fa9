/** The 'already mounted' flag of a disk, kept by the bottom store (an S3 object, or a file in --test mode). */
export interface MountFlagStore {
  /** Who holds the flag, or undefined when it is clear. */
  holder(): Promise<string | undefined>;
  /** Sets the flag; refuses (ConfigError) if it is already set, unless `force`. */
  acquire(force: boolean): Promise<void>;
  clear(): Promise<void>;
}
