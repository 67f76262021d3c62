/**
 * Optimizer state of a model split over a tensor-parallel process group, in one array for a
 * checkpoint: rank 0's shard moments, then rank 1's, ... — the layout AdamW holds for the same
 * model split over K thread ranks (native/model/tensor_parallel.cc keeps the ranks' shards back to
 * back), so a checkpoint written by either resumes the other at the same K. Each rank's piece is
 * copied, never summed: gathering then taking a rank's range back gives its moments bit for bit.
 *
 * Both functions are collectives over the tensor-parallel group `tp` (every rank of it calls them
 * in the same order).
 */
import { RlhfError, ErrorCode } from '../errors.js';
import { checkInt } from '../validate.js';
import { allGatherRanges, type ProcessGroup } from './index.js';

/**
 * Where each rank's piece starts in the joined array: offsets[r] for r in [0, size], from every
 * rank's own `length` (a collective; exact for lengths below 2^53).
 */
export function tensorParallelOffsets(tp: ProcessGroup, length: number): number[] {
  checkInt('tensorParallelOffsets', 'length', length, { min: 0 });
  const lengths = new Float64Array(tp.size);
  lengths[tp.rank] = length;
  tp.allReduceSum(lengths);
  const offsets = [0];
  for (const n of lengths) offsets.push(offsets[offsets.length - 1] + n);
  return offsets;
}

/** Every rank's `piece`, joined in rank order (a collective; see the module comment). */
export function joinTensorParallelPieces(tp: ProcessGroup, piece: Float32Array): Float32Array {
  return allGatherRanges(tp, piece, tensorParallelOffsets(tp, piece.length));
}

/**
 * This rank's piece of `joined` (an array joinTensorParallelPieces wrote), `length` long: a view.
 * @throws RlhfError ERR_RLHF_FORMAT when `joined` does not hold the group's pieces (another split)
 */
export function tensorParallelPiece(
  tp: ProcessGroup,
  joined: Float32Array,
  length: number,
  what: string,
): Float32Array {
  const offsets = tensorParallelOffsets(tp, length);
  if (joined.length !== offsets[tp.size])
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${what}: holds ${joined.length} values, the ${tp.size} tensor-parallel shards of this model hold ${offsets[tp.size]} (saved with another tensor-parallel split)`,
    );
  return joined.subarray(offsets[tp.rank], offsets[tp.rank + 1]);
}
