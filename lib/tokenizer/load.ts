/**
 * Loading a tokenizer from a checkpoint directory. Every failure is an RlhfError that names the
 * file: IO when a required file cannot be read, FORMAT when a file is not valid JSON or not a
 * tokenizer this engine supports.
 */
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString, show } from '../validate.js';
import { BYTE_SPECIAL_TOKENS, BYTE_TOKENIZER_CLASS, ByteTokenizer } from './byte.js';
import { HfTokenizer } from './hf.js';
import { resolveCheckpoint } from '../io/hub.js';
import type { Tokenizer } from './types.js';

const FN = 'loadTokenizer';

async function readText(path: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return undefined;
    const why = code === 'ENOENT' ? 'no such file' : err instanceof Error ? err.message : String(err);
    throw new RlhfError(ErrorCode.IO, `${FN}: cannot read ${path}: ${why}`, { cause: err });
  }
}

async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  const text = await readText(path, required);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${FN}: ${path} is not valid JSON (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new RlhfError(ErrorCode.FORMAT, `${FN}: ${path}: expected a JSON object, received ${show(value)}`);
  return value as Record<string, unknown>;
}

/**
 * Loads the tokenizer of a checkpoint directory (or of a hub id `org/name[@revision]` found in the
 * local Hugging Face cache, see io/hub.ts):
 * - tokenizer_config.json with `"tokenizer_class": "RlhfByteTokenizer"`: the {@link ByteTokenizer}
 *   (its `additional_special_tokens` are the extra special tokens);
 * - otherwise a Hugging Face tokenizer: tokenizer.json (required), tokenizer_config.json,
 *   chat_template.jinja and generation_config.json (optional).
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  checkString(FN, 'dir', dir);
  dir = resolveCheckpoint(FN, dir);
  const configPath = join(dir, 'tokenizer_config.json');
  const config = await readJsonObject(configPath, false);
  if (config?.tokenizer_class === BYTE_TOKENIZER_CLASS) return loadByte(config, configPath);
  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizer = await readJsonObject(tokenizerPath, true);
  const generationConfig = await readJsonObject(join(dir, 'generation_config.json'), false);
  const chatTemplate = await readText(join(dir, 'chat_template.jinja'), false);
  return new HfTokenizer(
    { tokenizer: tokenizer!, config: config ?? {}, generationConfig, chatTemplate },
    { tokenizer: tokenizerPath, config: configPath },
  );
}

function loadByte(config: Record<string, unknown>, path: string): ByteTokenizer {
  const extra = config.additional_special_tokens ?? [];
  if (!Array.isArray(extra) || !extra.every((s) => typeof s === 'string'))
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${FN}: ${path}: expected additional_special_tokens to be an array of strings, received ${show(extra)}`,
    );
  let tokenizer: ByteTokenizer;
  try {
    tokenizer = new ByteTokenizer({ extraSpecialTokens: extra });
  } catch (err) {
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${FN}: ${path}: bad additional_special_tokens (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
  // The built-in ids are fixed; a file that disagrees was not written by this engine's version.
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null && typeof decoder === 'object') {
    for (const [i, token] of BYTE_SPECIAL_TOKENS.entries()) {
      const entry = (decoder as Record<string, { content?: unknown }>)[String(256 + i)];
      if (entry !== undefined && entry?.content !== token)
        throw new RlhfError(
          ErrorCode.FORMAT,
          `${FN}: ${path}: added_tokens_decoder["${256 + i}"] is ${show(entry?.content)}, but the byte tokenizer has ${token} there`,
        );
    }
  }
  return tokenizer;
}

/** The files a checkpoint folder's tokenizer may consist of (what loadTokenizer reads, and the HF extras). */
const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'generation_config.json',
  'special_tokens_map.json',
];

/**
 * Writes a checkpoint's tokenizer into `dir` (Model.save): `tokenizer` when given; else the
 * tokenizer files of `sourceDir` (the folder the model was loaded from); else, when the model's
 * vocabulary is the byte tokenizer's, the byte tokenizer (tokenizer_config.json naming it). With
 * none of these nothing is written (loadTokenizer then names the missing tokenizer.json).
 */
export async function saveTokenizerFiles(
  dir: string,
  tokenizer: { save(dir: string): Promise<void> } | undefined,
  sourceDir: string | undefined,
  vocabSize: number,
): Promise<void> {
  if (tokenizer) return tokenizer.save(dir);
  if (sourceDir) {
    let copied = 0;
    for (const f of TOKENIZER_FILES) {
      try {
        await copyFile(join(sourceDir, f), join(dir, f));
        copied++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          throw new RlhfError(
            ErrorCode.IO,
            `Model.save: cannot copy ${join(sourceDir, f)}: ${(err as Error).message}`,
            { cause: err },
          );
      }
    }
    if (copied) return;
  }
  const byte = new ByteTokenizer();
  if (vocabSize === byte.vocabSize) await byte.save(dir);
}
