// Contention suite: the same read-modify-write (read a decimal counter,
// add one, write it back) done four ways, on three key distributions, at
// 1, 2, 4, 8 and 16 threads.
//
// Strategies:
//   occ                  Bucket::UpdateWithRetry(key, mutate) on a history-1
//                        bucket of a revkv Engine.
//   lock                 Engine::Acquire("lk." + key, lease 10 s, timeout
//                        30 s), Bucket::GetEntry(key), Bucket::Update(key,
//                        value, revision), Lock::Release(). The Update is a
//                        compare-and-swap on the revision just read, so a
//                        lock that failed to exclude another holder shows up
//                        as a Conflict error, not as a silently lost update.
//   rocksdb_optimistic   rocksdb::OptimisticTransactionDB: BeginTransaction,
//                        GetForUpdate, Put, Commit; a Commit that returns Busy
//                        or TryAgain (a conflict) is retried at once, in a new
//                        transaction, and counted as a retry.
//   rocksdb_pessimistic  rocksdb::TransactionDB: BeginTransaction,
//                        GetForUpdate (takes the key's lock, waiting up to
//                        30 s), Put, Commit.
// Workloads (the key of each operation):
//   hot      always the same key;
//   uniform  uniform over 1,000 keys;
//   zipf     Zipf(theta = 0.99) over 10,000 keys, rank 0 the hottest (Gray et
//            al., "Quickly generating billion-record synthetic databases",
//            SIGMOD 1994, as in YCSB's ZipfianGenerator, unscrambled).
//
// Each value is the counter as 20 zero-padded decimal digits followed by
// padding up to kValueSize (100) bytes. The revkv stores use
// Options{sync = false}; the RocksDB baselines are opened with
// revkv::engine::MakeDBOptions for the same Options (default column family
// only), WriteOptions::sync = false.
//
// Each (strategy, workload) family has one store in its own mkdtemp directory
// under /tmp, created and preloaded (every key set to 0) by the first thread
// of the family's first run, reused by all its thread counts, and removed at
// exit. All runs use real (wall) time.
//
// Counters (Google Benchmark sums each counter over a run's threads, then
// applies the flags):
//   ops_per_s       successful increments per wall-clock second, all threads
//                   (kIsRate over the per-thread counts).
//   retries_per_op  conflicts per increment: UpdateOutcome::attempts - 1 for
//                   occ, failed Commits for rocksdb_optimistic, 0 for the
//                   others (kAvgIterations: total retries / total iterations).
//   lock_wait_us    mean time per increment spent inside Engine::Acquire
//                   (lock only; 0 for the others), kAvgIterations likewise.
//   p50_us, p99_us  latency percentiles of single increments (including
//                   retries and lock waits) over the samples of ALL threads of
//                   the run: every thread hands its samples to the family
//                   after its loop, and thread 0 waits for all of them, merges
//                   and computes the percentiles, and sets these counters on
//                   its own State only (the others leave them unset, so the
//                   sum over threads is thread 0's value). Averaging per-thread
//                   percentiles instead would not give a percentile of the
//                   run's latency distribution.
//   lost_updates    set by thread 0 after the same rendezvous, when all
//                   threads have stopped writing: |sum of all counters -
//                   successful increments so far| for the family's store. It
//                   must be 0; otherwise the run fails with an error and the
//                   program exits 1.
//
// Short mode (REVKV_CONTENTION_SHORT=1, or --short before the benchmark
// flags): each run gets MinTime(0.2 s), so the 60 runs take about a minute on
// 2 cores. Otherwise the library's defaults (and --benchmark_min_time) apply.

#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/status.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>
#include <rocksdb/utilities/transaction_db.h>
#include <rocksdb/version.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/rocks.h"
#include "bench/workload.h"
#include "revkv/revkv.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kZipfTheta = 0.99;
constexpr const char* kBucketName = "bench";
constexpr std::chrono::milliseconds kLease{10000};
constexpr std::chrono::milliseconds kAcquireTimeout{30000};
constexpr int64_t kRocksLockTimeoutMs = 30000;
constexpr int64_t kMaxRetriesPerOp = 1000000;  // a livelock guard, never expected
constexpr double kShortMinTime = 0.2;
constexpr int kThreadCounts[] = {1, 2, 4, 8, 16};

