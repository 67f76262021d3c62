// CPU-only builds: no CUDA backend compiled in.
#include "cuda_probe.h"

namespace rlhf {
namespace cuda {

bool compiled() { return false; }

int device_count(std::string* why_not) {
  if (why_not) *why_not = "built without CUDA (nvcc was not found at build time)";
  return 0;
}

}  // namespace cuda
}  // namespace rlhf
