#include "engine/bucket_registry.h"

#include <rocksdb/db.h>

#include "engine/layout.h"
#include "engine/lock_fence.h"
#include "engine/rocks.h"
#include "revkv/validation.h"

namespace revkv::engine {

void BucketRegistry::AddFamily(const std::string& family, rocksdb::ColumnFamilyHandle* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  if (family.rfind(kBucketFamilyPrefix, 0) == 0) {
    families_[family.substr(std::string_view(kBucketFamilyPrefix).size())].records = handle;
  } else if (family.rfind(kLogFamilyPrefix, 0) == 0) {
    families_[family.substr(std::string_view(kLogFamilyPrefix).size())].log = handle;
  }
}

Result<BucketConfigValues> BucketRegistry::LoadOrCreateConfig(const std::string& name,
                                                          const BucketOptions& options) {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, ConfigKey(name), &raw);
  if (rs.ok()) return DecodeBucketConfig(raw, "settings of bucket '" + name + "'");
  if (!rs.IsNotFound()) return FromRocks(rs, "reading the settings of bucket '" + name + "'");
  BucketConfigValues cfg;
  cfg.history = options.history == 0 ? 1 : options.history;
  cfg.max_value_size = options.max_value_size == 0 ? kDefaultMaxValueSize : options.max_value_size;
  if (!core_->follower_dir.empty()) return cfg;
  rocksdb::WriteBatch batch;
  batch.Put(core_->meta, ConfigKey(name), EncodeBucketConfig(cfg));
  rs = core_->Write(&batch);
  if (!rs.ok()) return FromRocks(rs, "saving the settings of bucket '" + name + "'");
  return cfg;
}

Result<std::shared_ptr<LocalBucket>> BucketRegistry::Open(std::string_view name_view,
                                                          const BucketOptions& options) {
  if (Status s = ValidateBucketName(name_view); !s.ok()) return s;
  if (options.history < 0 || options.history > kMaxHistory) {
    return Status::InvalidArgument("history " + std::to_string(options.history) +
                                   " is out of range; use 1.." + std::to_string(kMaxHistory) +
                                   " (or 0 to keep the stored value)");
  }
  if (options.max_value_size > kMaxMaxValueSize) {
    return Status::InvalidArgument("max_value_size " + std::to_string(options.max_value_size) +
                                   " is above the limit of " + std::to_string(kMaxMaxValueSize) +
                                   " bytes");
  }
  const std::string name(name_view);
  std::lock_guard<std::mutex> lock(mu_);

  std::shared_ptr<LocalBucket> bucket;
  if (auto it = buckets_.find(name); it != buckets_.end()) {
    bucket = it->second;
  } else {
    Families& fam = families_[name];
    if (fam.records == nullptr || fam.log == nullptr) {
      if (!core_->follower_dir.empty()) {
        families_.erase(name);
        return Status::NotFound("bucket '" + name + "' does not exist in the store at '" +
                                core_->options.path + "'; create it through the holding engine");
      }
      for (auto [handle, family] : {std::pair{&fam.records, BucketFamily(name)},
                                    std::pair{&fam.log, LogFamily(name)}}) {
        if (*handle != nullptr) continue;
        rocksdb::Status rs =
            core_->db->CreateColumnFamily(MakeFamilyOptions(core_->options, family), family, handle);
        if (!rs.ok()) {
          if (fam.records == nullptr && fam.log == nullptr) families_.erase(name);
          return FromRocks(rs, "creating bucket '" + name + "'");
        }
        core_->handles.push_back(*handle);
      }
    }
    auto cfg = LoadOrCreateConfig(name, options);
    if (!cfg.ok()) return cfg.status();
    auto last = RecoverLastRevision(*core_, name, fam.log);
    if (!last.ok()) return last.status();
    if (!fence_) {
      fence_ = std::make_shared<LockRecordFence>(weak_from_this(), core_->options.locks_bucket);
    }
    bucket = std::make_shared<LocalBucket>(core_, fence_, name, fam.records, fam.log, *cfg, *last);
    buckets_.emplace(name, bucket);
  }

  std::string diffs;
  if (options.history != 0 && options.history != bucket->history()) {
    diffs += " history " + std::to_string(bucket->history()) + " (asked " +
             std::to_string(options.history) + ");";
  }
  if (options.max_value_size != 0 && options.max_value_size != bucket->max_value_size()) {
    diffs += " max_value_size " + std::to_string(bucket->max_value_size()) + " (asked " +
             std::to_string(options.max_value_size) + ");";
  }
  if (!diffs.empty()) {
    diffs.pop_back();
    return Status::InvalidArgument("bucket '" + name + "' exists with other settings:" + diffs +
                                   "; pass 0 to keep the stored settings");
  }
  return bucket;
}

std::vector<std::string> BucketRegistry::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, fam] : families_) {
    if (fam.records != nullptr && fam.log != nullptr) out.push_back(name);
  }
  return out;
}

}  // namespace revkv::engine
