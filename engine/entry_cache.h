// EntryCache: a bounded in-memory cache of a bucket's latest entries, for
// hot keys (Options::entry_cache_bytes). Reads look here before the store;
// the commit path updates every committed key here after the store has it,
// so the cache never holds an entry older than the store's once the write
// returns.
//
// A read that missed fills the cache with what it read from the store, but
// only if no commit touched the key's shard in between (the stamp taken
// before the store read): otherwise it could put back an entry a commit had
// just replaced. Sharded by key, each shard a map with second-chance (CLOCK) eviction by
// bytes.

#ifndef REVKV_ENGINE_ENTRY_CACHE_H_
#define REVKV_ENGINE_ENTRY_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "revkv/entry.h"

namespace revkv::engine {

class EntryCache {
 public:
  // `capacity_bytes`: the bound on what the entries take (keys, values and
  // a fixed overhead each), split evenly over the shards.
  explicit EntryCache(size_t capacity_bytes);
  EntryCache(const EntryCache&) = delete;
  EntryCache& operator=(const EntryCache&) = delete;

  // Copies the cached latest entry of `key` (tombstones too) to `*out`.
  bool Lookup(std::string_view key, Entry* out);
  // The same without the key, for Get: the value and what decides whether
  // the entry is readable.
  bool LookupValue(std::string_view key, std::string* value, Operation* op, uint64_t* revision,
                   int64_t* created_ns, int64_t* ttl_ns);
  // Taken before a read of the store whose result may fill the cache.
  uint64_t Stamp(std::string_view key);
  // Caches `entry`, read from the store after Stamp() returned `stamp`, if
  // no commit touched its shard since.
  void Fill(const Entry& entry, uint64_t stamp);
  // A committed entry: now the key's latest.
  void Commit(const Entry& entry);
  // The key changed without an entry (an expired tombstone removed).
  void Invalidate(std::string_view key);
  void Clear();

  // What the cached entries take, by the count Fill and Commit keep.
  size_t bytes() const;
  size_t capacity() const { return per_shard_ * kShards; }

 private:
  static constexpr size_t kShards = 64;
  static constexpr size_t kOverhead = 96;  // map node, list node, Entry fields

  struct Node {
    Entry entry;
    bool referenced = false;
  };
  struct Shard {
    mutable std::mutex mu;
    uint64_t generation = 0;  // bumped by every commit and invalidation
    // Newest first. A hit only marks its entry referenced (no list writes
    // under the lock); eviction gives a referenced entry a second chance.
    std::list<Node> lru;
    std::unordered_map<std::string_view, std::list<Node>::iterator> index;  // views into lru
    size_t bytes = 0;
  };

  static size_t Cost(const Entry& e) { return e.key.size() + e.value.size() + kOverhead; }
  Shard& ShardOf(std::string_view key);
  // Puts `entry` first in `s`, replacing the key's, then evicts to the bound.
  void PutLocked(Shard& s, const Entry& entry);
  void EraseLocked(Shard& s, std::string_view key);

  const size_t per_shard_;
  std::vector<Shard> shards_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_ENTRY_CACHE_H_