enum class Strategy { kOcc, kLock, kRocksOptimistic, kRocksPessimistic };
enum class Workload { kHot, kUniform, kZipf };

constexpr Strategy kStrategies[] = {Strategy::kOcc, Strategy::kLock, Strategy::kRocksOptimistic,
                                    Strategy::kRocksPessimistic};
constexpr Workload kWorkloads[] = {Workload::kHot, Workload::kUniform, Workload::kZipf};

const char* StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kOcc:
      return "occ";
    case Strategy::kLock:
      return "lock";
    case Strategy::kRocksOptimistic:
      return "rocksdb_optimistic";
    case Strategy::kRocksPessimistic:
      return "rocksdb_pessimistic";
  }
  return "?";
}

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kHot:
      return "hot";
    case Workload::kUniform:
      return "uniform";
    case Workload::kZipf:
      return "zipf";
  }
  return "?";
}

size_t NumKeys(Workload w) {
  switch (w) {
    case Workload::kHot:
      return 1;
    case Workload::kUniform:
      return 1000;
    case Workload::kZipf:
      return 10000;
  }
  return 1;
}

bool IsEngine(Strategy s) { return s == Strategy::kOcc || s == Strategy::kLock; }

// Set when a run fails its correctness check; main then exits 1.
std::atomic<bool> g_failed{false};

// ---------------------------------------------------------------------------
// Counter values and key choice: bench/workload.h.

using revkv::bench::DecodeCounter;
using revkv::bench::EncodeCounter;
using revkv::bench::kDigits;
using revkv::bench::kValueSize;
using revkv::bench::Rng;
using revkv::bench::ZipfParams;

// The zipf workload's distribution, computed once (zeta(n) is n pow() calls).
const ZipfParams& SharedZipf() {
  static const ZipfParams params(NumKeys(Workload::kZipf), kZipfTheta);
  return params;
}

// Key choice (bench/workload.h): the hot workload's one key, uniform, or
// Zipf.
using revkv::bench::KeyChooser;
using revkv::bench::PercentileUs;
KeyChooser ChooserFor(Workload w, uint64_t seed) {
  return KeyChooser(NumKeys(w), w == Workload::kZipf ? &SharedZipf() : nullptr, seed);
}

// ---------------------------------------------------------------------------
// Stores.

struct Family {
  Strategy strategy;
  Workload workload;
  std::string dir;
  std::vector<std::string> keys;        // "c.00042"
  std::vector<std::string> lock_names;  // "lk.c.00042" (lock strategy)

  // revkv (occ, lock). The bucket is declared after the engine so that it is
  // destroyed first.
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;

  // RocksDB baselines.
  std::unique_ptr<rocksdb::OptimisticTransactionDB> odb;
  std::unique_ptr<rocksdb::TransactionDB> tdb;
  rocksdb::WriteOptions write_options;

  // Successful increments over every run of the family so far.
  std::atomic<uint64_t> increments{0};

  // End-of-run rendezvous: each thread adds its latency samples and arrives;
  // thread 0 waits for all, then consumes and resets.
  std::mutex run_mu;
  std::condition_variable run_cv;
  int run_arrived = 0;                // GUARDED_BY(run_mu)
  std::vector<uint64_t> run_samples;  // GUARDED_BY(run_mu), nanoseconds
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Family>> families;  // nullptr: setup failed
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
  r.families.clear();
  for (const auto& d : r.dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
    if (ec) {
      std::fprintf(stderr, "warning: could not remove %s: %s\n", d.c_str(), ec.message().c_str());
    }
  }
  r.dirs.clear();
}

revkv::Options StoreOptions(const std::string& path) {
  revkv::Options o;
  o.path = path;
  o.create_if_missing = true;
  o.sync = false;
  return o;
}

