/**
 * Flag specs and parsing for every `rlhf <command>`.
 *
 *   --max-steps 10   --max-steps=10   --packing   --no-packing   --packing=false   -h / --help
 *   --config run.yaml      (flat YAML or JSON object; keys camelCase or kebab-case)
 *
 * Precedence: command line > config file > spec default. Paths on the command line (and path
 * defaults) resolve against `cwd`; paths in a config file against the config file's directory.
 * Every user mistake is a {@link CliError} with one line that names the flag or the file and key.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { closest, show } from '../../validate.js';
import { isHubId } from '../../io/hub.js';

export type FlagType = 'string' | 'path' | 'checkpoint' | 'int' | 'number' | 'bool' | 'enum' | 'list';

export interface FlagSpec {
  type: FlagType;
  describe: string;
  default?: unknown;
  required?: boolean;
  /** allowed values of an 'enum' flag */
  values?: readonly string[];
  /** inclusive bounds of an 'int' or 'number' flag */
  min?: number;
  max?: number;
  /** shown in help instead of the type: `--model <dir>` */
  placeholder?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  description?: string;
  /** keys are camelCase; `maxSteps` is `--max-steps` on the command line */
  flags: Record<string, FlagSpec>;
  examples: string[];
  /** one optional positional argument, returned as options[camelCase(name)]; `variadic`: any number, returned as a string[] */
  positional?: {
    name: string;
    describe: string;
    variadic?: boolean;
    /** variadic values are names, not paths (kept as given) */
    names?: boolean;
  };
}

/** A mistake in how the command was called: bad flag, bad value, bad config file. Exit code 2. */
export class CliError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

export const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
export const camel = (name: string): string => name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Flags every command has; a spec may not define them. */
const RESERVED = ['help', 'config'];

export interface ParseResult {
  options: Record<string, unknown>;
  help: boolean;
}

export async function parseCommand(
  spec: CommandSpec,
  argv: string[],
  opts: { cwd?: string } = {},
): Promise<ParseResult> {
  checkSpec(spec);
  const cwd = opts.cwd ?? process.cwd();
  const end = argv.indexOf('--');
  if ((end < 0 ? argv : argv.slice(0, end)).some((a) => a === '-h' || a === '--help'))
    return { options: {}, help: true };

  const cli: Record<string, unknown> = {};
  const positionals: string[] = [];
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || isNumeric(arg)) {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new CliError(`unknown flag ${arg}`);
    const eq = arg.indexOf('=');
    const written = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const label = `--${written}`;

    if (written === 'help') throw new CliError(`--help takes no value, got ${show(inline)}`);
    if (written === 'config') {
      if (configFile !== undefined) throw new CliError('--config was given more than once');
      configFile = inline ?? argv[++i];
      if (!configFile || (inline === undefined && configFile.startsWith('--')))
        throw new CliError('missing value after --config');
      continue;
    }
    let key = camel(written);
    let negated = false;
    if (!spec.flags[key] && written.startsWith('no-') && spec.flags[camel(written.slice(3))]?.type === 'bool') {
      key = camel(written.slice(3));
      negated = true;
    }
    const flag = spec.flags[key];
    if (!flag || written !== (negated ? 'no-' : '') + kebab(key)) {
      const near = closest(written, [...Object.keys(spec.flags).map(kebab), ...RESERVED]);
      throw new CliError(`unknown flag ${label}${near ? ` (did you mean --${near}?)` : ''}`);
    }
    const name = `--${kebab(key)}`;
    if (key in cli && flag.type !== 'list') throw new CliError(`${name} was given more than once`);

    if (flag.type === 'bool') {
      if (negated && inline !== undefined) throw new CliError(`${label} takes no value, got ${show(inline)}`);
      cli[key] = negated ? false : inline === undefined ? true : coerce(flag, inline, name, cwd);
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next === '--' || (next.startsWith('-') && next !== '-' && !isNumeric(next)))
        throw new CliError(`missing value after ${name}`);
      raw = next;
      i++;
    }
    const value = coerce(flag, raw, name, cwd);
    cli[key] = flag.type === 'list' ? [...((cli[key] as string[] | undefined) ?? []), ...(value as string[])] : value;
  }

  const options: Record<string, unknown> = {};
  if (spec.positional?.variadic) {
    options[camel(spec.positional.name)] = spec.positional.names
      ? positionals
      : positionals.map((p) => resolve(cwd, p));
  } else if (spec.positional) {
    if (positionals.length > 1) throw new CliError(`unexpected argument ${show(positionals[1])}`);
    if (positionals.length) options[camel(spec.positional.name)] = positionals[0];
  } else if (positionals.length) {
    throw new CliError(`unexpected argument ${show(positionals[0])}`);
  }

  const fromConfig = configFile === undefined ? {} : await loadConfig(spec, configFile, cwd);
  for (const [key, flag] of Object.entries(spec.flags)) {
    if (key in cli) options[key] = cli[key];
    else if (key in fromConfig) options[key] = fromConfig[key];
    else if (flag.default !== undefined) options[key] = defaultValue(flag, cwd);
    else if (flag.type === 'bool') options[key] = false;
    else if (flag.required) throw new CliError(`missing required flag --${kebab(key)}`);
  }
  if (configFile !== undefined) options.config = resolve(cwd, configFile);
  return { options, help: false };
}

