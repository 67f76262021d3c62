#!/usr/bin/env bash
# The one prepared script for a GPU machine (H100/H200, sm_90), from the project root:
#   source .device/env.sh   # if node and the addon were packed into .device/ 
#   bash bench/device/run.sh
# Within ten minutes it
#   1. builds the CUDA kernels, their tests and the benchmark with CMake + nvcc for sm_90
#      (build-device/); also the addon with cmake-js when node and node_modules are present;
#   2. runs the CUDA kernel tests on the GPU (test_cuda_device: the same sources that
#      `npm run test:cuda-host` runs under host emulation), then again under compute-sanitizer
#      memcheck if present (it may refuse the device: the log says so);
#      The tests include the paged KV cache: attention with a block table (f32/bf16 pools) against
#      the CPU reference, and GenerationSession on the CUDA backend against the CPU session; their
#      lines are printed;
#   3. times GEMM (bf16, 1024…8192) against torch.matmul, AdamW against
#      torch.optim.AdamW(fused=True), device-to-device copy bandwidth, and one paged decode step
#      (32 sequences × 2048 keys, f32 and bf16 pools; no torch peer), in one run;
#   4. writes one JSON of figures: $OUT/device-figures.json when OUT is set (with the logs as
#      $OUT/device-logs.tar.gz: two files come back), else bench/results/device-figures.json
#      (logs in bench/results/device-logs/).
# RLHF_DEVICE_SMOKE=1 runs the same flow on a CPU machine (host-emulation builds, toy sizes, no
# PyTorch GPU peer) to check the script itself; its figures mean nothing.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
smoke=${RLHF_DEVICE_SMOKE:-0}
out=${OUT:-$root/bench/results}
mkdir -p "$out"
if [ -n "${OUT:-}" ]; then logs=$(mktemp -d); else logs="$out/device-logs"; mkdir -p "$logs"; fi
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
if [ -f .device/env.sh ]; then source .device/env.sh; fi

if [ "$smoke" = 1 ]; then
  sizes=64,128; adamw_n=100000; repeats=3; jobs=2; attn=2,48
else
  sizes=1024,2048,4096,8192; adamw_n=268435456; repeats=20; jobs=$(nproc); attn=32,2048
fi

# ---- what is here ------------------------------------------------------------------------------
step "machine"
{
  echo "{"
  echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "  \"smoke\": $([ "$smoke" = 1 ] && echo true || echo false),"
  echo "  \"gpu\": \"$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 | tr -d '"')\","
  echo "  \"nvcc\": \"$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)\","
  echo "  \"node\": \"$(node --version 2>/dev/null)\","
  echo "  \"git\": \"$(git rev-parse --short HEAD 2>/dev/null)\","
  echo "  \"sizes\": \"$sizes\", \"adamw_n\": $adamw_n, \"repeats\": $repeats"
  echo "}"
} > "$logs/meta.json"
cat "$logs/meta.json"

# ---- 1. build ----------------------------------------------------------------------------------
if [ "$smoke" = 1 ]; then
  build=build-native
  step "build (host emulation: test_cuda_host, bench_cuda_host)"
  cmake -S . -B $build -DRLHF_CUDA=OFF -DCMAKE_BUILD_TYPE=Release > "$logs/build.log" 2>&1 &&
    timeout 900 cmake --build $build --target test_cuda_host bench_cuda_host --parallel $jobs >> "$logs/build.log" 2>&1
  build_status=$?
  test_bin=$build/test_cuda_host; bench_bin=$build/bench_cuda_host