bool OpenEngineStore(Family* f, std::string* err) {
  auto engine = revkv::Engine::Open(StoreOptions(f->dir));
  if (!engine.ok()) {
    *err = "engine open: " + engine.status().ToString();
    return false;
  }
  f->engine = std::move(*engine);
  auto bucket = f->engine->OpenBucket(kBucketName, {.history = 1});
  if (!bucket.ok()) {
    *err = "open bucket: " + bucket.status().ToString();
    return false;
  }
  f->bucket = std::move(*bucket);
  const std::string zero = EncodeCounter(0);
  for (const auto& key : f->keys) {
    auto r = f->bucket->Put(key, zero);
    if (!r.ok()) {
      *err = "preload " + key + ": " + r.status().ToString();
      return false;
    }
  }
  return true;
}

bool OpenRocksStore(Family* f, std::string* err) {
  const rocksdb::Options options = revkv::engine::MakeDBOptions(StoreOptions(f->dir));
  f->write_options.sync = false;
  rocksdb::Status s;
  rocksdb::DB* base = nullptr;
  if (f->strategy == Strategy::kRocksOptimistic) {
    rocksdb::OptimisticTransactionDB* db = nullptr;
    s = rocksdb::OptimisticTransactionDB::Open(options, f->dir, &db);
    f->odb.reset(db);
    base = db;
  } else {
    rocksdb::TransactionDBOptions txn_db_options;
    txn_db_options.transaction_lock_timeout = kRocksLockTimeoutMs;
    rocksdb::TransactionDB* db = nullptr;
    s = rocksdb::TransactionDB::Open(options, txn_db_options, f->dir, &db);
    f->tdb.reset(db);
    base = db;
  }
  if (!s.ok()) {
    *err = "rocksdb open " + f->dir + ": " + s.ToString();
    return false;
  }
  const std::string zero = EncodeCounter(0);
  for (const auto& key : f->keys) {
    s = base->Put(f->write_options, key, zero);
    if (!s.ok()) {
      *err = "preload " + key + ": " + s.ToString();
      return false;
    }
  }
  return true;
}

std::unique_ptr<Family> OpenFamily(Strategy strategy, Workload workload, std::string* err) {
  auto f = std::make_unique<Family>();
  f->strategy = strategy;
  f->workload = workload;
  std::string tmpl = std::string("/tmp/revkv-contention-") + StrategyName(strategy) + "-" +
                     WorkloadName(workload) + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    *err = "mkdtemp(" + tmpl + ") failed: " + std::strerror(errno);
    return nullptr;
  }
  f->dir = tmpl;
  Reg().dirs.push_back(f->dir);

  const size_t n = NumKeys(workload);
  f->keys.reserve(n);
  f->lock_names.reserve(n);
  char buf[32];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "c.%05zu", i);
    f->keys.emplace_back(buf);
    f->lock_names.push_back("lk." + f->keys.back());
  }
  const bool ok = IsEngine(strategy) ? OpenEngineStore(f.get(), err) : OpenRocksStore(f.get(), err);
  if (!ok) return nullptr;
  return f;
}

// The family's store, created and preloaded by the first thread that asks;
// nullptr (and *err) on failure, for every thread of every later run too.
Family* FamilyFor(Strategy strategy, Workload workload, std::string* err) {
  static std::once_flag cleanup_once;
  std::call_once(cleanup_once, [] { std::atexit(CloseAllStores); });
  const std::string name = std::string(StrategyName(strategy)) + "/" + WorkloadName(workload);
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.families.find(name);
  if (it != r.families.end()) {
    if (it->second == nullptr) *err = "setup of " + name + " failed earlier";
    return it->second.get();
  }
  auto family = OpenFamily(strategy, workload, err);
  if (family == nullptr) *err = name + ": " + *err;
  Family* out = family.get();
  r.families.emplace(name, std::move(family));
  return out;
}

