#include "kv_block_pool.h"

#include <algorithm>

#include "../core/error.h"

namespace rlhf {
namespace model {

KvBlockPool::KvBlockPool(Backend* be, std::vector<int> layers, int model_layers, int64_t window, int64_t num_blocks,
                         int64_t block_size, int64_t kvd, bool bf16)
    : be_(be), layers_(std::move(layers)), window_(window), num_blocks_(num_blocks), block_size_(block_size) {
  const int64_t G = static_cast<int64_t>(layers_.size());
  cache_.rows = num_blocks + (window > 0 ? 1 : 0), cache_.len = block_size, cache_.kvd = kvd;
  cache_.bf16 = bf16;
  cache_.slot.assign(model_layers, -1);
  for (int64_t i = 0; i < G; ++i) cache_.slot[layers_[i]] = static_cast<int>(i);
  const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
  cache_.buf = Buffer(static_cast<size_t>(2 * G * cache_.rows * block_size * kvd) * elem, false, be->device());
  if (window > 0) {  // the last row: zeros (through the backend: the storage may be device memory)
    zero_block_ = static_cast<int32_t>(num_blocks);
    const int64_t n = block_size * kvd;
    const size_t bytes = static_cast<size_t>(n) * elem;
    for (int l : layers_)
      if (bf16) {
        be->zero(cache_k16(&cache_, l) + zero_block_ * n, bytes);
        be->zero(cache_v16(&cache_, l) + zero_block_ * n, bytes);
      } else {
        be->zero(cache_k(&cache_, l) + zero_block_ * n, bytes);
        be->zero(cache_v(&cache_, l) + zero_block_ * n, bytes);
      }
  }
  ref_.assign(num_blocks, 0);
  key_of_.assign(num_blocks, 0);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KvBlockPool::block_bytes() const {
  return 2 * static_cast<int64_t>(layers_.size()) * block_size_ * cache_.kvd *
         static_cast<int64_t>(cache_.bf16 ? sizeof(uint16_t) : sizeof(float));
}

int32_t KvBlockPool::alloc() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    RLHF_CHECK(!lru_.empty(), ErrorCode::Internal, "GenerationSession: no free KV block (window ", window_, ")");
    b = lru_.front();  // evict the least recently used cached prompt block
    lru_.pop_front();
    by_key_.erase(key_of_[b]);
    entries_.erase(b);
  }
  ref_[b] = 1;
  peak_ = std::max(peak_, ++in_use_);
  return b;
}

void KvBlockPool::release(int32_t b) {
  if (--ref_[b] > 0) return;
  --in_use_;
  auto it = entries_.find(b);
  if (it == entries_.end()) {
    free_.push_back(b);
  } else {
    lru_.push_back(b);
    it->second.lru = std::prev(lru_.end());
  }
}

void KvBlockPool::retain(int32_t b) {
  if (ref_[b] == 0) {
    lru_.erase(entries_.at(b).lru);
    peak_ = std::max(peak_, ++in_use_);
  }
  ++ref_[b];
}

void KvBlockPool::copy(int32_t dst, int32_t src, int64_t slots) {
  const int64_t n = block_size_ * cache_.kvd;
  if (cache_.bf16) {
    const Device d = be_->device();
    const size_t bytes = static_cast<size_t>(slots * cache_.kvd) * sizeof(uint16_t);
    for (int l : layers_) {
      be_->copy(cache_k16(&cache_, l) + dst * n, d, cache_k16(&cache_, l) + src * n, d, bytes);
      be_->copy(cache_v16(&cache_, l) + dst * n, d, cache_v16(&cache_, l) + src * n, d, bytes);
    }
    return;
  }
  for (int l : layers_) {
    be_->copy_rows(cache_k(&cache_, l) + dst * n, cache_k(&cache_, l) + src * n, slots * cache_.kvd);
    be_->copy_rows(cache_v(&cache_, l) + dst * n, cache_v(&cache_, l) + src * n, slots * cache_.kvd);
  }
}

int32_t KvBlockPool::lookup(uint64_t key, uint64_t parent, const int32_t* tokens) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  const Entry& e = entries_.at(it->second);
  if (e.parent != parent || !std::equal(e.tokens.begin(), e.tokens.end(), tokens)) return -1;
  return it->second;
}

void KvBlockPool::enter(uint64_t key, uint64_t parent, const int32_t* tokens, int32_t b) {
  if (by_key_.count(key) || entries_.count(b)) return;
  by_key_[key] = b;
  key_of_[b] = key;
  Entry& e = entries_[b];
  e.parent = parent;
  e.tokens.assign(tokens, tokens + block_size_);
}

}  // namespace model
}  // namespace rlhf
