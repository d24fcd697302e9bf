#include "engine/local_engine.h"

#include <rocksdb/db.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "engine/layout.h"
#include "engine/rocks.h"
#include "revkv/validation.h"

namespace revkv {

Result<std::unique_ptr<Engine>> Engine::Open(const Options& options) {
  auto engine = engine::LocalEngine::Open(options);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(std::move(*engine));
}

namespace engine {

StoreCore::~StoreCore() {
  if (db != nullptr) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();
    delete db;
  }
  if (!follower_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(follower_dir, ec);
  }
}

namespace fs = std::filesystem;

Result<std::unique_ptr<LocalEngine>> LocalEngine::Open(const Options& options) {
  if (options.path.empty()) {
    return Status::InvalidArgument("Options::path is empty; give the store's directory");
  }
  if (options.block_cache_bytes == 0) {
    return Status::InvalidArgument("Options::block_cache_bytes is 0; give at least 1 MiB");
  }
  const std::string& path = options.path;
  std::error_code ec;
  const bool exists = fs::exists(fs::path(path) / "CURRENT", ec);
  if (!exists) {
    if (options.read_only_follower || !options.create_if_missing) {
      return Status::NotFound("no revkv store at '" + path +
                              "'; create it by opening it once with create_if_missing");
    }
    fs::create_directories(path, ec);
    if (ec) {
      return Status::IOError("cannot create directory '" + path + "': " + ec.message() +
                             "; check the path and its permissions");
    }
  }

  rocksdb::Options db_options = MakeDBOptions(options);
  std::vector<std::string> names;
  if (exists) {
    rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
    if (!rs.ok()) return FromRocks(rs, "reading the store at '" + path + "'");
  }
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  if (!has(rocksdb::kDefaultColumnFamilyName)) names.push_back(rocksdb::kDefaultColumnFamilyName);
  if (!has(kMetaFamily)) {
    if (options.read_only_follower) {
      // The holder may still be creating the store; say so rather than
      // calling a young store damaged.
      return Status::NotFound("the store at '" + path +
                              "' is not initialised yet (no meta family); retry once its holder "
                              "has opened it");
    }
    names.push_back(kMetaFamily);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, MakeFamilyOptions(options));

  auto core = std::make_shared<StoreCore>();
  core->options = options;
  core->write_options.sync = options.sync;
  rocksdb::Status rs;
  if (options.read_only_follower) {
    std::string tmpl = (fs::temp_directory_path(ec) / "revkv-follower-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Status::IOError("cannot create a follower directory under the temp dir; set TMPDIR");
    }
    core->follower_dir = tmpl;
    db_options.max_open_files = -1;  // required of secondary instances
    rs = rocksdb::DB::OpenAsSecondary(db_options, path, core->follower_dir, descriptors,
                                      &core->handles, &core->db);
  } else {
    rs = rocksdb::DB::Open(db_options, path, descriptors, &core->handles, &core->db);
  }
  if (!rs.ok()) return FromRocks(rs, "opening the store at '" + path + "'");

  std::unique_ptr<LocalEngine> engine(new LocalEngine(core));
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    if (n == kMetaFamily) {
      core->meta = core->handles[i];
    } else if (n.rfind(kBucketFamilyPrefix, 0) == 0) {
      engine->families_[n.substr(std::string_view(kBucketFamilyPrefix).size())].records =
          core->handles[i];
    } else if (n.rfind(kLogFamilyPrefix, 0) == 0) {
      engine->families_[n.substr(std::string_view(kLogFamilyPrefix).size())].log =
          core->handles[i];
    }
  }

  std::string format;
  rs = core->db->Get(rocksdb::ReadOptions(), core->meta, "format", &format);
  if (rs.IsNotFound() && !options.read_only_follower) {
    std::string v;
    AppendBE64(&v, kStoreFormatVersion);
    rs = core->db->Put(core->write_options, core->meta, "format", v);
    if (!rs.ok()) return FromRocks(rs, "initialising the store at '" + path + "'");
  } else if (!rs.ok() && !rs.IsNotFound()) {
    return FromRocks(rs, "reading the store at '" + path + "'");
  } else if (rs.ok() && DecodeBE64(format) != kStoreFormatVersion) {
    return Status::InvalidArgument("the store at '" + path + "' has format version " +
                                   std::to_string(DecodeBE64(format)) + "; this revkv reads " +
                                   std::to_string(kStoreFormatVersion) + "; use a matching revkv");
  }
  return engine;
}

Result<BucketConfigValues> LocalEngine::LoadOrCreateConfig(const std::string& name,
                                                          const BucketOptions& options) {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, ConfigKey(name), &raw);
  if (rs.ok()) return DecodeBucketConfig(raw, "settings of bucket '" + name + "'");
  if (!rs.IsNotFound()) return FromRocks(rs, "reading the settings of bucket '" + name + "'");
  BucketConfigValues cfg;
  cfg.history = options.history == 0 ? 1 : options.history;
  cfg.max_value_size = options.max_value_size == 0 ? kDefaultMaxValueSize : options.max_value_size;
  if (!core_->follower_dir.empty()) return cfg;
  rs = core_->db->Put(core_->write_options, core_->meta, ConfigKey(name), EncodeBucketConfig(cfg));
  if (!rs.ok()) return FromRocks(rs, "saving the settings of bucket '" + name + "'");
  return cfg;
}

Result<std::shared_ptr<Bucket>> LocalEngine::OpenBucket(std::string_view name_view,
                                                        const BucketOptions& options) {
  if (Status s = ValidateBucketName(name_view); !s.ok()) return s;
  if (options.history < 0 || options.history > kMaxHistory) {
    return Status::InvalidArgument("history " + std::to_string(options.history) +
                                   " is out of range; use 1..64 (or 0 to keep the stored value)");
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
            core_->db->CreateColumnFamily(MakeFamilyOptions(core_->options), family, handle);
        if (!rs.ok()) {
          if (fam.records == nullptr && fam.log == nullptr) families_.erase(name);
          return FromRocks(rs, "creating bucket '" + name + "'");
        }
        core_->handles.push_back(*handle);
      }
    }
    auto cfg = LoadOrCreateConfig(name, options);
    if (!cfg.ok()) return cfg.status();
    std::string counter;
    rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, CounterKey(name), &counter);
    if (!rs.ok() && !rs.IsNotFound()) {
      return FromRocks(rs, "reading the revision counter of bucket '" + name + "'");
    }
    uint64_t last = rs.ok() ? DecodeBE64(counter) : 0;
    bucket = std::make_shared<LocalBucket>(core_, name, fam.records, fam.log, *cfg, last);
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
  return std::shared_ptr<Bucket>(bucket);
}

std::vector<std::string> LocalEngine::ListBuckets() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, fam] : families_) {
    if (fam.records != nullptr && fam.log != nullptr) out.push_back(name);
  }
  return out;
}

Status LocalEngine::CatchUp() {
  if (core_->follower_dir.empty()) {
    return Status::InvalidArgument("CatchUp is for read-only follower engines; this engine holds "
                                   "the store and is always current");
  }
  return FromRocks(core_->db->TryCatchUpWithPrimary(), "catching up with the store's holder");
}

}  // namespace engine
}  // namespace revkv
