#!/usr/bin/env bash
# Installs Open MPI from Debian (openmpi-bin, libopenmpi-dev) when mpirun is missing: the
# data-parallel tests and `rlhf … --nproc N` need it; the addon itself loads libmpi at run time
# and builds and runs without it.
set -euo pipefail
if command -v mpirun >/dev/null 2>&1 && ldconfig -p | grep -q 'libmpi\.so\.40'; then
  echo "Open MPI present: $(mpirun --version 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-mpi: not root; install openmpi-bin and libopenmpi-dev with your package manager" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
echo "Open MPI installed: $(mpirun --version | head -1)"
