// revkv engine vs raw RocksDB, in one binary, with the same options and data.
//
// Every store (raw or engine) is opened with revkv::engine::MakeDBOptions /
// MakeFamilyOptions for the same revkv::Options (sync = false, default 64 MiB
// block cache, which MakeFamilyOptions shares across the process), lives in
// its own mkdtemp directory under /tmp, and is removed at exit.
//
// Each benchmark family gets its own store, created and preloaded on first
// use (not per iteration, not per run): kNumKeys keys "key.000000".. with
// kValueSize-byte values, then the data family is compacted (memtable flushed,
// one bottommost SST) and every key is read once to warm the block cache, so
// reads go through the block cache and bloom filter on both sides. The Get
// pair is read-only; the write pairs each mutate their own store, so no
// family sees another's writes.
//
// Pairs (report.py matches them by name and thread count):
//   BM_RawGet            vs BM_EngineGet       random existing key, value copied
//                                              into a fresh std::string
//   BM_RawPut            vs BM_EnginePut       overwrite a random existing key
//   BM_RawGetWriteBatch  vs BM_EngineUpdate    compare-and-swap update
// What each side does is spelled out above each benchmark.
//
// All benchmarks use real (wall) time: with ->Threads(4) the reported time per
// iteration and items_per_second are then wall-clock throughput over all
// threads, not the sum of the threads' CPU time.

#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/version.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/layout.h"
#include "engine/local_bucket.h"
#include "engine/local_engine.h"
#include "engine/record_codec.h"
#include "engine/rocks.h"
#include "revkv/revkv.h"

namespace {

namespace eng = revkv::engine;

constexpr int kNumKeys = 10000;
constexpr size_t kValueSize = 100;
constexpr int kNumValues = 16;  // distinct new values cycled through by writers
constexpr const char* kBucketName = "bench";

revkv::Options BenchOptions(const std::string& path) {
  revkv::Options o;
  o.path = path;
  o.create_if_missing = true;
  o.sync = false;
  // block_cache_bytes: default.
  return o;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------
// Shared data, built once and identical for both sides.

const std::vector<std::string>& Keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    out.reserve(kNumKeys);
    char buf[32];
    for (int i = 0; i < kNumKeys; ++i) {
      std::snprintf(buf, sizeof(buf), "key.%06d", i);
      out.emplace_back(buf);
    }
    return out;
  }();
  return keys;
}

std::string MakeValue(uint64_t seed) {
  std::string v(kValueSize, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < kValueSize; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = static_cast<char>('a' + (x % 26));
  }
  return v;
}

// Values the write benchmarks store, pre-built so that building them is not
// timed.
const std::vector<std::string>& NewValues() {
  static const std::vector<std::string> values = [] {
    std::vector<std::string> out;
    for (int i = 0; i < kNumValues; ++i) out.push_back(MakeValue(1000003 + i));
    return out;
  }();
  return values;
}

// The size of the record the engine writes for one of our keys and values
// (engine/record_codec.cc, history 1 so no older-revision list). The raw
// update baseline writes records of exactly this size.
size_t EngineRecordSize() {
  static const size_t size = [] {
    revkv::Entry e;
    e.key = Keys()[0];
    e.value = MakeValue(0);
    e.revision = 1;
    e.created_ns = NowNs();
    e.operation = revkv::Operation::kPut;
    return eng::EncodeRecord(e, {}).size();
  }();
  return size;
}

// A raw record of EngineRecordSize() bytes: BE64 revision, BE64 created_ns,
// zero padding, then the value at the end. Only the revision is read back.
constexpr size_t kRawHeaderFixed = 16;
void FillRawRecord(std::string* rec, uint64_t revision, int64_t created_ns,
                   std::string_view value) {
  const size_t size = EngineRecordSize();
  rec->assign(size, '\0');
  for (int i = 0; i < 8; ++i) {
    (*rec)[i] = static_cast<char>(revision >> (56 - 8 * i));
    (*rec)[8 + i] = static_cast<char>(static_cast<uint64_t>(created_ns) >> (56 - 8 * i));
  }
  std::memcpy(rec->data() + size - value.size(), value.data(), value.size());
}

