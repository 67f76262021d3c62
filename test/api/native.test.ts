// The addon's surface: buildInfo fields, tables mirrored in TS, thread control, error codes, and
// lib/native.ts's declarations against the exports the loaded addon really has.
import t from 'tap';
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { buildInfo, setThreads, availableDevices } from '../../lib/engine/device.js';
import { DTYPES } from '../../lib/engine/dtype.js';
import { ErrorCode } from '../../lib/errors.js';
import { native } from '../../lib/native.js';
import pkg from '../../package.json' with { type: 'json' };

t.test('buildInfo reports version, backends, simd, threads', async (t) => {
  const b = buildInfo();
  t.equal(b.version, pkg.version);
  t.ok(b.backends.includes('cpu'));
  t.equal(b.backends.includes('cuda'), b.cudaCompiled);
  t.ok(['avx512', 'avx2', 'scalar'].includes(b.simd));
  t.ok(Number.isInteger(b.threads) && b.threads >= 1);
  t.equal(b.napiVersion, 9);
  if (b.cudaDevices === 0) t.type(b.cudaUnavailableReason, 'string', 'a missing GPU is explained');
  t.equal(availableDevices()[0].device, 'cpu');
});

t.test('TS mirrors of native tables agree', async (t) => {
  const tables = native().tables();
  t.same(tables.errorCodes, Object.values(ErrorCode));
  t.same(tables.dtypes, DTYPES);
});

t.test('setThreads validates and applies', async (t) => {
  const before = buildInfo().threads;
  setThreads(1);
  t.equal(buildInfo().threads, 1);
  setThreads(before);
  t.throws(() => setThreads(0), { name: 'RangeError', message: /setThreads: expected n to be an integer >= 1/ });
  t.throws(() => setThreads(1.5), { name: 'TypeError' });
});

// lib/native.ts declares the addon's whole surface: every export, every method of its classes and
// of its `bench` / `pg` objects, read here from the TypeScript source with the compiler's parser
// and compared with what the loaded addon really has, both ways.
t.test('lib/native.ts declares exactly what the addon exports', async (t) => {
  const path = new URL('../../lib/native.ts', import.meta.url);
  const file = ts.createSourceFile('native.ts', readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const members = new Map<string, ts.NodeArray<ts.TypeElement>>();
  file.forEachChild((n) => {
    if (ts.isInterfaceDeclaration(n)) members.set(n.name.text, n.members);
  });
  const names = (list: ts.NodeArray<ts.TypeElement> | undefined) =>
    [
      ...new Set(
        (list ?? []).filter((m) => m.name && ts.isIdentifier(m.name)).map((m) => (m.name as ts.Identifier).text),
      ),
    ].sort(); // overloads once
  const binding = members.get('NativeBinding');
  t.ok(binding, 'lib/native.ts has interface NativeBinding');
  const addon = native() as unknown as Record<string, unknown>;
  t.same(names(binding), Object.keys(addon).sort(), 'top-level exports');
  const bench = binding!.find((m) => (m.name as ts.Identifier | undefined)?.text === 'bench');
  const benchType = bench && ts.isPropertySignature(bench) ? bench.type : undefined;
  t.ok(benchType && ts.isTypeLiteralNode(benchType), 'bench is declared as an object type');
  t.same(names((benchType as ts.TypeLiteralNode).members), Object.keys(addon.bench as object).sort(), 'bench');
  t.same(names(members.get('NativePg')), Object.keys(addon.pg as object).sort(), 'pg');
  // classes: prototype methods and accessors (the constructor aside)
  const protoNames = (ctor: unknown) =>
    Object.getOwnPropertyNames((ctor as { prototype: object }).prototype)
      .filter((k) => k !== 'constructor')
      .sort();
  t.same(names(members.get('NativeModel')), protoNames(addon.NativeModel), 'NativeModel');
  t.same(names(members.get('NativeAdamW')), protoNames(addon.NativeAdamW), 'NativeAdamW');
  t.same(
    names(members.get('NativeGenerationSession')),
    protoNames(addon.NativeGenerationSession),
    'NativeGenerationSession',
  );
});
