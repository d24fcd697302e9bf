#include "engine/entry_cache.h"

#include <functional>
#include <iterator>

namespace revkv::engine {

EntryCache::EntryCache(size_t capacity_bytes)
    : per_shard_(capacity_bytes / kShards), shards_(kShards) {}

EntryCache::Shard& EntryCache::ShardOf(std::string_view key) {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

bool EntryCache::Lookup(std::string_view key, Entry* out) {
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return false;
  it->second->referenced = true;
  *out = it->second->entry;
  return true;
}

bool EntryCache::LookupValue(std::string_view key, std::string* value, Operation* op,
                             uint64_t* revision, int64_t* created_ns, int64_t* ttl_ns) {
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return false;
  it->second->referenced = true;
  const Entry& e = it->second->entry;
  value->assign(e.value);
  *op = e.operation;
  *revision = e.revision;
  *created_ns = e.created_ns;
  *ttl_ns = e.ttl_ns;
  return true;
}

uint64_t EntryCache::Stamp(std::string_view key) {
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  return s.generation;
}

void EntryCache::Fill(const Entry& entry, uint64_t stamp) {
  Shard& s = ShardOf(entry.key);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.generation != stamp) return;  // a commit may have replaced what was read
  PutLocked(s, entry);
}

void EntryCache::Commit(const Entry& entry) {
  Shard& s = ShardOf(entry.key);
  std::lock_guard<std::mutex> lock(s.mu);
  ++s.generation;
  PutLocked(s, entry);
}

void EntryCache::Invalidate(std::string_view key) {
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  ++s.generation;
  EraseLocked(s, key);
}

void EntryCache::Clear() {
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    ++s.generation;
    s.index.clear();
    s.lru.clear();
    s.bytes = 0;
  }
}

size_t EntryCache::bytes() const {
  size_t total = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    total += s.bytes;
  }
  return total;
}

void EntryCache::EraseLocked(Shard& s, std::string_view key) {
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  s.bytes -= Cost(it->second->entry);
  auto node = it->second;
  s.index.erase(it);
  s.lru.erase(node);
}

void EntryCache::PutLocked(Shard& s, const Entry& entry) {
  EraseLocked(s, entry.key);
  if (Cost(entry) > per_shard_) return;  // would not fit even alone
  s.lru.push_front(Node{entry, false});
  s.index.emplace(s.lru.front().entry.key, s.lru.begin());
  s.bytes += Cost(entry);
  while (s.bytes > per_shard_) {
    Node& last = s.lru.back();
    if (last.referenced && &last != &s.lru.front()) {
      last.referenced = false;  // read since it was put: one more round
      s.lru.splice(s.lru.begin(), s.lru, std::prev(s.lru.end()));
      continue;
    }
    s.bytes -= Cost(last.entry);
    s.index.erase(last.entry.key);
    s.lru.pop_back();
  }
}

}  // namespace revkv::engine
