/**
 * Crash-safe file and directory replacement. A reader (or a process started after a crash) sees
 * either the old content or the new content, never a partial write:
 *
 *   writeFileAtomic:  write `.<name>.tmp-<pid>-<random>` in the same directory, fsync it, rename it
 *                     over the target, fsync the directory (so the rename itself is durable).
 *   replaceDirAtomic: fill `<dir>.tmp-<pid>-<random>`, fsync everything in it, then swap it in.
 *
 * Failures are `RlhfError(ErrorCode.IO)` naming the path, with the system error as `cause`; the
 * temporary files are removed first. Argument errors throw synchronously (TypeError).
 */
import { randomBytes } from 'node:crypto';
import { access, lstat, mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString, typeError } from '../validate.js';

/** The most bytes handed to one write(2) call (Node rejects lengths above 2^31 - 1). */
const MAX_WRITE = 1 << 30;

/** Error codes from fsync on a directory that mean "not supported here" (some file systems, Windows). */
const DIR_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF', 'EACCES']);

function suffix(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

function ioError(what: string, err: unknown): RlhfError {
  if (err instanceof RlhfError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new RlhfError(ErrorCode.IO, `${what}: ${detail}`, { cause: err });
}

/** Writes every byte of `chunk`, looping over short writes. */
async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let done = 0;
  while (done < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, done, Math.min(chunk.byteLength - done, MAX_WRITE));
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten}`);
    done += bytesWritten;
  }
}

/** fsync of a directory, so that renames and creations inside it survive a crash. Best effort where the platform cannot. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (!DIR_SYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** fsync of every regular file and directory under `dir` (symbolic links are not followed). */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) await syncTree(p);
    else if (entry.isFile()) {
      const fh = await open(p, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}

/**
 * Replaces the file at `path` with `data` (a string is written as UTF-8; an array of chunks is
 * written in order) so that a crash leaves either the old file or the complete new one. The new
 * file gets the default mode for new files (0o666 minus the umask), not the old file's mode.
 *
 * @throws RlhfError `ERR_RLHF_IO` naming `path` (the temporary file is removed first).
 */
export function writeFileAtomic(path: string, data: Uint8Array | string | Uint8Array[]): Promise<void> {
  checkString('writeFileAtomic', 'path', path);
  const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  if (!Array.isArray(chunks) || !chunks.every((c) => c instanceof Uint8Array))
    throw typeError('writeFileAtomic', 'data', 'a Uint8Array, a string or an array of Uint8Array', data);
  return writeChunks(path, chunks);
}

async function writeChunks(path: string, chunks: Uint8Array[]): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${suffix()}`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    for (const chunk of chunks) await writeAll(fh, chunk);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
    await syncDir(dir);
  } catch (err) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw ioError(`cannot write ${path}`, err);
  }
}

/**
 * Replaces the directory `dir` with one built by `fill(tmpDir)`. `fill` writes into a fresh sibling
 * `<dir>.tmp-<pid>-<random>`; when it resolves, every file in it is fsynced and it is swapped in:
 * an existing `dir` is renamed to `<dir>.old-<pid>-<random>`, the temporary directory is renamed
 * to `dir`, and the old one is removed. Parent directories are created as needed.
 *
 * Crash window: POSIX has no atomic exchange of two non-empty directories (Node does not expose
 * renameat2(RENAME_EXCHANGE)), so between the two renames `dir` does not exist. A crash in that
 * window (two rename calls, microseconds) leaves the old content in `<dir>.old-*` and the complete
 * new content in `<dir>.tmp-*`; nothing is lost, but recovery means renaming one of them back.
 *
 * If `fill` throws, the temporary directory is removed, `dir` is untouched and `fill`'s error is
 * rethrown as is. Other failures are `RlhfError` `ERR_RLHF_IO` naming `dir`; if the second rename
 * fails, the old directory is moved back first.
 */
export function replaceDirAtomic(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  checkString('replaceDirAtomic', 'dir', dir);
  if (typeof fill !== 'function') throw typeError('replaceDirAtomic', 'fill', 'a function', fill);
  return replaceDir(dir, fill);
}

async function replaceDir(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const id = suffix();
  const tmp = `${dir}.tmp-${id}`;
  const old = `${dir}.old-${id}`;
  const parent = dirname(dir);
  try {
    await mkdir(parent, { recursive: true });
    await mkdir(tmp);
  } catch (err) {
    throw ioError(`cannot create a temporary directory for ${dir}`, err);
  }
  const discardTmp = () => rm(tmp, { recursive: true, force: true }).catch(() => {});
  try {
    await fill(tmp);
  } catch (err) {
    await discardTmp();
    throw err;
  }
  let hadOld = false;
  try {
    await syncTree(tmp);
    const st = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (st && !st.isDirectory()) throw new Error('it exists and is not a directory');
    if (st) {
      await rename(dir, old);
      hadOld = true;
    }
    await rename(tmp, dir);
  } catch (err) {
    if (hadOld) await rename(old, dir).catch(() => {});
    await discardTmp();
    throw ioError(`cannot replace ${dir}`, err);
  }
  try {
    await syncDir(parent);
    if (hadOld) await rm(old, { recursive: true, force: true });
  } catch (err) {
    throw ioError(`replaced ${dir}, but could not finish (sync the parent or remove ${old})`, err);
  }
}

/** True when `path` exists (any kind of entry). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
