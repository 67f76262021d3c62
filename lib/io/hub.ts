/**
 * Checkpoints named by a Hugging Face hub id (`Qwen/Qwen2.5-0.5B-Instruct`, optionally
 * `@revision`) found in a local Hugging Face cache, without any network access.
 *
 * Cache roots, in order (as huggingface_hub): `$HF_HUB_CACHE`, `$HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. A model lives in
 * `<root>/models--<org>--<name>/`; `refs/<revision>` (default `main`) holds the commit hash of a
 * snapshot, and `snapshots/<hash>/` the files (a revision that is itself a commit hash names the
 * snapshot directly).
 */
import { statSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString } from '../validate.js';

/** `org/name` or `org/name@revision`, as the hub spells repository ids. */
const HUB_ID = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([A-Za-z0-9._/-]+))?$/;

/** Whether `s` reads as a hub id rather than a path (`./x/y`, `/x/y`, `x/y/z` are paths). */
export function isHubId(s: string): boolean {
  const m = HUB_ID.exec(s);
  return m !== null && !s.includes('..') && !(m[3] ?? '').split('/').includes('..');
}

/** The cache roots searched, in order (see the module comment). */
export function hubCacheRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const roots: string[] = [];
  if (env.HF_HUB_CACHE) roots.push(env.HF_HUB_CACHE);
  if (env.HF_HOME) roots.push(join(env.HF_HOME, 'hub'));
  else roots.push(join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface', 'hub'));
  return [...new Set(roots)];
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The snapshot folder of hub id `id` in the first cache root that has it, or undefined; `looked`
 * receives each place tried (for the error message).
 */
export function findInHubCache(
  id: string,
  env: NodeJS.ProcessEnv = process.env,
  looked: string[] = [],
): string | undefined {
  const m = HUB_ID.exec(id);
  if (m === null) return undefined;
  const [, org, name, revision = 'main'] = m;
  for (const root of hubCacheRoots(env)) {
    const repo = join(root, `models--${org}--${name}`);
    const ref = join(repo, 'refs', revision);
    let hash: string | undefined;
    try {
      hash = readFileSync(ref, 'utf8').trim();
    } catch {
      if (/^[0-9a-f]{40}$/.test(revision)) hash = revision;
    }
    if (hash === undefined || !/^[0-9A-Za-z._-]+$/.test(hash)) {
      looked.push(ref);
      continue;
    }
    const snapshot = join(repo, 'snapshots', hash);
    if (isDir(snapshot)) return snapshot;
    looked.push(snapshot);
  }
  return undefined;
}

/**
 * A checkpoint folder from a path or a hub id: an existing directory, an absolute path or a
 * string that is not a hub id is returned as it is (the caller reports a missing file); a hub id
 * that is not a local directory is looked up in the cache, and when absent there, an RlhfError IO
 * names every place it looked. `fn` names the caller in the message.
 */
export function resolveCheckpoint(fn: string, pathOrId: string, env: NodeJS.ProcessEnv = process.env): string {
  checkString(fn, 'dir', pathOrId);
  if (isDir(pathOrId) || isAbsolute(pathOrId) || !isHubId(pathOrId)) return pathOrId;
  const looked: string[] = [];
  const found = findInHubCache(pathOrId, env, looked);
  if (found !== undefined) return found;
  throw new RlhfError(
    ErrorCode.IO,
    `${fn}: ${pathOrId} is neither a directory nor in the local Hugging Face cache (no network access is attempted); looked for ${looked.join(', ')}. ` +
      'Download it first (e.g. `huggingface-cli download ' +
      pathOrId.split('@')[0] +
      '`) or set HF_HUB_CACHE / HF_HOME.',
  );
}
