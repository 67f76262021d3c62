// Owning, 64-byte aligned host allocation. Move-only. Allocation failure throws
// rlhf::Error(OutOfMemory) instead of std::bad_alloc so the JS side sees a coded error.
// Buffers of kCachedBlockMin bytes and more come from the block cache (block_cache.h): freed,
// they are kept for the next buffer of their size class. zero = false: the contents are
// unspecified (a reused block holds its last owner's data), never assume zeros.
// A Buffer carries the device its bytes live on (Device::Cpu unless asked otherwise): host code
// dereferences only Cpu buffers; a Cuda buffer is device memory, allocated through the allocator
// the CUDA backend registered (set_device_allocator) and read or written only by that backend's
// kernels and copies (native/model/backend.h). Device bytes are not in buffer_bytes_in_use().
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

namespace rlhf {

enum class Device : uint8_t { Cpu = 0, Cuda = 1 };
const char* device_name(Device d);  // "cpu", "cuda"

// How a device's memory is allocated: registered by that device's backend before its first
// Buffer. allocate returns null on failure; zero sets `bytes` bytes to 0.
struct DeviceAllocator {
  void* (*allocate)(size_t bytes) = nullptr;
  void (*release)(void* p) = nullptr;
  void (*zero)(void* p, size_t bytes) = nullptr;
};
void set_device_allocator(Device d, const DeviceAllocator& a);

class Buffer {
 public:
  Buffer() = default;
  // Device::Cuda without a registered allocator throws rlhf::Error(Unsupported).
  explicit Buffer(size_t bytes, bool zero = true, Device device = Device::Cpu);
  ~Buffer();
  Buffer(Buffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_), block_(o.block_), device_(o.device_) {
    o.data_ = nullptr, o.bytes_ = 0, o.block_ = 0, o.device_ = Device::Cpu;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(block_, o.block_);
    std::swap(device_, o.device_);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  size_t block_ = 0;  // the cached block's capacity; 0: from malloc
  Device device_ = Device::Cpu;
};

// Total bytes currently held by Buffers, as requested (reported to V8 as external memory by the
// addon). Blocks kept in the cache are not in it: cached_block_bytes() counts those.
int64_t buffer_bytes_in_use();
// The most bytes held at once since the last reset (reset: start again from the bytes in use now).
int64_t buffer_bytes_peak(bool reset);

// Grows `buf` to at least `bytes` on `device` (uninitialised; contents not kept): the old
// allocation is freed first, so the two never coexist. Returns its data.
void* grow_buffer(Buffer& buf, size_t bytes, Device device = Device::Cpu);

// Kernel workspace (GEMM packing, attention rows), usually thread_local: grown on demand, kept
// until destroyed; workspace_bytes() counts every live one.
class Workspace {
 public:
  Workspace() = default;
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  // At least `floats` floats (contents not kept when it grows).
  float* grow(size_t floats);
  Buffer& buffer() { return buf_; }

 private:
  Buffer buf_;
};
// Bytes held by all live workspaces (part of buffer_bytes_in_use()).
int64_t workspace_bytes();

}  // namespace rlhf