// Reads every counter of the family's store and adds them up. Only called
// when no thread is writing.
std::optional<uint64_t> SumCounters(Family& f, std::string* err) {
  uint64_t sum = 0;
  rocksdb::DB* db = f.odb ? static_cast<rocksdb::DB*>(f.odb.get()) : f.tdb.get();
  for (const auto& key : f.keys) {
    std::string value;
    if (IsEngine(f.strategy)) {
      auto r = f.bucket->Get(key);
      if (!r.ok()) {
        *err = "check: get " + key + ": " + r.status().ToString();
        return std::nullopt;
      }
      value = std::move(*r);
    } else {
      rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
      if (!s.ok()) {
        *err = "check: get " + key + ": " + s.ToString();
        return std::nullopt;
      }
    }
    auto n = DecodeCounter(value);
    if (!n) {
      *err = "check: unparsable counter value under " + key;
      return std::nullopt;
    }
    sum += *n;
  }
  return sum;
}

// ---------------------------------------------------------------------------
// One increment per strategy. Each returns false with *err on failure and
// adds conflicts to *retries and time inside Acquire to *lock_wait_ns.

class Worker {
 public:
  explicit Worker(Family& f) : f_(f) {
    mutate_ = [this](const std::optional<std::string>& current) -> std::optional<std::string> {
      // May run more than once per update: it only records what it saw.
      bad_value_ = false;
      std::optional<uint64_t> n;
      if (current) n = DecodeCounter(*current);
      if (!n) {
        bad_value_ = true;
        return std::nullopt;
      }
      return EncodeCounter(*n + 1);
    };
  }

  bool Increment(size_t i, uint64_t* retries, uint64_t* lock_wait_ns, std::string* err) {
    switch (f_.strategy) {
      case Strategy::kOcc:
        return Occ(i, retries, err);
      case Strategy::kLock:
        return LockReadWrite(i, lock_wait_ns, err);
      case Strategy::kRocksOptimistic:
        return RocksOptimistic(i, retries, err);
      case Strategy::kRocksPessimistic:
        return RocksPessimistic(i, err);
    }
    return false;
  }

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

 private:
  bool Occ(size_t i, uint64_t* retries, std::string* err) {
    const std::string& key = f_.keys[i];
    revkv::Result<revkv::UpdateOutcome> r = f_.bucket->UpdateWithRetry(key, mutate_);
    if (!r.ok()) {
      *err = "UpdateWithRetry(" + key + "): " + r.status().ToString();
      return false;
    }
    if (bad_value_ || !r->written) {
      *err = "UpdateWithRetry(" + key + "): missing or unparsable counter value";
      return false;
    }
    *retries += static_cast<uint64_t>(r->attempts - 1);
    return true;
  }

  bool LockReadWrite(size_t i, uint64_t* lock_wait_ns, std::string* err) {
    const std::string& key = f_.keys[i];
    const std::string& lock_name = f_.lock_names[i];
    const Clock::time_point t0 = Clock::now();
    revkv::Result<std::unique_ptr<revkv::Lock>> lock =
        f_.engine->Acquire(lock_name, kLease, kAcquireTimeout);
    *lock_wait_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    if (!lock.ok()) {
      *err = "Acquire(" + lock_name + "): " + lock.status().ToString();
      return false;
    }
    // On any error below, the handle's destructor releases the lock.
    revkv::Result<revkv::Entry> entry = f_.bucket->GetEntry(key);
    if (!entry.ok()) {
      *err = "GetEntry(" + key + ") under lock: " + entry.status().ToString();
      return false;
    }
    std::optional<uint64_t> n = DecodeCounter(entry->value);
    if (!n) {
      *err = "GetEntry(" + key + "): unparsable counter value";
      return false;
    }
    revkv::Result<uint64_t> w = f_.bucket->Update(key, EncodeCounter(*n + 1), entry->revision);
    if (!w.ok()) {
      // A Conflict here means another writer got in while we held the lock.
      *err = "Update(" + key + ") under lock " + lock_name + ": " + w.status().ToString();
      return false;
    }
    revkv::Status released = (*lock)->Release();
    if (!released.ok()) {
      *err = "Release(" + lock_name + "): " + released.ToString();
      return false;
    }
    return true;
  }

