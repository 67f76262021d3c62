// What the CUDA backend can tell without any kernel: whether it was compiled in and how many
// devices the runtime sees. Implemented by cuda_probe.cu in CUDA builds and by
// cuda_probe_stub.cc otherwise, so callers never need #ifdefs.
#pragma once
#include <string>

namespace rlhf {
namespace cuda {

bool compiled();
// Number of usable CUDA devices; 0 with *why_not set when none (not compiled, no driver, no GPU).
int device_count(std::string* why_not);

}  // namespace cuda
}  // namespace rlhf
