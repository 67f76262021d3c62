// KvBlockPool: the paged KV storage of one group of layers of a GenerationSession (session.h).
//
// The session splits the model's layers by attention window: the global layers (window 0) form one
// group, the layers sliding by window W another. A group's block holds `block_size` positions of
// k and v of the group's layers only (KvCache with a slot per held layer, internal.h); each group
// has its own pool of blocks, reference counts, free list and prefix-cache entries, and each
// sequence a block table per group. A sliding group owns one extra all-zero block (`zero_block`)
// that table entries released for lying outside the window point at; it is never allocated nor
// written.
//
// Prefix cache: a full prompt block is entered under the hash chain of the prompt's tokens up to
// and including it (`key`), with its parent key and its own tokens (checked on a hit). Cached
// blocks nobody references wait on a least-recently-used list and are evicted when the pool has no
// free block. Entries are per group and evicted independently.
//
// Reservation: `reserved` is the sum of what admitted sequences may still need of this pool; the
// session keeps it (see GenerationSession::worst_blocks) and checks admission against it.
#pragma once
#include <cstdint>
#include <list>
#include <map>
#include <unordered_map>
#include <vector>

#include "backend.h"
#include "internal.h"

namespace rlhf {
namespace model {

class KvBlockPool {
 public:
  // layers: the model layers this group holds (ascending); model_layers: the model's layer count.
  // window > 0: a sliding group (one zero block more, zeroed through be). The storage lives on be's
  // device.
  KvBlockPool(Backend* be, std::vector<int> layers, int model_layers, int64_t window, int64_t num_blocks,
              int64_t block_size, int64_t kvd, bool bf16);

  int64_t window() const { return window_; }
  bool slides() const { return window_ > 0; }
  const std::vector<int>& layers() const { return layers_; }
  int64_t num_blocks() const { return num_blocks_; }
  KvCache& cache() { return cache_; }
  int32_t zero_block() const { return zero_block_; }
  bool live(int32_t b) const { return b != zero_block_; }

  // A fresh block (one reference): a free one, else the least recently used unreferenced cached
  // block (its prefix-cache entry dropped). Throws Internal when there is none (a reservation bug).
  int32_t alloc();
  // Drops one reference; at zero the block goes to the free list, or to the LRU list when cached.
  void release(int32_t b);
  // One more reference to b (a cached block nobody referenced leaves the LRU list).
  void retain(int32_t b);
  int32_t refs(int32_t b) const { return ref_[b]; }
  // Copies positions [0, slots) of block src to dst, every layer of the group, k and v.
  void copy(int32_t dst, int32_t src, int64_t slots);

  // The cached block entered under key with this parent key and tokens (block_size of them); −1 if none.
  int32_t lookup(uint64_t key, uint64_t parent, const int32_t* tokens) const;
  // Enters block b under key (nothing when the key or the block is already cached).
  void enter(uint64_t key, uint64_t parent, const int32_t* tokens, int32_t b);

  int64_t in_use() const { return in_use_; }  // blocks referenced by a sequence
  int64_t peak_in_use() const { return peak_; }
  int64_t cached_unreferenced() const { return static_cast<int64_t>(lru_.size()); }
  int64_t block_bytes() const;                                        // one block: the group's layers, k and v
  int64_t pool_bytes() const { return cache_.rows * block_bytes(); }  // the zero block included

  int64_t reserved = 0;  // kept by the session: see above
  int64_t released = 0;  // blocks released for lying outside the window (counted by the session)

 private:
  struct Entry {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // valid while unreferenced
  };
  Backend* be_;
  std::vector<int> layers_;
  int64_t window_, num_blocks_, block_size_;
  int32_t zero_block_ = -1;
  KvCache cache_;
  std::vector<int32_t> ref_;  // per block
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;                        // unreferenced cached blocks, least recent first
  std::unordered_map<uint64_t, int32_t> by_key_;  // key → block
  std::map<int32_t, Entry> entries_;              // block → its prefix-cache entry
  std::vector<uint64_t> key_of_;                  // per block: its key (when cached)
  int64_t in_use_ = 0, peak_ = 0;
};

}  // namespace model
}  // namespace rlhf
