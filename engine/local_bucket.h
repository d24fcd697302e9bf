// LocalBucket: a bucket stored in one RocksDB column family of the local
// store (layout.h). Reads take no lock; writes to one bucket are serialized
// by a mutex so that the revision counter, the compare-and-swap check and the
// WriteBatch that commits them act as one step.

#ifndef REVKV_ENGINE_LOCAL_BUCKET_H_
#define REVKV_ENGINE_LOCAL_BUCKET_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "engine/record_codec.h"
#include "engine/store_core.h"
#include "revkv/bucket.h"

namespace revkv::engine {

class LocalBucket final : public Bucket {
 public:
  LocalBucket(std::shared_ptr<StoreCore> core, std::string name, rocksdb::ColumnFamilyHandle* cf,
              rocksdb::ColumnFamilyHandle* log_cf, BucketConfigValues config,
              uint64_t last_revision);

  const std::string& name() const override { return name_; }
  int history() const override { return config_.history; }
  uint32_t max_value_size() const override { return config_.max_value_size; }

  Result<std::string> Get(std::string_view key) override;
  Result<Entry> GetEntry(std::string_view key) override;
  Result<uint64_t> Put(std::string_view key, std::string_view value) override;
  Result<uint64_t> Create(std::string_view key, std::string_view value) override;
  Result<uint64_t> Update(std::string_view key, std::string_view value,
                          uint64_t expected_revision) override;
  Result<uint64_t> Delete(std::string_view key, std::optional<uint64_t> expected_revision) override;
  Result<uint64_t> Purge(std::string_view key, std::optional<uint64_t> expected_revision) override;
  Result<std::vector<std::string>> Keys(std::string_view filter) override;
  Result<std::vector<Entry>> History(std::string_view key) override;
  Result<std::vector<Entry>> ChangesSince(uint64_t after_revision, size_t limit) override;
  uint64_t LastRevision() override;

  rocksdb::ColumnFamilyHandle* TEST_family() const { return cf_; }
  rocksdb::ColumnFamilyHandle* TEST_log_family() const { return log_cf_; }

 private:
  // What must hold before a write commits.
  enum class Precondition { kNone, kAbsentOrTombstone, kRevision };

  Result<uint64_t> Commit(Operation op, std::string_view key, std::string_view value,
                          Precondition pre, uint64_t expected_revision);
  Status ReadOnlyError() const;
  std::string Describe(std::string_view key) const;

  // Constant after construction.
  const std::shared_ptr<StoreCore> core_;
  const std::string name_;
  rocksdb::ColumnFamilyHandle* const cf_;      // records
  rocksdb::ColumnFamilyHandle* const log_cf_;  // revision log
  const BucketConfigValues config_;

  // The revision and operation of recently written keys, kept only for
  // history-1 buckets, where they are all a write needs to know about the
  // record it replaces. Every write goes through Commit() under write_mu_,
  // so the cache never disagrees with the store.
  struct KeyState {
    uint64_t revision;
    Operation operation;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  static constexpr size_t kWriteCacheEntries = 1 << 16;

  std::mutex write_mu_;  // serializes Commit()
  std::unordered_map<std::string, KeyState, StringHash, std::equal_to<>>
      write_cache_;                      // GUARDED_BY(write_mu_)
  std::atomic<uint64_t> last_revision_;  // written under write_mu_ after a commit
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_BUCKET_H_
