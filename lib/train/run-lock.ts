/**
 * One writer per output folder: `<outputDir>/.lock`, a small JSON file {pid, host, startedAt,
 * procStart} made with link(2) from a complete temporary file, so it exists either whole or not
 * at all, and two processes cannot both create it.
 *
 * A lock whose process is gone (same host, and the pid is not running, or is running but started
 * at another time: the pid was reused) is stale: it is taken over with a warning. A lock held by a
 * live process, or one on another host (its pid cannot be checked from here), is an
 * `ERR_RLHF_BUSY` error naming the holder and the lock file.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';

export const LOCK_FILE = '.lock';

export interface LockInfo {
  pid: number;
  host: string;
  startedAt: string;
  /** the process's start time in clock ticks since boot (Linux /proc/<pid>/stat field 22), to detect a reused pid */
  procStart?: string;
}

/** Field 22 of /proc/<pid>/stat, or undefined off Linux or when the process does not exist. */
function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may contain spaces: split after its ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** True when the lock's process is still running (on this host). */
function holderAlive(info: LockInfo): boolean {
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: the process exists (owned by another user)
  }
  if (info.procStart !== undefined) {
    const now = processStartTicks(info.pid);
    if (now !== undefined && now !== info.procStart) return false; // the pid was reused
  }
  return true;
}

function describe(info: LockInfo): string {
  return `pid ${info.pid} on ${info.host}, since ${info.startedAt}`;
}

/** Removes `.lock.tmp-<pid>-*` and `.lock.stale-<pid>-*` files of processes that are gone (a kill while taking the lock). */
async function removeDeadTemps(dir: string): Promise<void> {
  for (const n of await readdir(dir)) {
    const m = /^\.lock\.(?:tmp|stale)-(\d+)-[0-9a-f]+$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !holderAlive({ pid: Number(m[1]), host: '', startedAt: '' }))
      await rm(join(dir, n), { force: true });
  }
}

export class RunLock {
  readonly path: string;
  #released = false;

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Takes the lock of `dir` (created if missing). `warn` receives the line about a stale lock
   * taken over. `fn` names the caller in errors.
   * @throws RlhfError ERR_RLHF_BUSY when another live process holds it
   */
  static async acquire(dir: string, fn: string, warn: (message: string) => void): Promise<RunLock> {
    await mkdir(dir, { recursive: true });
    const path = join(dir, LOCK_FILE);
    const info: LockInfo = {
      pid: process.pid,
      host: hostname(),
      startedAt: new Date().toISOString(),
      procStart: processStartTicks(process.pid),
    };
    const tmp = join(dir, `${LOCK_FILE}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    await writeFile(tmp, JSON.stringify(info) + '\n');
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await link(tmp, path);
          await removeDeadTemps(dir);
          return new RunLock(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
            throw new RlhfError(ErrorCode.IO, `${fn}: cannot create the lock file ${path}: ${(err as Error).message}`, {
              cause: err,
            });
        }
        let holder: LockInfo | undefined;
        try {
          holder = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
        } catch {
          holder = undefined; // removed meanwhile (retry), or not ours to judge (below)
        }
        if (holder === undefined || typeof holder.pid !== 'number') {
          if (attempt < 3) continue;
          throw new RlhfError(
            ErrorCode.BUSY,
            `${fn}: ${dir} is locked by ${path}, which cannot be read; if no run is writing there, delete that file`,
          );
        }
        if (holder.host !== info.host)
          throw new RlhfError(
            ErrorCode.BUSY,
            `${fn}: ${dir} is in use by another run (${describe(holder)}; lock file ${path}); its process cannot be checked from ${info.host}: if it has ended, delete the lock file`,
          );
        if (holderAlive(holder))
          throw new RlhfError(
            ErrorCode.BUSY,
            `${fn}: ${dir} is in use by another run (${describe(holder)}; lock file ${path}); wait for it to finish or choose another output folder`,
          );
        if (attempt >= 3)
          throw new RlhfError(
            ErrorCode.BUSY,
            `${fn}: could not take over the stale lock ${path} (${describe(holder)})`,
          );
        warn(`taking over a stale lock of ${dir} (${describe(holder)}: that process is gone)`);
        // move it aside and check that what moved is the stale lock: if another process took it
        // over first, its fresh lock is put back and the next attempt sees a live holder
        const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
        try {
          await rename(path, aside);
        } catch {
          continue;
        }
        const moved = await readFile(aside, 'utf8')
          .then((t) => JSON.parse(t) as LockInfo)
          .catch(() => undefined);
        if (moved && (moved.pid !== holder.pid || moved.startedAt !== holder.startedAt))
          await link(aside, path).catch(() => {});
        await unlink(aside).catch(() => {});
      }
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Removes the lock file (only once; later calls do nothing). */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await rm(this.path, { force: true });
  }
}