// A cheap per-thread PRNG (xorshift64*) so both sides pay the same for key
// choice.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t Index(size_t n) { return static_cast<size_t>(Next() % n); }
};

// ---------------------------------------------------------------------------
// Stores.

std::string MakeTempDir(const std::string& family, std::string* err) {
  std::string tmpl = "/tmp/revkv-bench-" + family + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    *err = "mkdtemp(" + tmpl + ") failed: " + std::strerror(errno);
    return {};
  }
  return tmpl;
}

struct RawStore {
  std::string dir;
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* data = nullptr;  // like a bucket's record family
  rocksdb::ColumnFamilyHandle* log = nullptr;   // like a bucket's log family
  rocksdb::ColumnFamilyHandle* meta = nullptr;  // like the engine's meta family
  rocksdb::WriteOptions write_options;
  std::mutex write_mu;         // like LocalBucket::write_mu_
  uint64_t last_revision = 0;  // guarded by write_mu

  ~RawStore() {
    if (db != nullptr) {
      for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
      db->Close().PermitUncheckedError();
      delete db;
    }
  }
};

struct EngineStore {
  std::string dir;
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;
};

// How a family's store is preloaded.
enum class RawPreload {
  kPlainValues,  // key -> 100-byte value (Get, Put)
  kRecords,      // key -> engine-sized record, revision log, counter (update)
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<RawStore>> raw;
  std::map<std::string, std::unique_ptr<EngineStore>> engine;
  std::vector<std::string> dirs;
};

// Never destroyed: CloseAllStores() runs explicitly from main (and from
// atexit as a fallback), before RocksDB's own statics go away.
Registry& Reg() {
  static Registry* r = new Registry;
  return *r;
}

void CloseAllStores() {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  r.engine.clear();  // closes each Engine (bucket then engine)
  r.raw.clear();
  for (const auto& d : r.dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
    if (ec) {
      std::fprintf(stderr, "warning: could not remove %s: %s\n", d.c_str(), ec.message().c_str());
    }
  }
  r.dirs.clear();
}

void RegisterCleanupOnce() {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(CloseAllStores); });
}

std::unique_ptr<RawStore> OpenRaw(const std::string& family, RawPreload preload, std::string* err) {
  auto store = std::make_unique<RawStore>();
  store->dir = MakeTempDir(family, err);
  if (store->dir.empty()) return nullptr;
  Reg().dirs.push_back(store->dir);

  const revkv::Options opts = BenchOptions(store->dir);
  rocksdb::Options db_options = eng::MakeDBOptions(opts);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  cfs.emplace_back(rocksdb::kDefaultColumnFamilyName, eng::MakeFamilyOptions(opts));
  cfs.emplace_back(eng::kMetaFamily, eng::MakeFamilyOptions(opts));
  cfs.emplace_back(eng::BucketFamily(kBucketName), eng::MakeFamilyOptions(opts));
  cfs.emplace_back(eng::LogFamily(kBucketName), eng::MakeFamilyOptions(opts));
  rocksdb::Status s = rocksdb::DB::Open(db_options, store->dir, cfs, &store->handles, &store->db);
  if (!s.ok()) {
    *err = "raw open " + store->dir + ": " + s.ToString();
    return nullptr;
  }
  store->meta = store->handles[1];
  store->data = store->handles[2];
  store->log = store->handles[3];
  store->write_options.sync = opts.sync;

  const auto& keys = Keys();
  const std::string counter_key = eng::CounterKey(kBucketName);
  std::string rec;
  for (int i = 0; i < kNumKeys; ++i) {
    const std::string value = MakeValue(static_cast<uint64_t>(i));
    if (preload == RawPreload::kPlainValues) {
      s = store->db->Put(store->write_options, store->data, keys[i], value);
    } else {
      const uint64_t rev = ++store->last_revision;
      FillRawRecord(&rec, rev, NowNs(), value);
      std::string counter;
      eng::AppendBE64(&counter, rev);
      rocksdb::WriteBatch batch;
      s = batch.Put(store->data, keys[i], rec);
      if (s.ok()) s = batch.Put(store->log, eng::RevisionKey(rev), keys[i]);
      if (s.ok()) s = batch.Put(store->meta, counter_key, counter);
      if (s.ok()) s = store->db->Write(store->write_options, &batch);
    }
    if (!s.ok()) {
      *err = "raw preload: " + s.ToString();
      return nullptr;
    }
  }
  // Flush the memtable and compact to one bottommost file.
  s = store->db->CompactRange(rocksdb::CompactRangeOptions(), store->data, nullptr, nullptr);
  if (s.ok()) s = store->db->CompactRange(rocksdb::CompactRangeOptions(), store->log, nullptr, nullptr);
  if (s.ok()) s = store->db->Flush(rocksdb::FlushOptions(), store->meta);
  if (!s.ok()) {
    *err = "raw compact: " + s.ToString();
    return nullptr;
  }
  // Warm the (shared) block cache: read every key once.
  for (const auto& key : keys) {
    rocksdb::PinnableSlice slice;
    s = store->db->Get(rocksdb::ReadOptions(), store->data, key, &slice);
    if (!s.ok()) {
      *err = "raw warm-up read of " + key + ": " + s.ToString();
      return nullptr;
    }
  }
  return store;
}

