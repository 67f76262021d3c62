#include "buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define RLHF_BUFFER_MMAP 1
#endif

#include "error.h"

namespace rlhf {

static std::atomic<int64_t> g_bytes_in_use{0};
static std::atomic<int64_t> g_peak_bytes{0};

static void count_allocation(int64_t bytes) {
  const int64_t now = g_bytes_in_use.fetch_add(bytes) + bytes;
  int64_t peak = g_peak_bytes.load();
  while (now > peak && !g_peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

// Large buffers (activations, parameters, moments) are mapped directly and unmapped when freed,
// so a freed buffer goes back to the OS at once. Through malloc they would land in the heap once
// glibc's dynamic mmap threshold has risen (it follows the largest freed chunk, up to 32 MiB) and
// the process's resident size would creep up step after step with freed activations. Below 8 MiB
// malloc keeps them: buffers made per call (generate()'s packed weights, small scratch) then reuse
// heap pages instead of faulting fresh ones in (1 MiB cost a third of batch-1 generation speed).
static constexpr size_t kMapBytes = size_t(8) << 20;

static size_t rounded_size(size_t bytes) { return (bytes + 63) / 64 * 64; }

Buffer::Buffer(size_t bytes, bool zero) {
  if (bytes == 0) return;
  const size_t rounded = rounded_size(bytes);
#ifdef RLHF_BUFFER_MMAP
  if (rounded >= kMapBytes) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    RLHF_CHECK(p != MAP_FAILED, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes");
    data_ = p;  // page-aligned and already zero
    zero = false;
  }
#endif
  if (!data_) {
    data_ = std::aligned_alloc(64, rounded);
    RLHF_CHECK(data_ != nullptr, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes");
  }
  if (zero) std::memset(data_, 0, rounded);
  bytes_ = bytes;
  count_allocation(static_cast<int64_t>(bytes));
}

Buffer::~Buffer() {
  if (!data_) return;
#ifdef RLHF_BUFFER_MMAP
  const size_t rounded = rounded_size(bytes_);
  if (rounded >= kMapBytes)
    munmap(data_, rounded);
  else
#endif
    std::free(data_);
  g_bytes_in_use -= static_cast<int64_t>(bytes_);
}

int64_t buffer_bytes_in_use() { return g_bytes_in_use.load(); }

static std::atomic<int64_t> g_workspace_bytes{0};

void* grow_buffer(Buffer& buf, size_t bytes) {
  if (buf.bytes() < bytes) {
    buf = Buffer();
    buf = Buffer(bytes, false);
  }
  return buf.data();
}

float* Workspace::grow(size_t floats) {
  const int64_t before = static_cast<int64_t>(buf_.bytes());
  grow_buffer(buf_, floats * sizeof(float));
  g_workspace_bytes += static_cast<int64_t>(buf_.bytes()) - before;
  return buf_.as<float>();
}

Workspace::~Workspace() { g_workspace_bytes -= static_cast<int64_t>(buf_.bytes()); }

int64_t workspace_bytes() { return g_workspace_bytes.load(); }

int64_t buffer_bytes_peak(bool reset) {
  const int64_t peak = g_peak_bytes.load();
  if (reset) g_peak_bytes.store(g_bytes_in_use.load());
  return peak;
}

}  // namespace rlhf