/** Reads a flat YAML/JSON object of flag values; values are checked and paths resolved here. */
async function loadConfig(spec: CommandSpec, file: string, cwd: string): Promise<Record<string, unknown>> {
  const full = resolve(cwd, file);
  let text: string;
  try {
    text = await readFile(full, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new CliError(
      code === 'ENOENT'
        ? `config file ${file} does not exist`
        : `cannot read config file ${file}: ${(err as Error).message}`,
    );
  }
  let data: unknown;
  try {
    if (/\.json$/i.test(file)) data = JSON.parse(text);
    else if (/\.ya?ml$/i.test(file)) data = parseYaml(text);
    else throw new CliError(`config file ${file} must end in .yaml, .yml or .json`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    const first = String((err as Error).message).split('\n')[0];
    throw new CliError(`${file}: not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${first}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data))
    throw new CliError(`${file}: expected a mapping of flag names to values, got ${show(data)}`);

  const base = dirname(full);
  const out: Record<string, unknown> = {};
  const seen: Record<string, string> = {};
  const names = Object.keys(spec.flags);
  for (const [written, value] of Object.entries(data as Record<string, unknown>)) {
    const key = camel(written);
    if (!spec.flags[key] || (written !== key && written !== kebab(key))) {
      if (written === 'config') throw new CliError(`${file}: a config file cannot name another config file`);
      const near = suggestKey(written, [...names, ...names.map(kebab)], names);
      throw new CliError(`${file}: unknown key ${show(written)}${near ? ` (did you mean ${show(near)}?)` : ''}`);
    }
    if (key in seen) throw new CliError(`${file}: ${show(seen[key])} and ${show(written)} set the same flag`);
    seen[key] = written;
    if (value === null) continue; // `key:` with no value leaves the default
    out[key] = coerce(spec.flags[key], value, `${file}: ${show(written)}`, base);
  }
  return out;
}

/** closest() by edit distance, else a flag whose name is the initials of the key (learningRate -> lr). */
function suggestKey(written: string, candidates: string[], names: string[]): string | undefined {
  const near = closest(written, candidates);
  if (near) return near;
  const initials = written
    .split(/[-_]|(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w[0].toLowerCase())
    .join('');
  return initials.length > 1 ? names.find((n) => n.toLowerCase() === initials) : undefined;
}

function isNumeric(s: string): boolean {
  return s.trim() !== '' && Number.isFinite(Number(s));
}

const must = (label: string, expectation: string, value: unknown) =>
  new CliError(`${label} must be ${expectation}, got ${show(value)}`);

function bounds(flag: FlagSpec): string {
  const parts: string[] = [];
  if (flag.min !== undefined) parts.push(`>= ${flag.min}`);
  if (flag.max !== undefined) parts.push(`<= ${flag.max}`);
  return parts.length ? ' ' + parts.join(' and ') : '';
}

/**
 * One value, from the command line (always a string) or a config file (any JSON/YAML value),
 * to the flag's type. `label` is `--max-steps` or `config.yaml: "maxSteps"`; paths resolve
 * against `base`.
 */
function coerce(flag: FlagSpec, value: unknown, label: string, base: string): unknown {
  switch (flag.type) {
    case 'string':
    case 'path':
    case 'checkpoint': {
      if (typeof value === 'number' && flag.type === 'string') return String(value);
      if (typeof value !== 'string' || value === '')
        throw must(label, flag.type === 'string' ? 'a non-empty string' : 'a path', value);
      if (flag.type === 'string') return value;
      return flag.type === 'checkpoint' ? checkpointValue(base, value) : resolve(base, value);
    }
    case 'int':
    case 'number': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && isNumeric(value) ? Number(value) : NaN;
      const kind = flag.type === 'int' ? 'an integer' : 'a number';
      if (!Number.isFinite(n) || (flag.type === 'int' && !Number.isInteger(n)))
        throw must(label, kind + bounds(flag), value);
      if ((flag.min !== undefined && n < flag.min) || (flag.max !== undefined && n > flag.max))
        throw must(label, kind + bounds(flag), value);
      return n;
    }
    case 'bool': {
      if (typeof value === 'boolean') return value;
      const s = typeof value === 'string' ? value.toLowerCase() : undefined;
      if (s === 'true' || s === '1' || s === 'yes') return true;
      if (s === 'false' || s === '0' || s === 'no') return false;
      throw must(label, 'true or false', value);
    }
    case 'enum': {
      const values = flag.values ?? [];
      if (typeof value === 'string' && values.includes(value)) return value;
      const near = typeof value === 'string' ? closest(value, values) : undefined;
      throw new CliError(
        `${label} must be one of ${values.join(', ')}, got ${show(value)}${near ? ` (did you mean ${near}?)` : ''}`,
      );
    }
    case 'list': {
      const items = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value : undefined;
      if (!items || items.some((x) => typeof x !== 'string' && typeof x !== 'number'))
        throw must(label, 'a list of strings (comma-separated or repeated)', value);
      return items.map((x) => String(x).trim()).filter((x) => x !== '');
    }
  }
}

function defaultValue(flag: FlagSpec, cwd: string): unknown {
  const d = flag.default;
  if (flag.type === 'path' && typeof d === 'string') return resolve(cwd, d);
  if (flag.type === 'checkpoint' && typeof d === 'string') return checkpointValue(cwd, d);
  return Array.isArray(d) ? [...d] : d;
}

/** Mistakes in a spec are the programmer's, not the user's: plain Error, thrown on every call. */
function checkSpec(spec: CommandSpec): void {
  for (const [key, flag] of Object.entries(spec.flags)) {
    const where = `command spec "${spec.name}": flag ${key}`;
    if (RESERVED.includes(key)) throw new Error(`${where} is reserved`);
    if (key !== camel(kebab(key)) || /[^a-zA-Z0-9]/.test(key)) throw new Error(`${where} must be camelCase`);
    if (flag.type === 'enum' && !flag.values?.length) throw new Error(`${where} is an enum without values`);
  }
}

/**
 * A 'checkpoint' flag: a folder (resolved against `base` like a path) or, when no such folder
 * exists and the value reads as a hub id (`org/name[@revision]`), the id itself, which the loader
 * looks up in the local Hugging Face cache.
 */
function checkpointValue(base: string, value: string): string {
  const path = resolve(base, value);
  return !existsSync(path) && isHubId(value) ? value : path;
}
