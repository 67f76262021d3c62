// CPU-only builds: the model has no CUDA backend (native/cuda/backend.cu is compiled only by nvcc).
#include <memory>
#include <string>

#include "../model/backend.h"

namespace rlhf {
namespace cuda {

std::shared_ptr<model::Backend> new_model_backend(std::string* why) {
  if (why)
    *why =
        "this addon was built without CUDA (node-gyp builds the CPU addon; `npm run build:cmake` builds the CUDA "
        "backend where nvcc is found)";
  return nullptr;
}

}  // namespace cuda
}  // namespace rlhf
