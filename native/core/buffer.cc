#include "buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "block_cache.h"
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

const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

static DeviceAllocator g_cuda_allocator;

void set_device_allocator(Device d, const DeviceAllocator& a) {
  RLHF_CHECK(d == Device::Cuda, ErrorCode::Internal, "set_device_allocator: the CPU allocator is fixed");
  g_cuda_allocator = a;
}

Buffer::Buffer(size_t bytes, bool zero, Device device) {
  if (bytes == 0) return;
  if (device != Device::Cpu) {
    RLHF_CHECK(g_cuda_allocator.allocate != nullptr, ErrorCode::Unsupported, "cannot allocate ", bytes,
               " bytes on device '", device_name(device), "': no backend for it is loaded");
    data_ = g_cuda_allocator.allocate(bytes);
    RLHF_CHECK(data_ != nullptr, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes on device '",
               device_name(device), "'");
    if (zero) g_cuda_allocator.zero(data_, bytes);
    bytes_ = bytes;
    device_ = device;
    return;
  }
  if (bytes >= kCachedBlockMin) {
    data_ = acquire_block(bytes, zero, &block_);  // page aligned; zeroed when asked
  } else {
    const size_t rounded = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded);
    RLHF_CHECK(data_ != nullptr, ErrorCode::OutOfMemory, "could not allocate ", bytes, " bytes");
    if (zero) std::memset(data_, 0, rounded);
  }
  bytes_ = bytes;
  count_allocation(static_cast<int64_t>(bytes));
}

Buffer::~Buffer() {
  if (!data_) return;
  if (device_ != Device::Cpu) {
    g_cuda_allocator.release(data_);
    return;
  }
  if (block_)
    release_block(data_, block_);
  else
    std::free(data_);
  g_bytes_in_use -= static_cast<int64_t>(bytes_);
}

int64_t buffer_bytes_in_use() { return g_bytes_in_use.load(); }

static std::atomic<int64_t> g_workspace_bytes{0};

void* grow_buffer(Buffer& buf, size_t bytes, Device device) {
  if (buf.bytes() < bytes || (buf.device() != device && bytes > 0)) {
    buf = Buffer();
    buf = Buffer(bytes, false, device);
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
