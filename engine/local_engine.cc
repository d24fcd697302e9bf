#include "engine/local_engine.h"

#include <rocksdb/db.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/bucket_registry.h"
#include "engine/info_log.h"
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

rocksdb::Status StoreCore::Write(rocksdb::WriteBatch* batch) {
  rocksdb::Status rs = db->Write(write_options, batch);
  if (!IsNoSpace(rs)) return rs;
  // A full disk stops RocksDB: from then on every write fails with this
  // error, even after space is freed, until DB::Resume(). RocksDB's own
  // recovery is off (see NewManualNoSpaceRecovery), so the engine resumes
  // here and retries the write once. Resume flushes the memtables and starts
  // a new WAL; it fails, cheaply, while the disk is still full. The retry is
  // safe: RocksDB refused the failed write before its memtable, so it did not
  // apply.
  if (!db->Resume().ok()) return rs;
  return db->Write(write_options, batch);
}

namespace fs = std::filesystem;

namespace {

// Whether `s`, from opening the store whose lock file is `lock_file`, says
// that someone else holds that lock. RocksDB (env/fs_posix.cc) reports it as
// an IOError naming the file, with no subcode: "While lock file: <dir>/LOCK:
// Resource temporarily unavailable" (fcntl's EAGAIN, or EACCES) when another
// process holds it, and "lock hold by current process, ...: <dir>/LOCK: ..."
// for another Engine in this process. Any other IOError, such as a full disk
// under a directory named "lock", is not a held store.
bool IsHeldLock(const rocksdb::Status& s, const std::string& lock_file) {
  if (!s.IsIOError() || s.subcode() != rocksdb::Status::kNone) return false;
  const std::string text = s.ToString();
  if (text.find("lock hold by current process") != std::string::npos) {
    return text.find(": " + lock_file + ": ") != std::string::npos;
  }
  const std::string refused = "While lock file: " + lock_file + ": ";
  for (int err : {EAGAIN, EACCES}) {
    if (text.find(refused + std::strerror(err)) != std::string::npos) return true;
  }
  return false;
}

Status FromRocksOpen(const rocksdb::Status& s, const std::string& path) {
  const std::string context = "opening the store at '" + path + "'";
  if (IsHeldLock(s, path + "/LOCK")) {
    return Status::Unavailable(context +
                               ": the store is held by another process or another Engine in "
                               "this process; close that one first (" + s.ToString() + ")");
  }
  return FromRocks(s, context);
}

}  // namespace

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
  for (const auto& n : names) descriptors.emplace_back(n, MakeFamilyOptions(options, n));

  auto core = std::make_shared<StoreCore>();
  core->options = options;
  core->log = Log::From(options);
  core->write_options.sync = options.sync;
  rocksdb::Status rs;
  if (options.read_only_follower) {
    std::string tmpl = (fs::temp_directory_path(ec) / "revkv-follower-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Status::IOError("cannot create a follower directory under the temp dir; set TMPDIR");
    }
    core->follower_dir = tmpl;
    db_options.max_open_files = -1;  // required of secondary instances
  } else {
    // Opening would start a new info LOG (rotating the holder's), so probe
    // the LOCK first and refuse before touching anything. The probe is
    // released at once; DB::Open locks for real. RocksDB's Env checks its
    // own table of locked files before it opens the file, so a probe never
    // opens (and on closing, releases) a LOCK this process holds.
    rocksdb::FileLock* probe = nullptr;
    rs = db_options.env->LockFile(path + "/LOCK", &probe);
    if (!rs.ok()) return FromRocksOpen(rs, path);
    db_options.env->UnlockFile(probe).PermitUncheckedError();
  }
  // revkv writes the info LOG itself (engine/info_log.h): RocksDB 7.8's
  // logger can abort the process on a full disk.
  rs = OpenInfoLog(db_options.env, options.read_only_follower ? core->follower_dir : path,
                   &db_options.info_log);
  if (!rs.ok()) return FromRocksOpen(rs, path);
  db_options.info_log->SetInfoLogLevel(db_options.info_log_level);
  db_options.listeners.push_back(NewManualNoSpaceRecovery());
  if (options.read_only_follower) {
    rs = rocksdb::DB::OpenAsSecondary(db_options, path, core->follower_dir, descriptors,
                                      &core->handles, &core->db);
  } else {
    rs = rocksdb::DB::Open(db_options, path, descriptors, &core->handles, &core->db);
  }
  if (!rs.ok()) return FromRocksOpen(rs, path);

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
    rocksdb::WriteBatch batch;
    batch.Put(core->meta, "format", v);
    rs = core->Write(&batch);
    if (!rs.ok()) return FromRocks(rs, "initialising the store at '" + path + "'");
  } else if (!rs.ok() && !rs.IsNotFound()) {
    return FromRocks(rs, "reading the store at '" + path + "'");
  } else if (rs.ok()) {
    const uint64_t version = DecodeBE64(format);
    if (version < kOldestStoreFormatVersion || version > kStoreFormatVersion) {
      return Status::InvalidArgument(
          "the store at '" + path + "' has format version " + std::to_string(version) +
          "; this revkv reads versions " + std::to_string(kOldestStoreFormatVersion) + " to " +
          std::to_string(kStoreFormatVersion) +
          (version > kStoreFormatVersion ? "; open it with the newer revkv that wrote it"
                                         : "; use a matching revkv"));
    }
    // Format 1 is a valid state of format 2 (layout.h "rev/"): upgrading
    // it is one write of the version, before any bucket opens, so a crash
    // leaves either format. A follower reads format 1 as it is, and leaves
    // the upgrade to the store's holder.
    if (version < kStoreFormatVersion && !options.read_only_follower) {
      std::string v;
      AppendBE64(&v, kStoreFormatVersion);
      rocksdb::WriteBatch batch;
      batch.Put(core->meta, "format", v);
      rs = core->Write(&batch);
      if (!rs.ok()) {
        return FromRocks(rs, "upgrading the store at '" + path + "' to format version " +
                                 std::to_string(kStoreFormatVersion));
      }
    }
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

Statistics LocalEngine::GetStatistics() { return core_->stats.Snapshot(0); }

Result<std::string> LocalEngine::ServerVersion() {
  return Status::InvalidArgument(
      "this engine is local: it was opened without NATS servers (Options::nats.servers), so "
      "there is no server to ask");
}

Stats& LocalEngine::stats() { return core_->stats; }

LocalEngine::LocalEngine(std::shared_ptr<StoreCore> core, std::shared_ptr<BucketRegistry> registry)
    : core_(std::move(core)), registry_(std::move(registry)) {}

LocalEngine::~LocalEngine() = default;

rocksdb::DB* LocalEngine::TEST_db() const { return core_->db; }

Result<std::shared_ptr<LockManager>> LocalEngine::Locks(const std::string& bucket_name) {
  const std::string& name = bucket_name.empty() ? core_->options.locks_bucket : bucket_name;
  std::lock_guard<std::mutex> lock(locks_mu_);
  if (auto it = locks_.find(name); it != locks_.end()) return it->second;
  if (!core_->follower_dir.empty()) {
    return Status::InvalidArgument("a read-only follower engine cannot take locks; use the engine "
                                   "that holds the store");
  }
  auto bucket = registry_->Open(name, {});
  if (!bucket.ok()) return bucket.status();
  auto manager = LockManager::Create(*bucket, *bucket, *bucket, 0, false, &core_->stats);
  locks_.emplace(name, manager);
  return manager;
}

Result<std::unique_ptr<Lock>> LocalEngine::Acquire(std::string_view name,
                                                   std::chrono::milliseconds lease,
                                                   std::chrono::milliseconds timeout,
                                                   const LockOptions& options) {
  auto locks = Locks(options.locks_bucket);
  if (!locks.ok()) return locks.status();
  return (*locks)->Acquire(name, lease, timeout, options);
}

Result<std::unique_ptr<Lock>> LocalEngine::TryAcquire(std::string_view name,
                                                      std::chrono::milliseconds lease,
                                                      const LockOptions& options) {
  auto locks = Locks(options.locks_bucket);
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