else
  build=build-device
  step "build (nvcc, sm_90: test_cuda_device, bench_cuda_device)"
  gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S . -B $build "${gen[@]}" -DRLHF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release > "$logs/build.log" 2>&1 &&
    timeout 300 cmake --build $build --target test_cuda_device bench_cuda_device --parallel $jobs >> "$logs/build.log" 2>&1
  build_status=$?
  test_bin=$build/test_cuda_device; bench_bin=$build/bench_cuda_device
  if command -v node > /dev/null && [ -x node_modules/.bin/cmake-js ]; then
    step "addon (cmake-js, sm_90)"
    timeout 240 node_modules/.bin/cmake-js compile --out build-cmake --parallel $jobs --CDCMAKE_CUDA_ARCHITECTURES=90 > "$logs/addon.log" 2>&1
    echo "cmake-js exit $?" >> "$logs/addon.log"
    timeout 30 node -e "const a=require('./build-cmake/Release/rlhf.node'); console.log(JSON.stringify(a.buildInfo ? a.buildInfo() : Object.keys(a)))" >> "$logs/addon.log" 2>&1
  else
    echo "addon: not built here (no node or no node_modules); the packed .device/build addon, if any, is what travels" > "$logs/addon.log"
  fi
  tail -3 "$logs/addon.log"
fi
echo "build exit $build_status"; tail -5 "$logs/build.log"

# ---- 2. tests ----------------------------------------------------------------------------------
if [ $build_status -eq 0 ]; then
  step "CUDA kernel tests"
  timeout 180 "$test_bin" > "$logs/tests.log" 2>&1
  echo "tests exit $?"; grep -E '^(FAIL|SKIP)|passed, ' "$logs/tests.log"
  echo "paged KV cache:"; grep -E '^(ok|FAIL|SKIP) +cuda_(attention_paged|model_generation_session|model_paged)' "$logs/tests.log"
  if [ "$smoke" != 1 ] && command -v compute-sanitizer > /dev/null; then
    step "the same tests under compute-sanitizer memcheck"
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$test_bin" > "$logs/sanitizer.log" 2>&1
    echo "compute-sanitizer exit $?"; grep -E 'ERROR SUMMARY|passed, |not supported|Device not supported' "$logs/sanitizer.log" | head -5
  else
    echo "compute-sanitizer: not run ($([ "$smoke" = 1 ] && echo smoke || echo 'not on PATH'))" > "$logs/sanitizer.log"
  fi
else
  echo "build failed: no tests, no timings" | tee "$logs/tests.log"
fi

# ---- 3. timings --------------------------------------------------------------------------------
: > "$logs/ours.jsonl"; : > "$logs/torch.jsonl"
if [ $build_status -eq 0 ]; then
  step "ours: gemm, adamw, copy, paged decode"
  timeout 180 "$bench_bin" --sizes $sizes --adamw-n $adamw_n --repeats $repeats --attn $attn > "$logs/ours.jsonl" 2> "$logs/ours.err"
  echo "bench exit $?"; cat "$logs/ours.err" | head -5
fi
py=python3
if [ "$smoke" = 1 ]; then
  step "torch peer: argument parsing only (no GPU)"
  $py bench/device/torch_device.py --sizes $sizes --adamw-n $adamw_n --repeats $repeats --help > /dev/null && echo "torch_device.py: arguments ok"
  $py -c "import torch" 2> /dev/null && timeout 120 $py bench/device/torch_device.py --device cpu --sizes $sizes --adamw-n $adamw_n --repeats $repeats > "$logs/torch.jsonl"
else
  step "torch: matmul bf16, AdamW(fused=True), copy"
  PYTHONUNBUFFERED=1 timeout 180 $py bench/device/torch_device.py --sizes $sizes --adamw-n $adamw_n --repeats $repeats > "$logs/torch.jsonl" 2> "$logs/torch.err"
  echo "torch exit $?"; head -5 "$logs/torch.err"
fi

# ---- 4. one JSON ------------------------------------------------------------------------------
step "collect"
$py bench/device/collect.py "$out/device-figures.json" --meta "$logs/meta.json" --ours "$logs/ours.jsonl" \
  --torch "$logs/torch.jsonl" --tests "$logs/tests.log" --sanitizer "$logs/sanitizer.log"
if [ -n "${OUT:-}" ]; then tar -czf "$out/device-logs.tar.gz" -C "$logs" . && logs="$out/device-logs.tar.gz"; fi
echo "figures: $out/device-figures.json (logs: $logs) after $(( $(date +%s) - t0 ))s"