std::unique_ptr<EngineStore> OpenEngine(const std::string& family, std::string* err) {
  auto store = std::make_unique<EngineStore>();
  store->dir = MakeTempDir(family, err);
  if (store->dir.empty()) return nullptr;
  Reg().dirs.push_back(store->dir);

  revkv::Options options = BenchOptions(store->dir);
  // The cached family holds every key: Get of a hot key.
  if (family == "EngineGetCached") options.entry_cache_bytes = 64 << 20;
  auto engine = revkv::Engine::Open(options);
  if (!engine.ok()) {
    *err = "engine open: " + engine.status().ToString();
    return nullptr;
  }
  store->engine = std::move(*engine);
  auto bucket = store->engine->OpenBucket(kBucketName);  // history 1, as the raw side
  if (!bucket.ok()) {
    *err = "engine open bucket: " + bucket.status().ToString();
    return nullptr;
  }
  store->bucket = std::move(*bucket);
  if (store->bucket->history() != 1) {
    *err = "engine bucket history is " + std::to_string(store->bucket->history()) + ", expected 1";
    return nullptr;
  }

  const auto& keys = Keys();
  for (int i = 0; i < kNumKeys; ++i) {
    auto r = store->bucket->Put(keys[i], MakeValue(static_cast<uint64_t>(i)));
    if (!r.ok()) {
      *err = "engine preload: " + r.status().ToString();
      return nullptr;
    }
  }
  // Same on-disk shape as the raw store: compact the bucket's family. This
  // reaches into the engine (test hooks) only for setup, never when timed.
  auto* local_engine = dynamic_cast<eng::LocalEngine*>(store->engine.get());
  auto* local_bucket = dynamic_cast<eng::LocalBucket*>(store->bucket.get());
  if (local_engine == nullptr || local_bucket == nullptr) {
    *err = "engine is not a LocalEngine; cannot compact its store";
    return nullptr;
  }
  rocksdb::DB* db = local_engine->TEST_db();
  rocksdb::Status s = db->CompactRange(rocksdb::CompactRangeOptions(), local_bucket->TEST_family(),
                                       nullptr, nullptr);
  if (s.ok()) {
    s = db->CompactRange(rocksdb::CompactRangeOptions(), local_bucket->TEST_log_family(), nullptr,
                         nullptr);
  }
  if (!s.ok()) {
    *err = "engine compact: " + s.ToString();
    return nullptr;
  }
  // Warm the (shared) block cache: read every key once.
  for (const auto& key : keys) {
    auto r = store->bucket->Get(key);
    if (!r.ok()) {
      *err = "engine warm-up read of " + key + ": " + r.status().ToString();
      return nullptr;
    }
  }
  return store;
}

