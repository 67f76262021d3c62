/**
 * Seeded data order. {@link permutation} depends only on (n, seed, epoch): a run resumed at epoch e,
 * step s recomputes exactly the order it had, with no RNG state to save. The generator is
 * mulberry32 (a 32-bit counter-based PRNG) seeded by a murmur3-style hash of (seed, epoch), driving
 * a Fisher–Yates shuffle; only 32-bit integer arithmetic and correctly rounded IEEE-754 operations
 * are used, so the result is the same on every platform and Node version. Changing this algorithm changes every
 * recorded data order: the unit test pins a few values.
 */
import { checkInt } from '../validate.js';

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The 32-bit state for (seed, epoch, stream); seeds up to 2^53 are hashed in two halves. */
export function hashSeed(seed: number, epoch: number, stream = 0): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x1_0000_0000) >>> 0;
  let h = 0x9e3779b9;
  for (const word of [lo, hi, epoch >>> 0, stream >>> 0]) h = fmix32((h ^ fmix32(word + 0x7f4a7c15)) + 0x165667b1);
  return h;
}

/** mulberry32: returns a generator of uniform integers in [0, 2^32). */
export function mulberry32(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A shuffle of `order` in place with the generator `next` (Fisher–Yates, last index first). */
export function shuffleInPlace(order: Int32Array, next: () => number): Int32Array {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor((next() / 0x1_0000_0000) * (i + 1)); // IEEE-754 rounding: deterministic, and always < i + 1
    const tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  return order;
}

/**
 * A permutation of [0, n) that depends only on (seed, epoch): the same arguments always give the
 * same order, different epochs give (almost surely) different orders.
 *
 * @param n number of items, an integer in [0, 2^31)
 * @param seed an integer in [0, 2^53)
 * @param epoch an integer in [0, 2^32)
 */
export function permutation(n: number, seed: number, epoch: number): Int32Array {
  const fn = 'permutation';
  checkInt(fn, 'n', n, { min: 0, max: 0x7fff_ffff });
  checkInt(fn, 'seed', seed, { min: 0, max: Number.MAX_SAFE_INTEGER });
  checkInt(fn, 'epoch', epoch, { min: 0, max: 0xffff_ffff });
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return shuffleInPlace(order, mulberry32(hashSeed(seed, epoch)));
}