  bool RocksOptimistic(size_t i, uint64_t* retries, std::string* err) {
    const std::string& key = f_.keys[i];
    for (int64_t attempt = 0; attempt < kMaxRetriesPerOp; ++attempt) {
      Begin(f_.odb->BeginTransaction(f_.write_options, otxn_options_, txn_.get()));
      rocksdb::Status s = txn_->GetForUpdate(read_options_, key, &value_);
      if (!s.ok()) {
        *err = "optimistic GetForUpdate(" + key + "): " + s.ToString();
        return false;
      }
      std::optional<uint64_t> n = DecodeCounter(value_);
      if (!n) {
        *err = "optimistic GetForUpdate(" + key + "): unparsable counter value";
        return false;
      }
      s = txn_->Put(key, EncodeCounter(*n + 1));
      if (s.ok()) s = txn_->Commit();
      if (s.ok()) return true;
      if (!s.IsBusy() && !s.IsTryAgain()) {
        *err = "optimistic commit(" + key + "): " + s.ToString();
        return false;
      }
      ++*retries;
    }
    *err = "optimistic: gave up on " + key + " after " + std::to_string(kMaxRetriesPerOp) +
           " conflicts";
    return false;
  }

  bool RocksPessimistic(size_t i, std::string* err) {
    const std::string& key = f_.keys[i];
    Begin(f_.tdb->BeginTransaction(f_.write_options, txn_options_, txn_.get()));
    rocksdb::Status s = txn_->GetForUpdate(read_options_, key, &value_);
    if (!s.ok()) {
      *err = "pessimistic GetForUpdate(" + key + "): " + s.ToString();
      txn_->Rollback().PermitUncheckedError();
      return false;
    }
    std::optional<uint64_t> n = DecodeCounter(value_);
    if (!n) {
      *err = "pessimistic GetForUpdate(" + key + "): unparsable counter value";
      txn_->Rollback().PermitUncheckedError();
      return false;
    }
    s = txn_->Put(key, EncodeCounter(*n + 1));
    if (s.ok()) s = txn_->Commit();
    if (!s.ok()) {
      *err = "pessimistic commit(" + key + "): " + s.ToString();
      txn_->Rollback().PermitUncheckedError();
      return false;
    }
    return true;
  }

  // BeginTransaction with old_txn reuses (reinitializes) it and returns it.
  void Begin(rocksdb::Transaction* txn) {
    if (txn != txn_.get()) txn_.reset(txn);
  }

  Family& f_;
  revkv::Mutator mutate_;
  bool bad_value_ = false;

  rocksdb::ReadOptions read_options_;
  rocksdb::OptimisticTransactionOptions otxn_options_;
  rocksdb::TransactionOptions txn_options_;
  std::unique_ptr<rocksdb::Transaction> txn_;
  std::string value_;
};

