/**
 * The labelling page: static HTML, CSS and script (served from the annotate server; the Content
 * Security Policy allows only these same-origin files, no inline script). Model text is put into
 * the page only through textContent and createElement: a small markdown subset (paragraphs,
 * headings, lists, code fences, inline code, bold, italics) is rendered as DOM nodes, never as HTML.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlhf annotate</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header><strong>rlhf annotate</strong> <span id="who"></span> <span id="progress"></span></header>
<main>
<form id="login" hidden>
  <h2>Sign in</h2>
  <label>Your name <input id="name" autocomplete="username" maxlength="64" required></label>
  <label>Access token (if the organiser gave one) <input id="token" type="password" maxlength="256"></label>
  <button type="submit">Start</button>
  <p class="error" id="login-error"></p>
</form>
<section id="task" hidden>
  <div class="prompt"><h3>Prompt</h3><div id="prompt"></div></div>
  <div class="pair">
    <article><h3>Response A</h3><div id="left" class="response" tabindex="0"></div></article>
    <article><h3>Response B</h3><div id="right" class="response" tabindex="0"></div></article>
  </div>
  <p class="hint">Which response is better (helpful, harmless, fluent)?</p>
  <div class="answers">
    <button data-answer="left">A is better <kbd>1</kbd></button>
    <button data-answer="right">B is better <kbd>2</kbd></button>
    <button data-answer="tie_good">Tie: both good <kbd>3</kbd></button>
    <button data-answer="tie_bad">Tie: both bad <kbd>4</kbd></button>
    <button data-answer="skip">Skip <kbd>S</kbd></button>
    <button id="undo">Undo last <kbd>U</kbd></button>
  </div>
  <label class="reason">Reason (optional, <kbd>R</kbd> to type, Esc to leave) <textarea id="reason" maxlength="2000" rows="2"></textarea></label>
</section>
<section id="finished" hidden><h2>Nothing left to label. Thank you!</h2><button id="undo2">Undo last <kbd>U</kbd></button></section>
<p class="error" id="error"></p>
</main>
</body>
</html>
`;

export const PAGE_CSS = `
body { font-family: system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; }
header { padding: .6em 1em; background: #233; color: #fff; display: flex; gap: 1.5em; }
main { padding: 1em; max-width: 1400px; margin: auto; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.response, #prompt { background: #fff; border: 1px solid #ccc; padding: .5em 1em; max-height: 55vh; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.response p, #prompt p { margin: .4em 0; }
pre { background: #f0f0f0; padding: .5em; overflow-x: auto; white-space: pre; }
.answers { display: flex; flex-wrap: wrap; gap: .5em; margin: .8em 0; }
.answers button, form button { padding: .5em 1em; font-size: 1em; }
.reason textarea { width: 100%; }
.error { color: #b00; }
.role { font-weight: bold; color: #555; }
form label { display: block; margin: .5em 0; }
`;

export const PAGE_JS = `'use strict';
const $ = (id) => document.getElementById(id);
const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
let current = null;
let busy = false;

async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({ error: 'bad reply' }));
  if (!res.ok) { const err = new Error(data.error || res.statusText); err.status = res.status; throw err; }
  return data;
}

function inline(text, parent) {
  const re = /(\`[^\`\\n]+\`|\\*\\*[^*\\n]+\\*\\*|\\*[^*\\s][^*\\n]*\\*)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    parent.append(document.createTextNode(text.slice(last, m.index)));
    const t = m[0];
    parent.append(t[0] === '\`' ? el('code', t.slice(1, -1)) : t.startsWith('**') ? el('strong', t.slice(2, -2)) : el('em', t.slice(1, -1)));
    last = m.index + t.length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

function renderMarkdown(text, parent) {
  const lines = String(text).split('\\n');
  const special = (l) => /^\`\`\`/.test(l) || /^#{1,6}\\s/.test(l) || /^\\s*[-*]\\s+/.test(l);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^\`\`\`/.test(line)) {
      const code = [];
      i++;
      while (i < lines.length && !/^\`\`\`/.test(lines[i])) code.push(lines[i++]);
      i++;
      const pre = el('pre');
      pre.append(el('code', code.join('\\n')));
      parent.append(pre);
    } else if (/^#{1,6}\\s/.test(line)) {
      const h = el('h' + Math.min(6, line.indexOf(' ') + 2));
      inline(line.replace(/^#+\\s+/, ''), h);
      parent.append(h);
      i++;
    } else if (/^\\s*[-*]\\s+/.test(line)) {
      const ul = el('ul');
      while (i < lines.length && /^\\s*[-*]\\s+/.test(lines[i])) { const li = el('li'); inline(lines[i].replace(/^\\s*[-*]\\s+/, ''), li); ul.append(li); i++; }
      parent.append(ul);
    } else if (line.trim() === '') {
      i++;
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() !== '' && (para.length === 0 || !special(lines[i]))) para.push(lines[i++]);
      const p = el('p');
      inline(para.join('\\n'), p);
      parent.append(p);
    }
  }
}

function showPrompt(prompt) {
  const box = $('prompt');
  box.replaceChildren();
  if (typeof prompt === 'string') return renderMarkdown(prompt, box);
  for (const m of prompt) {
    const div = el('div');
    div.append(el('span', m.role + ': '));
    div.firstChild.className = 'role';
    renderMarkdown(m.content, div);
    box.append(div);
  }
}

function show(data) {
  current = data.item;
  const p = data.progress;
  $('progress').textContent = 'done ' + p.done + ' · remaining ' + p.remaining + ' of ' + p.total + (p.agreement === null ? '' : ' · agreement ' + Math.round(p.agreement * 100) + '%');
  $('login').hidden = true;
  $('task').hidden = !current;
  $('finished').hidden = !!current;
  $('error').textContent = '';
  if (!current) return;
  showPrompt(current.prompt);
  for (const side of ['left', 'right']) { $(side).replaceChildren(); renderMarkdown(current[side], $(side)); $(side).scrollTop = 0; }
  $('reason').value = '';
  document.body.dataset.item = String(current.itemId);
}

function fail(err) {
  if (err.status === 401) { $('login').hidden = false; $('task').hidden = true; $('finished').hidden = true; return; }
  $('error').textContent = err.message;
}

async function act(path, body) {
  if (busy) return;
  busy = true;
  try { show(await api(path, body)); } catch (err) { fail(err); } finally { busy = false; }
}

function answer(kind) {
  if (!current) return;
  act('/api/answer', { itemId: current.itemId, answer: kind, reason: $('reason').value });
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const me = await api('/api/login', { name: $('name').value, token: $('token').value });
    $('who').textContent = me.name;
    show(await api('/api/next'));
  } catch (err) { $('login-error').textContent = err.message; }
});
for (const b of document.querySelectorAll('[data-answer]')) b.addEventListener('click', () => answer(b.dataset.answer));
$('undo').addEventListener('click', () => act('/api/undo', {}));
$('undo2').addEventListener('click', () => act('/api/undo', {}));
const KEYS = { '1': 'left', 'a': 'left', 'ArrowLeft': 'left', '2': 'right', 'b': 'right', 'ArrowRight': 'right', '3': 'tie_good', '4': 'tie_bad', 's': 'skip' };
document.addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement) { if (e.key === 'Escape') e.target.blur(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'u') { e.preventDefault(); act('/api/undo', {}); }
  else if (e.key === 'r' && current) { e.preventDefault(); $('reason').focus(); }
  else if (KEYS[e.key] && current) { e.preventDefault(); answer(KEYS[e.key]); }
});
api('/api/me').then((me) => { $('who').textContent = me.name; return api('/api/next'); }).then(show, fail);
`;
