// What every CUDA launcher returns instead of throwing or aborting: ok, or a code and a message
// naming the launcher and the cause (a bad argument, a CUDA error, a missing library). Callers
// (the model's backend seam, the N-API layer) turn a failed Status into an rlhf::Error.
// Plain C++: includable from code that is not compiled by nvcc.
#pragma once
#include <string>

namespace rlhf {
namespace cuda {

enum class StatusCode : int {
  Ok = 0,
  InvalidArgument,  // a size, stride or option the kernel cannot take (checked before launching)
  CudaError,        // the runtime reported an error (launch configuration, memory, a failed kernel)
  Unavailable,      // a library the call needs (cuBLASLt) is not present on this machine
};

struct Status {
  StatusCode code = StatusCode::Ok;
  std::string message;
  bool ok() const { return code == StatusCode::Ok; }
  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {StatusCode::InvalidArgument, std::move(m)}; }
};

// An opaque stream handle (cudaStream_t on a device build; ignored under host emulation).
using Stream = void*;

}  // namespace cuda
}  // namespace rlhf
