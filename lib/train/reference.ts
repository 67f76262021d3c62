/**
 * The default frozen reference of a policy (DPO family, PPO/GRPO and the other policy-gradient
 * trainers' KL anchor), made once where a trainer starts when the caller passes none.
 */
import type { Model } from '../engine/model.js';

/**
 * For a LoRA policy: its base, `policy.withoutAdapters()` (a view sharing the weights: no copy).
 * Otherwise: `policy.clone({ trainable: false })` — the policy's current weights with no gradient
 * storage, and at dtype 'bf16' its matrices in bf16 only (the bits the policy's weight products
 * read). Log-probs are bitwise a trainable clone's at f32; at bf16 too, except that the frozen
 * embedding lookup reads the bf16 embedding where the policy's reads its f32 master (the same when
 * the masters are bf16 values, e.g. loaded from a BF16 checkpoint). A tensor-parallel policy's
 * shards have no frozen storage (the engine refuses trainable: false): its reference is a plain
 * clone, as before frozen references existed. The caller owns the result (dispose() it; a view's
 * dispose is a no-op on the policy).
 */
export async function frozenReference(policy: Model): Promise<Model> {
  if (policy.lora) return policy.withoutAdapters();
  return policy.tensorParallel > 1 ? policy.clone() : policy.clone({ trainable: false });
}