// The store of a benchmark family, created and preloaded by the first thread
// that asks; nullptr (and *err) on failure.
RawStore* RawFor(const std::string& family, RawPreload preload, std::string* err) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  RegisterCleanupOnce();
  auto it = r.raw.find(family);
  if (it != r.raw.end()) {
    if (it->second == nullptr) *err = "setup of " + family + " failed earlier";
    return it->second.get();
  }
  auto store = OpenRaw(family, preload, err);
  RawStore* out = store.get();
  r.raw.emplace(family, std::move(store));
  return out;
}

EngineStore* EngineFor(const std::string& family, std::string* err) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  RegisterCleanupOnce();
  auto it = r.engine.find(family);
  if (it != r.engine.end()) {
    if (it->second == nullptr) *err = "setup of " + family + " failed earlier";
    return it->second.get();
  }
  auto store = OpenEngine(family, err);
  EngineStore* out = store.get();
  r.engine.emplace(family, std::move(store));
  return out;
}

void Finish(benchmark::State& state, size_t bytes_per_item) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes_per_item));
}

// ---------------------------------------------------------------------------
// Get.
//
// Raw:    DB::Get(ReadOptions(), data family, key, &PinnableSlice), then the
//         100-byte value is copied into a new std::string.
// Engine: Bucket::Get(key): validates the key, builds 'k'+key, DB::Get into a
//         PinnableSlice, builds the error-context string "record of key ...
//         of bucket ...", decodes the capnp record (operation, revision,
//         value; copying the record to an aligned buffer when RocksDB's slice
//         is not 8-byte aligned) and returns the value in a new std::string.
//         Its records are EngineRecordSize() bytes (vs 100) and its family
//         also holds the revision log, so its SST file is larger.

void BM_RawGet(benchmark::State& state) {
  std::string err;
  RawStore* store = RawFor("RawGet", RawPreload::kPlainValues, &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  const auto& keys = Keys();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 1);
  const rocksdb::ReadOptions ro;
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    rocksdb::PinnableSlice slice;
    rocksdb::Status s = store->db->Get(ro, store->data, key, &slice);
    if (!s.ok()) {
      state.SkipWithError(("raw get " + key + ": " + s.ToString()).c_str());
      break;
    }
    std::string value(slice.data(), slice.size());
    benchmark::DoNotOptimize(value.data());
    if (value.size() != kValueSize) {
      state.SkipWithError(("raw get " + key + ": wrong value size").c_str());
      break;
    }
  }
  Finish(state, kValueSize);
}

void EngineGetLoop(benchmark::State& state, const std::string& family) {
  std::string err;
  EngineStore* store = EngineFor(family, &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  revkv::Bucket& bucket = *store->bucket;
  const auto& keys = Keys();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 1);
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    revkv::Result<std::string> r = bucket.Get(key);
    if (!r.ok()) {
      state.SkipWithError(("engine get " + key + ": " + r.status().ToString()).c_str());
      break;
    }
    std::string value = std::move(*r);
    benchmark::DoNotOptimize(value.data());
    if (value.size() != kValueSize) {
      state.SkipWithError(("engine get " + key + ": wrong value size").c_str());
      break;
    }
  }
  Finish(state, kValueSize);
}

void BM_EngineGet(benchmark::State& state) { EngineGetLoop(state, "EngineGet"); }

// Cached: the same Get with Options::entry_cache_bytes holding every key
// (64 MiB for 10,000 entries): a hash lookup under a shard mutex and a copy
// of the entry, no store read. The first reads of each key fill the cache.
void BM_EngineGetCached(benchmark::State& state) { EngineGetLoop(state, "EngineGetCached"); }

