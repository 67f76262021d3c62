/**
 * `rlhf <command> --help`: usage line, description, one aligned row per flag (placeholder, default,
 * enum values, range), the examples and the --config note. Every line fits in {@link HELP_WIDTH}.
 */
import { kebab, type CommandSpec, type FlagSpec } from './args.js';

export const HELP_WIDTH = 100;
/** The flag column is at most this wide; a longer flag puts its description on the next line. */
const MAX_FLAG_COLUMN = 34;

/** Greedy word wrap of `text` to `width` columns; words longer than a line are hard-split. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (let word of paragraph.split(/\s+/).filter(Boolean)) {
      while (word.length > width) {
        if (line) (lines.push(line), (line = ''));
        lines.push(word.slice(0, width));
        word = word.slice(width);
      }
      if (!line) line = word;
      else if (line.length + 1 + word.length <= width) line += ' ' + word;
      else (lines.push(line), (line = word));
    }
    lines.push(line);
  }
  return lines;
}

function placeholder(flag: FlagSpec): string {
  if (flag.placeholder) return `<${flag.placeholder.replace(/^<|>$/g, '')}>`;
  switch (flag.type) {
    case 'enum': {
      const joined = (flag.values ?? []).join('|');
      return joined.length <= 24 ? `<${joined}>` : '<value>';
    }
    case 'list':
      return '<a,b,...>';
    case 'bool':
      return '';
    default:
      return `<${flag.type}>`;
  }
}

function flagColumn(key: string, flag: FlagSpec): string {
  const name = kebab(key);
  if (flag.type === 'bool') return flag.default === true ? `--[no-]${name}` : `--${name}`;
  return `--${name} ${placeholder(flag)}`;
}

function showDefault(flag: FlagSpec): string {
  const d = flag.default;
  if (Array.isArray(d)) return d.length ? d.join(',') : '(none)';
  if (typeof d === 'string') return d === '' ? '""' : d;
  if (typeof d === 'number' && d !== 0 && Math.abs(d) < 1e-3) return d.toExponential();
  return String(d);
}

function flagNotes(flag: FlagSpec): string {
  const notes: string[] = [];
  if (flag.required) notes.push('required');
  if (flag.type === 'enum' && !placeholder(flag).includes('|')) notes.push(`one of: ${(flag.values ?? []).join(', ')}`);
  if (flag.min !== undefined && flag.max !== undefined) notes.push(`${flag.min} to ${flag.max}`);
  else if (flag.min !== undefined) notes.push(`>= ${flag.min}`);
  else if (flag.max !== undefined) notes.push(`<= ${flag.max}`);
  if (flag.type === 'list') notes.push('comma-separated or repeated');
  if (flag.default !== undefined && !(flag.type === 'bool' && flag.default === false))
    notes.push(`default: ${showDefault(flag)}`);
  else if (flag.default === undefined && !flag.required && flag.type !== 'bool' && !/\bdefault\b/i.test(flag.describe))
    notes.push('default: none'); // every line says what happens without the flag
  return notes.length ? ` (${notes.join('; ')})` : '';
}

/** Rows `  <flag>  <description>` with the description wrapped into its own column. */
function table(rows: [string, string][], width: number): string[] {
  const column = Math.max(...rows.map(([left]) => left.length).filter((n) => n <= MAX_FLAG_COLUMN));
  const indent = 2,
    gap = 2,
    descWidth = width - indent - column - gap;
  const out: string[] = [];
  for (const [left, right] of rows) {
    const desc = wrap(right, descWidth);
    const pad = ' '.repeat(indent + column + gap);
    if (left.length > column) {
      for (const l of wrap(left, width - indent)) out.push(' '.repeat(indent) + l);
      for (const d of desc) out.push(pad + d);
    } else {
      out.push(' '.repeat(indent) + left.padEnd(column + gap) + desc[0]);
      for (const d of desc.slice(1)) out.push(pad + d);
    }
  }
  return out.map((l) => l.trimEnd());
}

/** An example command wrapped with ` \` continuations, indented under the first line. */
function example(text: string, width: number): string[] {
  const lines = wrap(text, width - 2 - 2); // room for the indent and " \"
  return lines.map((l, i) => `  ${i ? '    ' : ''}${l}${i < lines.length - 1 ? ' \\' : ''}`);
}

export function formatHelp(spec: CommandSpec, width = HELP_WIDTH): string {
  const required = Object.entries(spec.flags).filter(([, f]) => f.required && f.default === undefined);
  const usage = [
    `rlhf ${spec.name}`,
    ...required.map(([k, f]) => flagColumn(k, f)),
    '[flags]',
    ...(spec.positional ? [spec.positional.variadic ? `${spec.positional.name}…` : `[${spec.positional.name}]`] : []),
  ].join(' ');
  const out: string[] = [...wrap(`usage: ${usage}`, width), ''];
  out.push(...wrap(spec.summary, width));
  if (spec.description) out.push('', ...wrap(spec.description, width));

  const rows: [string, string][] = [];
  if (spec.positional) rows.push([spec.positional.name, spec.positional.describe]);
  for (const [key, flag] of Object.entries(spec.flags))
    rows.push([flagColumn(key, flag), flag.describe + flagNotes(flag)]);
  rows.push(['--config <file>', 'read flags from a YAML or JSON file (keys like maxSteps or max-steps)']);
  rows.push(['-h, --help', 'show this help']);
  out.push('', 'flags:', ...table(rows, width));

  if (spec.examples.length) {
    out.push('', 'examples:');
    for (const e of spec.examples) out.push(...example(e, width));
  }
  out.push(
    '',
    ...wrap(
      'Every flag can also come from --config <file.yaml|file.json>; flags given on the command line override it. ' +
        "Paths in a config file are relative to the file's directory.",
      width,
    ),
  );
  return out.join('\n') + '\n';
}
