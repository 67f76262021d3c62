#include "buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "error.h"

namespace rlhf {

static std::atomic<int64_t> g_bytes_in_use{0};

Buffer::Buffer(size_t bytes, bool zero) {
  if (bytes == 0) return;
  size_t rounded = (bytes + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, rounded);
  RLHF_CHECK(data_ != nullptr, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes");
  if (zero) std::memset(data_, 0, rounded);
  bytes_ = bytes;
  g_bytes_in_use += static_cast<int64_t>(bytes);
}

Buffer::~Buffer() {
  if (data_) {
    std::free(data_);
    g_bytes_in_use -= static_cast<int64_t>(bytes_);
  }
}

int64_t buffer_bytes_in_use() { return g_bytes_in_use.load(); }

}  // namespace rlhf
