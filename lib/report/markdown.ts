/** A short Markdown summary of a run: headline numbers, the policy table and the stage timings. */
import { checkObject } from '../validate.js';
import { bestPolicy, delta, duration, num, pct, policyNames, winTieLoss } from './format.js';
import type { DemoSummary } from './types.js';

/** A table cell: pipes escaped, line breaks flattened, Markdown/HTML specials neutralised. */
function cell(v: unknown): string {
  return (
    String(v)
      .replace(/\r?\n|\r/g, ' ')
      .replace(/([\\|`*_[\]<>])/g, '\\$1')
      .trim() || ' '
  );
}

function table(head: string[], rows: string[][], numeric: boolean[]): string {
  const line = (r: string[]) => `| ${r.join(' | ')} |`;
  return [line(head), line(numeric.map((n) => (n ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

export function renderMarkdown(summary: DemoSummary, opts: { title?: string } = {}): string {
  const s = checkObject('renderMarkdown', 'summary', summary) as unknown as DemoSummary;
  checkObject('renderMarkdown', 'summary.rm', s.rm);
  checkObject('renderMarkdown', 'summary.sft', s.sft);
  checkObject('renderMarkdown', 'summary.policies', s.policies);
  const names = policyNames(s);
  const best = bestPolicy(s);
  const out: string[] = [`# ${cell(opts.title ?? 'RLHF run summary')}`, ''];
  if (s.task)
    out.push(
      `${cell(s.task.description)}${typeof s.task.noise === 'number' ? ` (annotator label noise ${pct(s.task.noise)})` : ''}`,
      '',
    );
  out.push(`- **RM accuracy:** ${pct(s.rm.accuracy)}`);
  out.push(
    `- **Best win rate vs SFT:** ${best ? `${pct(best.policy.winRate)} (${cell(best.name)}, gold score ${num(best.policy.goldScore)})` : 'n/a'}`,
  );
  out.push(`- **SFT gold score:** ${num(s.sft.goldScore)}`);
  out.push(`- **Total time:** ${duration(s.seconds)}`, '');
  if (names.length) {
    const rows = names.map((n) => {
      const p = s.policies[n];
      const w = winTieLoss(p);
      return [
        cell(n),
        pct(w.win),
        pct(w.tie),
        pct(w.loss),
        pct(p.winRate),
        `${num(p.goldScore)} (${delta(p.goldScore, s.sft.goldScore) || 'n/a'})`,
        num(p.kl),
        num(p.length),
      ];
    });
    rows.unshift([
      'sft (baseline)',
      '—',
      '—',
      '—',
      '—',
      num(s.sft.goldScore),
      '0',
      typeof s.sft.length === 'number' ? num(s.sft.length) : '—',
    ]);
    out.push(
      '## Policies against SFT',
      '',
      table(['policy', 'win', 'tie', 'loss', 'win rate (ties ½)', 'gold score (vs SFT)', 'KL', 'length'], rows, [
        false,
        true,
        true,
        true,
        true,
        true,
        true,
        true,
      ]),
      '',
    );
    out.push(
      'Win, tie and loss sum to 100%; the win rate counts ties half. KL: per response from SFT, a Monte-Carlo k1 estimate (can be negative when the policy barely moved).',
      '',
    );
  }
  const stages = (s.stages ?? []).filter((x) => x && typeof x === 'object');
  if (stages.length) {
    const rows = stages.map((x) => [cell(x.name), duration(x.seconds), cell(x.line ?? '')]);
    out.push('## Stages', '', table(['stage', 'time', 'summary'], rows, [false, true, false]), '');
  }
  return out.join('\n');
}
