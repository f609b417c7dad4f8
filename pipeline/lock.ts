/**
 * Exclusive file locks (advisory `flock` through `Deno.FsFile.lock`), so any
 * number of runs, in one process or many, can share one runs folder and
 * cache. The operating system releases a lock when its process dies, so a
 * lock that can be taken tells that its holder is gone (a killed run).
 *
 * A lock file may be deleted (by `gc`) while another process waits on it; a
 * lock is therefore only held once the locked file is still the one at the
 * path, and taken again otherwise.
 *
 * @module
 */

import { dirname } from "node:path";

/** A held lock; {@linkcode FileLock.release} (or the process's end) frees it. */
export class FileLock {
  readonly path: string;
  #file: Deno.FsFile | undefined;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Takes the lock if it is free.
   *
   * @param path The lock file (created, with its folder, when missing).
   * @returns The held lock, or undefined when another holder has it.
   */
  static async tryAcquire(path: string): Promise<FileLock | undefined> {
    for (let attempt = 0; attempt < 10; attempt++) {
      await Deno.mkdir(dirname(path), { recursive: true });
      const file = await Deno.open(path, { create: true, write: true });
      if (!(await file.tryLock(true))) {
        file.close();
        return undefined;
      }
      // The file may have been deleted and made anew while we waited: lock the one at the path.
      const held = await file.stat();
      const now = await Deno.stat(path).catch(() => undefined);
      if (now && now.ino === held.ino && now.dev === held.dev) return new FileLock(path, file);
      file.close();
    }
    throw new Error(`Cannot lock "${path}": it keeps being deleted and made anew`);
  }

  /**
   * Waits for the lock, polling, so that an abort signal can stop the wait.
   *
   * @param path The lock file.
   * @param options `signal` stops waiting (throws its reason); `onWait` is
   *   called once when the lock is busy; `pollMs` (default 200).
   * @returns The held lock.
   */
  static async acquire(
    path: string,
    options: { signal?: AbortSignal; onWait?: () => void; pollMs?: number } = {},
  ): Promise<FileLock> {
    let waited = false;
    while (true) {
      options.signal?.throwIfAborted();
      const lock = await FileLock.tryAcquire(path);
      if (lock) return lock;
      if (!waited) options.onWait?.();
      waited = true;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 200));
    }
  }

  /** True while this lock is held. */
  get held(): boolean {
    return this.#file !== undefined;
  }

  /** Frees the lock; safe to call twice. */
  release(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  /** Deletes the lock file, then frees the lock (for clean-up of locks nobody needs). */
  async releaseAndDelete(): Promise<void> {
    await Deno.remove(this.path).catch(() => {});
    this.release();
  }
}

/**
 * True when someone holds the lock at `path` (false when the file is missing).
 *
 * @param path The lock file.
 */
export async function isLocked(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
  } catch {
    return false;
  }
  const lock = await FileLock.tryAcquire(path);
  lock?.release();
  return lock === undefined;
}
