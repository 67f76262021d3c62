/**
 * Metrics as JSON lines: one object per event, appended as it happens (a crash loses at most the
 * line being written). {"stage", "step", "time", ...metrics}. On resume, lines beyond the resumed
 * step are dropped so the file matches the run.
 */
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export class MetricsLog {
  readonly path: string;
  #ready: Promise<void>;

  constructor(path: string, opts: { resumeFromStep?: number } = {}) {
    this.path = path;
    this.#ready = (async () => {
      await mkdir(dirname(path), { recursive: true });
      if (opts.resumeFromStep === undefined) return writeFile(path, '');
      let text = '';
      try {
        text = await readFile(path, 'utf8');
      } catch {
        // no earlier log
      }
      const kept = text.split('\n').filter((l) => {
        if (!l.trim()) return false;
        try {
          return (JSON.parse(l).step ?? 0) <= opts.resumeFromStep!;
        } catch {
          return false;
        }
      });
      await writeFile(path, kept.length ? kept.join('\n') + '\n' : '');
    })();
  }

  async write(record: Record<string, unknown>): Promise<void> {
    await this.#ready;
    await appendFile(this.path, JSON.stringify({ ...record, time: new Date().toISOString() }) + '\n');
  }
}
