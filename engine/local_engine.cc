#include "engine/local_engine.h"

#include <rocksdb/db.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "engine/layout.h"
#include "engine/rocks.h"
#include "revkv/validation.h"

namespace revkv {

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
    // RocksDB rotates its info LOG before it checks the store's LOCK file,
    // so a refused open would rename a live holder's LOG and leave a file
    // behind each time. Probe the LOCK first and refuse before touching
    // anything. (The probe is released at once; DB::Open locks for real.)
    rocksdb::FileLock* probe = nullptr;
    rs = db_options.env->LockFile(path + "/LOCK", &probe);
    if (!rs.ok()) return FromRocks(rs, "opening the store at '" + path + "'");
    db_options.env->UnlockFile(probe).PermitUncheckedError();
    rs = rocksdb::DB::Open(db_options, path, descriptors, &core->handles, &core->db);
  }
  if (!rs.ok()) return FromRocks(rs, "opening the store at '" + path + "'");

  auto registry = std::make_shared<BucketRegistry>(core);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == kMetaFamily) {
      core->meta = core->handles[i];
    } else {
      registry->AddFamily(names[i], core->handles[i]);
    }
  }
  std::unique_ptr<LocalEngine> engine(new LocalEngine(core, std::move(registry)));

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

Result<std::shared_ptr<Bucket>> LocalEngine::OpenBucket(std::string_view name,
                                                        const BucketOptions& options) {
  if (!options.create_if_missing) {
    const std::vector<std::string> names = registry_->List();
    if (ValidateBucketName(name).ok() &&
        std::find(names.begin(), names.end(), name) == names.end()) {
      return Status::NotFound("bucket '" + std::string(name) + "' does not exist in the store; "
                              "open it with BucketOptions::create_if_missing to create it");
    }
  }
  auto bucket = registry_->Open(name, options);
  if (!bucket.ok()) return bucket.status();
  return std::shared_ptr<Bucket>(std::move(*bucket));
}

std::vector<std::string> LocalEngine::ListBuckets() { return registry_->List(); }

LocalEngine::~LocalEngine() = default;

Result<std::shared_ptr<LockManager>> LocalEngine::Locks() {
  std::lock_guard<std::mutex> lock(locks_mu_);
  if (locks_) return locks_;
  if (!core_->follower_dir.empty()) {
    return Status::InvalidArgument("a read-only follower engine cannot take locks; use the engine "
                                   "that holds the store");
  }
  auto bucket = registry_->Open(core_->options.locks_bucket, {});
  if (!bucket.ok()) return bucket.status();
  auto local = std::dynamic_pointer_cast<LocalBucket>(*bucket);
  locks_ = LockManager::Create(local, local);
  return locks_;
}

Result<std::unique_ptr<Lock>> LocalEngine::Acquire(std::string_view name,
                                                   std::chrono::milliseconds lease,
                                                   std::chrono::milliseconds timeout,
                                                   const LockOptions& options) {
  auto locks = Locks();
  if (!locks.ok()) return locks.status();
  return (*locks)->Acquire(name, lease, timeout, options);
}

Result<std::unique_ptr<Lock>> LocalEngine::TryAcquire(std::string_view name,
                                                      std::chrono::milliseconds lease,
                                                      const LockOptions& options) {
  auto locks = Locks();
  if (!locks.ok()) return locks.status();
  return (*locks)->Acquire(name, lease, std::nullopt, options);
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
