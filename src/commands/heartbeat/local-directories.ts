import { statfs } from 'node:fs';
import { nowOf, type Clock } from '../../core/clock.js';

/**
 * Linux `statfs` magic numbers (statfs(2)) of the filesystems whose data is on this machine: disks,
 * memory, and overlays of them. Network filesystems (NFS, CIFS, SMB, …) and FUSE are absent on purpose.
 */
const LOCAL_FILESYSTEMS: ReadonlySet<number> = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0x52654973, // reiserfs
  0x3153464a, // jfs
  0xca451a4e, // bcachefs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0x794c7630, // overlayfs (container images)
]);

/** `fs.statfs` as this class calls it; replaceable in tests. */
export type StatFs = (path: string, callback: (error: NodeJS.ErrnoException | null, stats: { readonly type: number }) => void) => void;

/** How long a directory's answer is trusted: something may be mounted over it later. */
const RECHECK_AFTER_MS = 60_000;

interface Answer {
  /** `null` while the first statfs is under way. */
  local: boolean | null;
  checkedAt: number;
}

/**
 * Which directories are on a local filesystem, where reading a small file synchronously costs a few
 * microseconds and cannot stall: the heartbeat commands read such files synchronously (an asynchronous
 * read is three trips through libuv's thread pool, about ten times the CPU). A directory on a network
 * filesystem, whose read could hang the whole event loop, or one not asked about yet, is read
 * asynchronously. Asking is asynchronous and happens in the background on first use.
 */
export class LocalDirectories {
  readonly #answers = new Map<string, Answer>();
  readonly #now: () => number;
  readonly #statfs: StatFs;
  /** Linux only: elsewhere statfs's numbers mean other things, and every read stays asynchronous. */
  readonly #enabled: boolean;

  constructor(options: { clock?: Clock; platform?: NodeJS.Platform; statfs?: StatFs } = {}) {
    this.#now = nowOf(options.clock);
    this.#statfs = options.statfs ?? statfs;
    this.#enabled = (options.platform ?? process.platform) === 'linux';
  }

  /** True when `dir` is known to be local; otherwise false, and the answer is looked up for next time. */
  isLocal(dir: string): boolean {
    if (!this.#enabled) return false;
    const answer = this.#answers.get(dir);
    const now = this.#now();
    if (answer !== undefined && (answer.local === null || now - answer.checkedAt < RECHECK_AFTER_MS)) return answer.local === true;
    const pending: Answer = { local: answer?.local ?? null, checkedAt: now };
    this.#answers.set(dir, pending);
    this.#statfs(dir, (error, stats) => {
      // A directory that cannot be asked about (missing, no permission) is treated as remote until it can.
      pending.local = error === null && LOCAL_FILESYSTEMS.has(Number(stats.type));
      pending.checkedAt = this.#now();
    });
    return answer?.local === true;
  }
}
