/**
 * forEachDevice(t, fn): runs fn once per device as a subtest. CPU always runs; CUDA runs when the
 * addon was built with CUDA and a GPU is present, otherwise the subtest is skipped visibly with
 * the reason (e.g. "built without CUDA", "CUDA driver version is insufficient").
 */
import type { Test } from 'tap';
import { availableDevices, type DeviceName } from '../../lib/engine/device.js';

export async function forEachDevice(t: Test, fn: (t: Test, device: DeviceName) => Promise<void> | void): Promise<void> {
  for (const d of availableDevices()) {
    if (!d.available) {
      await t.test(d.device, { skip: `${d.device} unavailable: ${d.reason}` }, () => {});
      continue;
    }
    // Kernels other than the CPU ones do not exist yet: a CUDA device is reported, not tested.
    if (d.device !== 'cpu') {
      await t.test(d.device, { skip: `${d.device}: no CUDA kernels in this build yet` }, () => {});
      continue;
    }
    await t.test(d.device, (tt) => fn(tt, d.device));
  }
}
