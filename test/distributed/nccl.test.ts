// NcclGroup (native/core/nccl.h): NCCL is loaded at run time. This machine has no GPU and no NCCL,
// so what is tested here is the part that runs without them: the addon reports clearly why NCCL
// is absent (buildInfo().nccl, ncclInfo()), a library that is not NCCL is refused naming the
// missing symbol, and the ABI the addon declares by hand matches nccl.h's documented values
// (NCCL 2.x: NCCL_UNIQUE_ID_BYTES, ncclResult_t, ncclDataType_t, ncclRedOp_t). A multi-rank run
// needs one GPU per rank and is not tested here.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { buildInfo } from '../../lib/engine/device.js';
import { native, packageRoot } from '../../lib/native.js';

const info = native().ncclInfo();

t.test('buildInfo lists NCCL as optional, with the reason it is absent', async (t) => {
  const b = buildInfo().nccl;
  t.equal(b.available, info.loadable, 'buildInfo and ncclInfo agree');
  if (info.loadable) {
    t.ok(info.version > 20000, `NCCL ${info.version} found at ${info.library}`);
    return;
  }
  t.match(b.reason ?? '', /^libnccl not found \(tried .*libnccl\.so\.2, libnccl\.so\)/, `reason: ${b.reason}`);
  t.match(b.reason ?? '', /RLHF_NCCL_LIBRARY/, 'says how to point at another file');
});

// The loader runs once per process: other settings of RLHF_NCCL_LIBRARY need a fresh process.
function infoWith(library: string) {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { native } from ${JSON.stringify(packageRoot + '/dist/native.js')}; process.stdout.write(JSON.stringify(native().ncclInfo()));`,
    ],
    { encoding: 'utf8', env: { ...process.env, RLHF_NCCL_LIBRARY: library } },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { loadable: boolean; library: string; error: string };
}

t.test('RLHF_NCCL_LIBRARY is tried first; a library without the NCCL symbols is refused by name', async (t) => {
  const missing = infoWith('/nonexistent/libnccl.so.2');
  t.notOk(missing.loadable);
  t.match(missing.error, /tried \/nonexistent\/libnccl\.so\.2, /, missing.error);
  // libm loads but is not NCCL
  const libm = infoWith('libm.so.6');
  t.notOk(libm.loadable);
  t.match(libm.error, /libnccl has no symbol ncclGetVersion/, libm.error);
});

t.test("the declared ABI matches nccl.h's documented values", async (t) => {
  const abi = native().ncclAbi();
  // nccl.h (NCCL 2.x): #define NCCL_UNIQUE_ID_BYTES 128; ncclSuccess = 0, ncclInProgress = 7;
  // ncclFloat32 = ncclFloat = 7, ncclFloat64 = ncclDouble = 8; ncclSum = 0, ncclMax = 2
  t.same(
    { ...abi, symbols: undefined },
    { uniqueIdBytes: 128, success: 0, inProgress: 7, float32: 7, float64: 8, sum: 0, max: 2, symbols: undefined },
  );
  for (const s of [
    'ncclGetUniqueId',
    'ncclCommInitRank',
    'ncclAllReduce',
    'ncclAllGather',
    'ncclBroadcast',
    'ncclCommDestroy',
    'ncclGetErrorString',
    'ncclCommAbort',
  ])
    t.ok(abi.symbols.includes(s), `binds ${s}`);
});