// ---------------------------------------------------------------------------
// Put (blind overwrite). No throughput target: the two do different amounts
// of work by design.
//
// Raw:    one DB::Put(key, 100-byte value) in the data family.
// Engine: Bucket::Put: validates, takes the bucket's write mutex, DB::Get of
//         the current record and a header decode, then one WriteBatch with
//         the new ~EngineRecordSize() record and the revision-log entry;
//         every CommitPath::kFloorCommits commits the batch also deletes the
//         revision-log entries replaced since the last such commit (sorted)
//         and writes the revision floor (engine/layout.h, format 2).

void BM_RawPut(benchmark::State& state) {
  std::string err;
  RawStore* store = RawFor("RawPut", RawPreload::kPlainValues, &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  const auto& keys = Keys();
  const auto& values = NewValues();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 101);
  size_t n = 0;
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    rocksdb::Status s =
        store->db->Put(store->write_options, store->data, key, values[n++ % values.size()]);
    if (!s.ok()) {
      state.SkipWithError(("raw put " + key + ": " + s.ToString()).c_str());
      break;
    }
  }
  Finish(state, kValueSize);
}

void BM_EnginePut(benchmark::State& state) {
  std::string err;
  EngineStore* store = EngineFor("EnginePut", &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  revkv::Bucket& bucket = *store->bucket;
  const auto& keys = Keys();
  const auto& values = NewValues();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 101);
  size_t n = 0;
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    revkv::Result<uint64_t> r = bucket.Put(key, values[n++ % values.size()]);
    if (!r.ok()) {
      state.SkipWithError(("engine put " + key + ": " + r.status().ToString()).c_str());
      break;
    }
    benchmark::DoNotOptimize(*r);
  }
  Finish(state, kValueSize);
}

// ---------------------------------------------------------------------------
// Compare-and-swap update.
//
// Raw (the least a hand-rolled revisioned CAS on RocksDB must do, with the
// same records): under a mutex (as the engine's write_mu_), one DB::Get of
// the key's record (EngineRecordSize() bytes, revision in its first 8
// bytes), read the revision, then one WriteBatch:
//   Put(data, key, new record of EngineRecordSize() bytes: revision,
//       created_ns from system_clock, padding, value),
//   Put(log, BE64(new rev), key), Delete(log, BE64(old rev)),
//   Put(meta, "rev/bench", BE64(new rev)),
// and DB::Write. It does one lookup per update and no encoding work.
//
// Engine: Bucket::GetEntry(key) for the revision (validate, DB::Get, full
// capnp decode with key and value copies), then Bucket::Update(key, value,
// revision): validate, lock, the CAS check against the bucket's write cache
// (a history-1 bucket remembers the revision of keys it wrote; on a miss it
// reads the record again), capnp encode of the new record, and the
// WriteBatch of the format-2 layout (the record and the revision-log entry,
// with the replaced log entries deleted and the floor written in sorted
// batches every CommitPath::kFloorCommits commits). The raw side still
// writes the four records of format 1 per update. The preload wrote every
// key, so in steady state both sides do one lookup per update.

void BM_RawGetWriteBatch(benchmark::State& state) {
  std::string err;
  RawStore* store = RawFor("RawGetWriteBatch", RawPreload::kRecords, &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  const auto& keys = Keys();
  const auto& values = NewValues();
  const std::string counter_key = eng::CounterKey(kBucketName);
  const rocksdb::ReadOptions ro;
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 201);
  size_t n = 0;
  std::string rec;
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    std::lock_guard<std::mutex> lock(store->write_mu);
    rocksdb::PinnableSlice current;
    rocksdb::Status s = store->db->Get(ro, store->data, key, &current);
    if (!s.ok() || current.size() < kRawHeaderFixed) {
      state.SkipWithError(("raw update get " + key + ": " + s.ToString()).c_str());
      break;
    }
    const uint64_t old_rev = eng::DecodeBE64(current.ToStringView());
    if (old_rev == 0 || old_rev > store->last_revision) {
      state.SkipWithError(("raw update " + key + ": bad stored revision").c_str());
      break;
    }
    const uint64_t rev = store->last_revision + 1;
    FillRawRecord(&rec, rev, NowNs(), values[n++ % values.size()]);
    std::string counter;
    eng::AppendBE64(&counter, rev);
    rocksdb::WriteBatch batch;
    s = batch.Put(store->data, key, rec);
    if (s.ok()) s = batch.Put(store->log, eng::RevisionKey(rev), key);
    if (s.ok()) s = batch.Delete(store->log, eng::RevisionKey(old_rev));
    if (s.ok()) s = batch.Put(store->meta, counter_key, counter);
    if (s.ok()) s = store->db->Write(store->write_options, &batch);
    if (!s.ok()) {
      state.SkipWithError(("raw update write " + key + ": " + s.ToString()).c_str());
      break;
    }
    store->last_revision = rev;
  }
  Finish(state, kValueSize);
  state.counters["record_bytes"] = static_cast<double>(EngineRecordSize());
}

