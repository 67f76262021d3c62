// The addon's surface: buildInfo fields, tables mirrored in TS, thread control, error codes.
import t from 'tap';
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