void BM_Contention(benchmark::State& state, Strategy strategy, Workload workload) {
  std::string err;
  Family* f = FamilyFor(strategy, workload, &err);
  if (f == nullptr) {
    // Every thread of the run gets the same answer, so none waits below.
    state.SkipWithError(err.c_str());
    return;
  }

  Worker worker(*f);
  KeyChooser chooser = ChooserFor(
      workload, static_cast<uint64_t>(state.thread_index()) * 1000003 +
                    static_cast<uint64_t>(strategy) * 101 + static_cast<uint64_t>(workload));
  std::vector<uint64_t> latency_ns;
  latency_ns.reserve(static_cast<size_t>(std::min<benchmark::IterationCount>(
      state.max_iterations, benchmark::IterationCount{1} << 22)));
  uint64_t done = 0, retries = 0, lock_wait_ns = 0;
  for (auto _ : state) {
    const size_t i = chooser.Next();
    const Clock::time_point t0 = Clock::now();
    const bool ok = worker.Increment(i, &retries, &lock_wait_ns, &err);
    const Clock::time_point t1 = Clock::now();
    if (!ok) {
      state.SkipWithError(err.c_str());
      break;
    }
    ++done;
    latency_ns.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  }
  f->increments.fetch_add(done);

  state.counters["ops_per_s"] =
      benchmark::Counter(static_cast<double>(done), benchmark::Counter::kIsRate);
  state.counters["retries_per_op"] =
      benchmark::Counter(static_cast<double>(retries), benchmark::Counter::kAvgIterations);
  state.counters["lock_wait_us"] = benchmark::Counter(static_cast<double>(lock_wait_ns) / 1000.0,
                                                      benchmark::Counter::kAvgIterations);

  // Rendezvous (see the file comment). The runner starts the family's next
  // run only after every thread of this one has returned, so thread 0 can
  // reset the shared state once all have arrived.
  std::unique_lock<std::mutex> lock(f->run_mu);
  f->run_samples.insert(f->run_samples.end(), latency_ns.begin(), latency_ns.end());
  ++f->run_arrived;
  if (state.thread_index() != 0) {
    f->run_cv.notify_all();
    return;
  }
  f->run_cv.wait(lock, [&] { return f->run_arrived == state.threads(); });
  std::vector<uint64_t> samples = std::move(f->run_samples);
  f->run_samples.clear();
  f->run_arrived = 0;
  lock.unlock();

  state.counters["p50_us"] = PercentileUs(&samples, 0.50);
  state.counters["p99_us"] = PercentileUs(&samples, 0.99);

  // Every thread has stopped writing: the counters must add up to the
  // successful increments of every run so far.
  std::optional<uint64_t> sum = SumCounters(*f, &err);
  if (!sum) {
    g_failed = true;
    std::fprintf(stderr, "contention/%s/%s: %s\n", StrategyName(strategy), WorkloadName(workload),
                 err.c_str());
    state.SkipWithError(err.c_str());
    return;
  }
  const uint64_t expected = f->increments.load();
  const uint64_t lost = *sum > expected ? *sum - expected : expected - *sum;
  state.counters["lost_updates"] = static_cast<double>(lost);
  if (lost != 0) {
    g_failed = true;
    const std::string msg = "counters add up to " + std::to_string(*sum) + " after " +
                            std::to_string(expected) + " successful increments";
    std::fprintf(stderr, "contention/%s/%s threads:%d: LOST UPDATES: %s\n", StrategyName(strategy),
                 WorkloadName(workload), state.threads(), msg.c_str());
    state.SkipWithError(msg.c_str());
  }
}

bool ShortModeFromEnv() {
  const char* v = std::getenv("REVKV_CONTENTION_SHORT");
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

}  // namespace

int main(int argc, char** argv) {
  // --short (ours) is removed before the library parses the rest.
  bool short_mode = ShortModeFromEnv();
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--short") {
      short_mode = true;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;

  for (Strategy s : kStrategies) {
    for (Workload w : kWorkloads) {
      const std::string name = std::string("contention/") + StrategyName(s) + "/" + WorkloadName(w);
      benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
          name.c_str(), [s, w](benchmark::State& state) { BM_Contention(state, s, w); });
      b->UseRealTime();
      for (int t : kThreadCounts) b->Threads(t);
      if (short_mode) b->MinTime(kShortMinTime);
    }
  }

  benchmark::AddCustomContext("revkv_contention_mode", short_mode ? "short" : "full");
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueSize));
  benchmark::AddCustomContext("revkv_zipf_theta", std::to_string(kZipfTheta));
  benchmark::AddCustomContext("rocksdb_version", std::to_string(ROCKSDB_MAJOR) + "." +
                                                     std::to_string(ROCKSDB_MINOR) + "." +
                                                     std::to_string(ROCKSDB_PATCH));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  CloseAllStores();
  if (g_failed) {
    std::fprintf(stderr, "contention bench: correctness check FAILED (see above)\n");
    return 1;
  }
  return 0;
}
