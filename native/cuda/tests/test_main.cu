// Entry point of the CUDA kernel tests: test_cuda_host (every .cu compiled by the host C++ compiler
// against native/cuda/emu, run by `npm run test:cuda-host`) and test_cuda_device (the same sources
// compiled by nvcc; skips every test when no GPU is present). Prints "N passed, N failed, N skipped".
#include <cstdio>

#include "cuda_test_util.h"

int main() {
#if RLHF_HOST_EMULATION
  std::printf("CUDA kernel tests under host emulation (native/cuda/emu)\n");
#else
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    std::printf("no CUDA device: every CUDA kernel test skipped\n");
    std::printf("0 passed, 0 failed, %zu skipped\n", rlhf_test::registry().size());
    return 0;
  }
  std::printf("CUDA kernel tests on the device\n");
#endif
  return rlhf_test::run_all_tests();
}
