// `rlhf rm --nproc N --tp K` against the same command in one process: K thread ranks at N = K
// (bit for bit, checkpoints' AdamW moments included), no tensor parallelism at N = 4, K = 2; `rlhf
// prm` against the thread ranks. Skipped where Open MPI is absent (scripts/install-mpi.sh).
import t from 'tap';
import { compareTrainers, skip } from './tp-cli-helpers.js';

t.test('rlhf rm --nproc N --tp K against one process', { skip, timeout: 900_000 }, (t) =>
  compareTrainers(t, ['rm'], true),
);
t.test('rlhf prm --nproc 2 --tp 2 against thread ranks', { skip, timeout: 900_000 }, (t) =>
  compareTrainers(t, ['prm'], false),
);
