/**
 * The annotate HTTP server: the labelling page and its JSON API, on loopback by default.
 *
 *   POST /api/login  {name, token?}          → sets the session cookie (HttpOnly, SameSite=Strict)
 *   GET  /api/me                             → {name}
 *   GET  /api/next                           → {item: {itemId, prompt, left, right} | null, progress}
 *   POST /api/answer {itemId, answer, reason?} (answer: left | right | tie_good | tie_bad | skip)
 *   POST /api/undo   {}                      → both answer with the next {item, progress}
 *
 * An annotator only ever sees and answers their own items (the session decides who); answers are
 * committed before the reply. POST bodies must be JSON (Content-Type application/json: a cross-site
 * form cannot send it) and at most 16 KiB; every field is checked.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LabelDb } from './db.js';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';

export interface AnnotateServerOptions {
  db: LabelDb;
  host?: string;
  port?: number;
  /** a shared access token annotators must give at sign-in */
  token?: string;
}

const MAX_BODY = 16 * 1024;
const COOKIE = 'rlhf_annotate';
const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._'-]{0,63}$/u;
const SHOWN = ['left', 'right', 'tie_good', 'tie_bad', 'skip'] as const;
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startAnnotateServer(
  o: AnnotateServerOptions,
): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const { db } = o;
  const tokenHash = o.token ? createHash('sha256').update(o.token).digest() : undefined;

  const who = (req: IncomingMessage) => {
    const m = new RegExp(`(?:^|;\\s*)${COOKIE}=([A-Za-z0-9_-]+)`).exec(req.headers.cookie ?? '');
    const me = m ? db.session(m[1]) : undefined;
    if (!me) throw new HttpError(401, 'sign in first');
    return me;
  };
  const state = (annotatorId: number) => {
    const item = db.next(annotatorId) ?? null;
    return { item, progress: db.progress(annotatorId) };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    const get = req.method === 'GET' || req.method === 'HEAD';
    if (get && path === '/') return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
    if (get && path === '/app.js') return send(res, 200, 'text/javascript; charset=utf-8', PAGE_JS);
    if (get && path === '/app.css') return send(res, 200, 'text/css; charset=utf-8', PAGE_CSS);
    if (get && path === '/api/me') return json(res, 200, { name: who(req).name });
    if (get && path === '/api/next') return json(res, 200, state(who(req).id));
    if (!['/api/login', '/api/answer', '/api/undo'].includes(path))
      throw new HttpError(get || req.method === 'POST' ? 404 : 405, `no ${req.method} ${path}`);
    if (req.method !== 'POST') throw new HttpError(405, `${path} takes POST`);
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? ''))
      throw new HttpError(415, 'send Content-Type: application/json');
    const body = await readJson(req);
    if (path === '/api/login') {
      known(body, ['name', 'token']);
      const name = typeof body.name === 'string' ? body.name.trim() : body.name;
      if (typeof name !== 'string' || !NAME.test(name))
        throw new HttpError(400, "name: 1-64 letters, digits, spaces or ._'- (starting with a letter or digit)");
      if (body.token !== undefined && typeof body.token !== 'string')
        throw new HttpError(400, 'token: expected a string');
      if (
        tokenHash &&
        !timingSafeEqual(
          createHash('sha256')
            .update((body.token as string | undefined) ?? '')
            .digest(),
          tokenHash,
        )
      )
        throw new HttpError(403, 'token: wrong access token');
      const session = db.signIn(name);
      res.setHeader('set-cookie', `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`);
      return json(res, 200, { name });
    }
    const me = who(req);
    if (path === '/api/undo') {
      known(body, []);
      db.undo(me.id);
      return json(res, 200, state(me.id));
    }
    known(body, ['itemId', 'answer', 'reason']);
    if (!Number.isSafeInteger(body.itemId) || (body.itemId as number) < 1)
      throw new HttpError(400, 'itemId: expected a positive integer');
    if (!SHOWN.includes(body.answer as (typeof SHOWN)[number]))
      throw new HttpError(400, `answer: expected one of ${SHOWN.join(', ')}`);
    const reason = body.reason ?? '';
    if (typeof reason !== 'string' || reason.length > 2000)
      throw new HttpError(400, 'reason: expected a string of at most 2000 characters');
    try {
      db.answer(me.id, body.itemId as number, body.answer as (typeof SHOWN)[number], reason.trim());
    } catch (err) {
      if (err instanceof RangeError) throw new HttpError(409, err.message);
      throw err;
    }
    return json(res, 200, state(me.id));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof HttpError) return json(res, err.status, { error: err.message });
      json(res, 500, { error: `internal error: ${(err as Error)?.message ?? String(err)}` });
    });
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function known(body: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(body)) if (!keys.includes(k)) throw new HttpError(400, `${k}: unknown field`);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', JSON.stringify(value));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (Number(req.headers['content-length']) > MAX_BODY)
    throw new HttpError(413, `the body is larger than ${MAX_BODY} bytes`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is larger than ${MAX_BODY} bytes`);
    parts.push(chunk);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body is not valid JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HttpError(400, 'the body must be a JSON object');
  return v as Record<string, unknown>;
}
