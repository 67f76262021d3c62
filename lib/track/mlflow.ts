/**
 * A minimal MLflow tracking client over its REST API (version 2.0), enough to follow a training
 * run in an MLflow-compatible server:
 *
 *   POST <uri>/api/2.0/mlflow/runs/create     {experiment_id, run_name, start_time, tags}  → {run: {info: {run_id}}}
 *   POST <uri>/api/2.0/mlflow/runs/log-batch  {run_id, metrics: [{key, value, timestamp, step}], params: [{key, value}]}
 *   POST <uri>/api/2.0/mlflow/runs/update     {run_id, status, end_time}
 *
 * Metrics are buffered and sent in batches of at most 1000 (the server's limit), in order, one
 * request at a time. Non-finite values are left out (JSON has no NaN). A failed request is an
 * RlhfError naming the endpoint and the server's answer; it surfaces from flush()/close().
 */
import { ErrorCode, RlhfError } from '../errors.js';
import { checkString } from '../validate.js';

export interface MlflowMetric {
  key: string;
  value: number;
  /** milliseconds since the epoch */
  timestamp: number;
  step: number;
}

const MAX_METRICS = 1000,
  MAX_PARAMS = 100,
  MAX_PARAM_VALUE = 500;

/** MLflow keys allow letters, digits, _ - . space : / only. */
export function mlflowKey(key: string): string {
  return key.replace(/[^\w\-. :/]/g, '_');
}

export class MlflowRun {
  readonly uri: string;
  readonly runId: string;
  #pending: MlflowMetric[] = [];
  #chain: Promise<void> = Promise.resolve();
  #error: unknown;
  #closed = false;

  private constructor(uri: string, runId: string) {
    this.uri = uri;
    this.runId = runId;
  }

  /** Creates a run in `experimentId` (default "0", MLflow's default experiment). */
  static async create(
    uri: string,
    opts: { experimentId?: string; runName?: string; tags?: Record<string, string> } = {},
  ): Promise<MlflowRun> {
    checkString('MlflowRun.create', 'uri', uri);
    let base: URL;
    try {
      base = new URL(uri);
    } catch {
      throw new TypeError(`MlflowRun.create: expected uri to be an http(s) URL, received ${JSON.stringify(uri)}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new TypeError(`MlflowRun.create: expected uri to be an http(s) URL, received ${JSON.stringify(uri)}`);
    const root = uri.replace(/\/+$/, '');
    const body = {
      experiment_id: opts.experimentId ?? '0',
      start_time: Date.now(),
      ...(opts.runName ? { run_name: opts.runName } : {}),
      tags: Object.entries(opts.tags ?? {}).map(([key, value]) => ({ key: mlflowKey(key), value: String(value) })),
    };
    const res = (await post(root, 'runs/create', body)) as {
      run?: { info?: { run_id?: unknown; run_uuid?: unknown } };
    };
    const id = res?.run?.info?.run_id ?? res?.run?.info?.run_uuid;
    if (typeof id !== 'string' || !id)
      throw new RlhfError(
        ErrorCode.FORMAT,
        `mlflow ${root}/api/2.0/mlflow/runs/create: the answer has no run.info.run_id`,
      );
    return new MlflowRun(root, id);
  }

  /** Logs parameters (values cut to 500 characters), in batches of 100. */
  params(params: Record<string, string | number | boolean>): void {
    const all = Object.entries(params).map(([key, value]) => ({
      key: mlflowKey(key),
      value: String(value).slice(0, MAX_PARAM_VALUE),
    }));
    for (let i = 0; i < all.length; i += MAX_PARAMS)
      this.#send({ run_id: this.runId, params: all.slice(i, i + MAX_PARAMS) });
  }

  /** Buffers metrics; sent when 1000 are waiting, on flush() and on close(). */
  metrics(step: number, values: Record<string, number>, timestamp = Date.now()): void {
    for (const [key, value] of Object.entries(values))
      if (Number.isFinite(value)) this.#pending.push({ key: mlflowKey(key), value, timestamp, step });
    if (this.#pending.length >= MAX_METRICS) this.#drain();
  }

  #drain(): void {
    while (this.#pending.length) this.#send({ run_id: this.runId, metrics: this.#pending.splice(0, MAX_METRICS) });
  }

  #send(body: unknown): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#error) return;
      try {
        await post(this.uri, 'runs/log-batch', body);
      } catch (err) {
        this.#error = err;
      }
    });
  }

  /** Sends everything buffered; rejects with the first failed request's error. */
  async flush(): Promise<void> {
    this.#drain();
    await this.#chain;
    if (this.#error) throw this.#error;
  }

  /** Flushes and marks the run FINISHED (or FAILED / KILLED). */
  async close(status: 'FINISHED' | 'FAILED' | 'KILLED' = 'FINISHED'): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    await post(this.uri, 'runs/update', { run_id: this.runId, status, end_time: Date.now() });
  }
}

async function post(root: string, endpoint: string, body: unknown): Promise<unknown> {
  const url = `${root}/api/2.0/mlflow/${endpoint}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new RlhfError(
      ErrorCode.IO,
      `mlflow ${url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`,
      { cause: err },
    );
  }
  const text = await res.text();
  if (!res.ok) throw new RlhfError(ErrorCode.IO, `mlflow ${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    throw new RlhfError(ErrorCode.FORMAT, `mlflow ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
  }
}