void BM_EngineUpdate(benchmark::State& state) {
  std::string err;
  EngineStore* store = EngineFor("EngineUpdate", &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  revkv::Bucket& bucket = *store->bucket;
  const auto& keys = Keys();
  const auto& values = NewValues();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 201);
  size_t n = 0;
  for (auto _ : state) {
    const std::string& key = keys[rng.Index(keys.size())];
    revkv::Result<revkv::Entry> entry = bucket.GetEntry(key);
    if (!entry.ok()) {
      state.SkipWithError(("engine update get " + key + ": " + entry.status().ToString()).c_str());
      break;
    }
    revkv::Result<uint64_t> r = bucket.Update(key, values[n++ % values.size()], entry->revision);
    if (!r.ok()) {
      state.SkipWithError(("engine update " + key + ": " + r.status().ToString()).c_str());
      break;
    }
    benchmark::DoNotOptimize(*r);
  }
  Finish(state, kValueSize);
  state.counters["record_bytes"] = static_cast<double>(EngineRecordSize());
}

// ---------------------------------------------------------------------------
// Uncontended lease lock: Engine::Acquire + Lock::Release on a free lock,
// compared with one CAS update (BM_EngineUpdate: GetEntry + Update). An
// acquisition is a Create in the locks bucket and a release a CAS delete, so
// the target is at most 2x one CAS update.

void BM_EngineLockAcquireRelease(benchmark::State& state) {
  std::string err;
  EngineStore* store = EngineFor("EngineLock", &err);
  if (store == nullptr) {
    state.SkipWithError(err.c_str());
    return;
  }
  const auto& keys = Keys();
  Rng rng(static_cast<uint64_t>(state.thread_index()) + 301);
  for (auto _ : state) {
    const std::string& name = keys[rng.Index(keys.size())];
    auto lock = store->engine->Acquire(name, std::chrono::seconds(10), std::chrono::seconds(10));
    if (!lock.ok()) {
      state.SkipWithError(("acquire " + name + ": " + lock.status().ToString()).c_str());
      break;
    }
    revkv::Status s = (*lock)->Release();
    if (!s.ok()) {
      state.SkipWithError(("release " + name + ": " + s.ToString()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_RawGet)->UseRealTime()->Threads(1)->Threads(4);
BENCHMARK(BM_EngineGet)->UseRealTime()->Threads(1)->Threads(4);
BENCHMARK(BM_EngineGetCached)->UseRealTime()->Threads(1)->Threads(4);
BENCHMARK(BM_RawPut)->UseRealTime();
BENCHMARK(BM_EnginePut)->UseRealTime();
BENCHMARK(BM_RawGetWriteBatch)->UseRealTime();
BENCHMARK(BM_EngineUpdate)->UseRealTime();
BENCHMARK(BM_EngineLockAcquireRelease)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("revkv_keys", std::to_string(kNumKeys));
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueSize));
  benchmark::AddCustomContext("revkv_engine_record_bytes", std::to_string(EngineRecordSize()));
  benchmark::AddCustomContext("rocksdb_version", std::to_string(ROCKSDB_MAJOR) + "." +
                                                     std::to_string(ROCKSDB_MINOR) + "." +
                                                     std::to_string(ROCKSDB_PATCH));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  CloseAllStores();
  return 0;
}
