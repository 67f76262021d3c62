#!/usr/bin/env bash
# Installs the PyTorch peer used by the benchmarks: Debian's python3-torch (CPU build) with
# OpenBLAS as the BLAS it calls for matmul. Needs root (apt). Idempotent.
set -euo pipefail
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "python3-torch already installed: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq python3-torch libopenblas0-pthread
/usr/bin/python3 -c 'import torch; print("installed torch", torch.__version__)'
