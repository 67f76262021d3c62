// CUDA builds: asks the runtime for devices. Never throws and never aborts: a missing driver or
// GPU is a normal answer (0 devices, with the runtime's reason).
#include <cuda_runtime.h>

#include "cuda_probe.h"

namespace rlhf {
namespace cuda {

bool compiled() { return true; }

int device_count(std::string* why_not) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why_not) *why_not = std::string("CUDA runtime: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the non-sticky error
    return 0;
  }
  if (n == 0 && why_not) *why_not = "no CUDA device present";
  return n;
}

}  // namespace cuda
}  // namespace rlhf
