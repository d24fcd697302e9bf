// Multi-key contention suite: "lock or OCC across keys?". A transfer moves
// one unit between two distinct accounts out of 64 (read both balances,
// write both), the multi-key counterpart of the read-increment-write of
// contention_bench.cc (local) and replicated_contention_bench.cc (across
// engines on one nats-server).
//
// Accounts: keys "acct.00" .. "acct.63", each a balance encoded as the
// suites' 100-byte counter value (bench/workload.h), preloaded with
// kInitialBalance. A transfer picks (from, to) with KeyChooser::Pair
// (workload.h): two distinct accounts, uniform or Zipf(theta = 0.99, as the
// other suites) over the 64, and moves 1 from `from` to `to`.
//
// Strategies:
//   txn          Bucket::UpdateManyWithRetry({from, to}, mutate): one
//                snapshot read (GetMany), one transaction (Commit) with a
//                compare-and-swap on both keys, retried on Conflict with
//                RetryPolicy's backoff (no attempt limit that could end a
//                run: 1,000,000 attempts, 30 s).
//   lock         one lease lock per account ("lock.acct.NN"), the two taken
//                in account order (so that two transfers over the same pair,
//                in either direction, cannot deadlock), then GetMany of both
//                keys and one Commit of two Puts (no compares: the locks
//                exclude the other writers), then both released. A lock per
//                pair would be wrong: transfers a->b and b->c would hold
//                different locks while both writing b. Per-account locks are
//                the finest correct choice, and cost two Acquire + two
//                Release per transfer.
//   lock_global  one lock "lock.global" around every transfer, then as lock:
//                one Acquire + Release per transfer, but every transfer is
//                serialized, whatever its accounts.
//   lock_puts    (replicated only) as lock, but the two balances are written
//                with two Puts, each fenced by its account's lock, instead of
//                one Commit: not atomic for readers that take no lock (one
//                balance may show before the other), but two plain publishes
//                instead of one atomic batch.
//   rocksdb_otxn (local only) rocksdb::OptimisticTransactionDB: BeginTransaction,
//                GetForUpdate both keys, Put both, Commit; Busy or TryAgain
//                (a conflict) is retried at once in a new transaction and
//                counted as a retry. The baseline: RocksDB keeps no
//                revisions, history or revision log.
//
// Local (transfer/<strategy>/<workload>/real_time/threads:N): 1, 2, 4 and 8
// threads on one local Engine (Options{sync = false}, history-1 bucket);
// the locks are in the engine's locks bucket. The RocksDB baseline is opened
// with revkv::engine::MakeDBOptions for the same Options, sync = false. Each
// (strategy, workload) has its own store, created and preloaded by the first
// thread of its first run and reused by every thread count and repetition.
//
// Replicated (rtransfer/<strategy>/<workload>/engines:N): 1, 2, 4 and 8
// engines in this process, each with its own NATS connection, replica
// directory and one thread, sharing one nats-server that the binary starts
// on a free loopback port (tests/nats_server.h), as in
// replicated_contention_bench.cc. Each (strategy, workload) has its own
// history-1 KV bucket (tx_<strategy>_<workload>), preloaded by a setup
// engine that then closes. The replicated workloads are uniform and zipf on
// file-storage buckets (as the other replicated suites) and zipf_mem, the
// zipf choice on a memory-storage bucket (BucketOptions::memory_storage),
// where nats-server stages an atomic batch in memory instead of in a file
// store of its own (see single/writes below). The locks live in the accounts' bucket
// (LockOptions::locks_bucket), so every earlier holder's writes precede an
// acquisition in the stream: once the replica has applied revision
// fencing_token() (of the later of the two locks) the read under the locks
// is current; a replica behind it is Synced first, counted as a conflict.
// A transaction is one atomic batch publish (nats-server 2.12+). Each case
// runs all engines for a fixed time (1 s with --short, else 5 s), then
// closes them; manual time, from the common start to the end of the last
// transfer.
//
// Counters:
//   ops_per_s          successful transfers per second, all threads/engines.
//   retries_per_op     failed attempts per transfer: UpdateManyOutcome
//                      ::attempts - 1 (txn), failed Commits (rocksdb_otxn),
//                      Syncs because the replica was behind the locks
//                      (replicated lock*), 0 for the local locks.
//   p50_us, p99_us     latency of one transfer (retries and lock waits
//                      included), nearest rank over the samples of all
//                      threads or engines of the run.
//   lock_wait_us       time inside Engine::Acquire per transfer (both
//                      locks): mean (local), p50 (replicated).
//   cpu_us_per_op      (local) CPU time of the whole process (all threads)
//                      per transfer, from the first thread's start of the run
//                      to the last thread's end: less disturbed than wall
//                      time by other load on a shared machine.
//   client_cpu_pct,    (replicated) CPU time over wall time, in % of one core,
//   server_cpu_pct     of this process and of the nats-server.
//   balance_errors     after every run, with every writer stopped: the
//                      number of accounts whose balance is not
//                      kInitialBalance + (units received - units sent by
//                      every successful transfer so far), plus 1 if the
//                      total of all balances is not 64 * kInitialBalance.
//                      Local: read from the store; replicated: from the
//                      server with nats.c kvStore_Get. Anything but 0 fails
//                      the run (SkipWithError) and the program exits 1.
//
// Single measurement (single/writes/{file,memory}): one engine, nobody else,
// on a file-storage and on a memory-storage bucket: p50 and p99 of a Put, of
// a Commit of two Puts (one atomic batch) and of Acquire + Release of a lock
// kept in the bucket, interleaved sample by sample.
//
// Short mode (--short before the benchmark flags, or
// REVKV_TXN_CONTENTION_SHORT=1): MinTime(0.2 s) per local run, 1 s per
// replicated case and 100 single rounds (else 300).

#include <benchmark/benchmark.h>
#include <nats/nats.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/status.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>
#include <rocksdb/version.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/workload.h"
#include "engine/rocks.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using revkv::bench::DecodeCounter;
using revkv::bench::EncodeCounter;
using revkv::bench::KeyChooser;
using revkv::bench::kValueSize;
using revkv::bench::ZipfParams;

constexpr size_t kAccounts = 64;
constexpr double kZipfTheta = 0.99;
constexpr uint64_t kInitialBalance = 1000000000;
constexpr std::chrono::milliseconds kLease{10000};
constexpr std::chrono::milliseconds kAcquireTimeout{30000};
constexpr std::chrono::milliseconds kSyncTimeout{10000};
constexpr int64_t kMaxRetriesPerOp = 1000000;  // a livelock guard, never expected
constexpr double kShortMinTime = 0.2;
constexpr int kThreadCounts[] = {1, 2, 4, 8};
constexpr int kEngineCounts[] = {1, 2, 4, 8};

enum class Strategy { kTxn, kLock, kLockGlobal, kLockPuts, kRocksOtxn };
enum class Workload { kUniform, kZipf, kZipfMemory };

constexpr Strategy kLocalStrategies[] = {Strategy::kTxn, Strategy::kLock, Strategy::kLockGlobal,
                                         Strategy::kRocksOtxn};
constexpr Strategy kReplicatedStrategies[] = {Strategy::kTxn, Strategy::kLock, Strategy::kLockPuts,
                                              Strategy::kLockGlobal};
constexpr Workload kLocalWorkloads[] = {Workload::kUniform, Workload::kZipf};
constexpr Workload kReplicatedWorkloads[] = {Workload::kUniform, Workload::kZipf,
                                             Workload::kZipfMemory};

const char* StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kTxn:
      return "txn";
    case Strategy::kLock:
      return "lock";
    case Strategy::kLockGlobal:
      return "lock_global";
    case Strategy::kLockPuts:
      return "lock_puts";
    case Strategy::kRocksOtxn:
      return "rocksdb_otxn";
  }
  return "?";
}

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kUniform:
      return "uniform";
    case Workload::kZipf:
      return "zipf";
    case Workload::kZipfMemory:
      return "zipf_mem";
  }
  return "?";
}

// zipf_mem: the zipf choice on a memory-storage bucket (replicated only).
bool MemoryStorage(Workload w) { return w == Workload::kZipfMemory; }

bool IsLock(Strategy s) {
  return s == Strategy::kLock || s == Strategy::kLockGlobal || s == Strategy::kLockPuts;
}

const ZipfParams* ZipfFor(Workload w) {
  static const ZipfParams zipf(kAccounts, kZipfTheta);
  return w == Workload::kUniform ? nullptr : &zipf;
}

struct Mode {
  bool short_mode = false;
  double case_seconds = 5.0;  // replicated
  int single_samples = 300;   // single/writes rounds
};
Mode g_mode;

// Set when a run fails; main then exits 1.
std::atomic<bool> g_failed{false};

std::vector<std::string> AccountKeys() {
  std::vector<std::string> keys;
  char buf[16];
  for (size_t i = 0; i < kAccounts; ++i) {
    std::snprintf(buf, sizeof(buf), "acct.%02zu", i);
    keys.emplace_back(buf);
  }
  return keys;
}

// Per account: units received - units sent by successful transfers.
using Ledger = std::array<int64_t, kAccounts>;

// Compares balances with the ledger: "" if every account and the total add
// up, else what does not.
std::string CheckBalances(const std::vector<uint64_t>& balances, const Ledger& net, int* errors) {
  *errors = 0;
  std::string msg;
  uint64_t total = 0;
  for (size_t i = 0; i < kAccounts; ++i) {
    total += balances[i];
    const int64_t want = static_cast<int64_t>(kInitialBalance) + net[i];
    if (static_cast<int64_t>(balances[i]) != want) {
      ++*errors;
      if (msg.size() < 300) {
        msg += " acct." + std::to_string(i) + " holds " + std::to_string(balances[i]) +
               ", expected " + std::to_string(want) + ";";
      }
    }
  }
  if (total != kAccounts * kInitialBalance) {
    ++*errors;
    msg = "total " + std::to_string(total) + " != " + std::to_string(kAccounts * kInitialBalance) +
          ";" + msg;
  }
  return msg.empty() ? "" : "INVARIANT BROKEN:" + msg;
}

// Nearest-rank percentile in microseconds of samples in nanoseconds (which
// it reorders); 0 when empty.
double PercentileUs(std::vector<int64_t>* v, double p) {
  if (v->empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v->size())));
  rank = std::clamp<size_t>(rank, 1, v->size());
  std::nth_element(v->begin(), v->begin() + static_cast<ptrdiff_t>(rank - 1), v->end());
  return static_cast<double>((*v)[rank - 1]) / 1e3;
}

// CPU time (user + system) used so far by this process, all threads.
double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// In the error of a transfer that failed after writing both balances (a
// Release): the callers count it, so that the balance check stays exact.
constexpr char kWrittenMarker[] = "after the transfer was written";

bool WrittenBeforeFailing(const std::string& err) {
  return err.find(kWrittenMarker) != std::string::npos;
}

int64_t NsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

// ---------------------------------------------------------------------------
// One transfer on a revkv bucket (txn and the lock strategies), shared by the
// local and the replicated cases.

class RevkvTransfer {
 public:
  // `locks_bucket`: where the locks live ("" = the engine's locks bucket).
  // `replicated`: check the replica against the lock's token before reading.
  RevkvTransfer(Strategy strategy, const std::vector<std::string>& keys, std::string locks_bucket,
                bool replicated)
      : strategy_(strategy), keys_(keys), replicated_(replicated) {
    for (const auto& k : keys_) lock_names_.push_back("lock." + k);
    lock_options_.locks_bucket = std::move(locks_bucket);
    policy_.max_attempts = 1000000;
    policy_.deadline = std::chrono::seconds(30);
    mutate_ = [this](const std::vector<std::optional<std::string>>& cur)
        -> std::optional<std::vector<revkv::KeyChange>> {
      bad_value_ = false;  // may run more than once per transfer
      std::optional<uint64_t> a, b;
      if (cur.size() == 2 && cur[0]) a = DecodeCounter(*cur[0]);
      if (cur.size() == 2 && cur[1]) b = DecodeCounter(*cur[1]);
      if (!a || !b || *a == 0) {
        bad_value_ = true;
        return std::nullopt;
      }
      return std::vector<revkv::KeyChange>{revkv::KeyChange::Put(EncodeCounter(*a - 1)),
                                           revkv::KeyChange::Put(EncodeCounter(*b + 1))};
    };
  }
  RevkvTransfer(const RevkvTransfer&) = delete;
  RevkvTransfer& operator=(const RevkvTransfer&) = delete;

  // Moves 1 from account `from` to `to`. false with *err on failure.
  bool Run(revkv::Engine& engine, revkv::Bucket& bucket, size_t from, size_t to, uint64_t* retries,
           int64_t* lock_wait_ns, std::string* err) {
    if (strategy_ == Strategy::kTxn) return Txn(bucket, from, to, retries, err);
    return Locked(engine, bucket, from, to, retries, lock_wait_ns, err);
  }

 private:
  bool Txn(revkv::Bucket& bucket, size_t from, size_t to, uint64_t* retries, std::string* err) {
    pair_ = {keys_[from], keys_[to]};
    auto r = bucket.UpdateManyWithRetry(pair_, mutate_, policy_);
    if (!r.ok()) {
      *err = "UpdateManyWithRetry(" + pair_[0] + ", " + pair_[1] + "): " + r.status().ToString();
      return false;
    }
    if (bad_value_ || !r->written) {
      *err = "UpdateManyWithRetry(" + pair_[0] + ", " + pair_[1] +
             "): missing, unparsable or empty balance";
      return false;
    }
    *retries += static_cast<uint64_t>(r->attempts - 1);
    return true;
  }

  std::unique_ptr<revkv::Lock> Acquire(revkv::Engine& engine, const std::string& name,
                                       std::string* err) {
    auto lock = engine.Acquire(name, kLease, kAcquireTimeout, lock_options_);
    if (!lock.ok()) {
      *err = "Acquire(" + name + "): " + lock.status().ToString();
      return nullptr;
    }
    return std::move(*lock);
  }

  bool Locked(revkv::Engine& engine, revkv::Bucket& bucket, size_t from, size_t to,
              uint64_t* retries, int64_t* lock_wait_ns, std::string* err) {
    // Released by the handles' destructors on any error below.
    std::unique_ptr<revkv::Lock> first, second;
    const Clock::time_point t0 = Clock::now();
    if (strategy_ == Strategy::kLockGlobal) {
      first = Acquire(engine, "lock.global", err);
      if (first == nullptr) return false;
    } else {
      // Account order, whatever the direction: no deadlock.
      first = Acquire(engine, lock_names_[std::min(from, to)], err);
      if (first == nullptr) return false;
      second = Acquire(engine, lock_names_[std::max(from, to)], err);
      if (second == nullptr) return false;
    }
    *lock_wait_ns += NsBetween(t0, Clock::now());

    if (replicated_) {
      // Every earlier holder's write precedes the later acquisition in the
      // stream (the locks are in this bucket).
      uint64_t token = first->fencing_token();
      if (second != nullptr) token = std::max(token, second->fencing_token());
      if (bucket.LastRevision() < token) {
        ++*retries;
        revkv::Status synced = bucket.Sync(kSyncTimeout);
        if (!synced.ok()) {
          *err = "Sync(" + bucket.name() + ") under the locks: " + synced.ToString();
          return false;
        }
      }
    }
    pair_ = {keys_[from], keys_[to]};
    auto read = bucket.GetMany(pair_);
    if (!read.ok()) {
      *err = "GetMany under the locks: " + read.status().ToString();
      return false;
    }
    std::optional<uint64_t> a, b;
    if (read->keys.size() == 2 && read->keys[0].entry)
      a = DecodeCounter(read->keys[0].entry->value);
    if (read->keys.size() == 2 && read->keys[1].entry)
      b = DecodeCounter(read->keys[1].entry->value);
    if (!a || !b || *a == 0) {
      *err = "GetMany(" + pair_[0] + ", " + pair_[1] + "): missing, unparsable or empty balance";
      return false;
    }
    if (strategy_ == Strategy::kLockPuts) {
      // Each balance fenced by its own account's lock.
      const revkv::Lock& lock_from = from < to ? *first : *second;
      const revkv::Lock& lock_to = from < to ? *second : *first;
      auto w = bucket.Put(pair_[0], EncodeCounter(*a - 1), {.fence = lock_from.fence()});
      if (!w.ok()) {
        *err = "fenced Put(" + pair_[0] + "): " + w.status().ToString();
        return false;
      }
      w = bucket.Put(pair_[1], EncodeCounter(*b + 1), {.fence = lock_to.fence()});
      if (!w.ok()) {
        *err = "fenced Put(" + pair_[1] + ") after Put(" + pair_[0] + "): " + w.status().ToString();
        return false;
      }
    } else {
      revkv::Txn txn;
      txn.ops.push_back(revkv::TxnOp::Put(pair_[0], EncodeCounter(*a - 1)));
      txn.ops.push_back(revkv::TxnOp::Put(pair_[1], EncodeCounter(*b + 1)));
      auto c = bucket.Commit(txn);
      if (!c.ok()) {
        *err = "Commit(Put " + pair_[0] + ", Put " + pair_[1] +
               ") under the locks: " + c.status().ToString();
        return false;
      }
    }
    for (auto* lock : {&second, &first}) {
      if (*lock == nullptr) continue;
      revkv::Status released = (*lock)->Release();
      if (!released.ok()) {
        *err = "Release(" + (*lock)->name() + ") " + kWrittenMarker + ": " + released.ToString();
        return false;  // the callers count the transfer (kWrittenMarker)
      }
    }
    return true;
  }

  const Strategy strategy_;
  const std::vector<std::string>& keys_;
  const bool replicated_;
  std::vector<std::string> lock_names_;
  revkv::LockOptions lock_options_;
  revkv::RetryPolicy policy_;
  revkv::ManyMutator mutate_;
  bool bad_value_ = false;
  std::vector<std::string> pair_;
};

// ---------------------------------------------------------------------------
// Local cases.

struct LocalFamily {
  Strategy strategy;
  Workload workload;
  std::unique_ptr<revkv::testing::TempDir> dir;
  std::vector<std::string> keys;

  // revkv. The bucket is declared after the engine so that it is destroyed
  // first.
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;

  // The RocksDB baseline.
  std::unique_ptr<rocksdb::OptimisticTransactionDB> odb;
  rocksdb::WriteOptions write_options;

  // End-of-run rendezvous: each thread adds its samples and its ledger and
  // arrives; thread 0 waits for all, checks, then resets.
  std::mutex run_mu;
  std::condition_variable run_cv;
  int run_entered = 0;               // GUARDED_BY(run_mu)
  int run_arrived = 0;               // GUARDED_BY(run_mu)
  double run_cpu_start = 0;          // GUARDED_BY(run_mu): when the first thread entered
  uint64_t run_done = 0;             // GUARDED_BY(run_mu)
  std::vector<int64_t> run_samples;  // GUARDED_BY(run_mu)
  Ledger net{};                      // GUARDED_BY(run_mu): every run so far
};

struct LocalRegistry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<LocalFamily>> families;  // nullptr: setup failed
};

// Never destroyed: CloseLocalStores() runs from main, before RocksDB's
// statics go away.
LocalRegistry& LocalReg() {
  static LocalRegistry* r = new LocalRegistry;
  return *r;
}

void CloseLocalStores() {
  std::lock_guard<std::mutex> lock(LocalReg().mu);
  LocalReg().families.clear();
}

revkv::Options LocalOptions(const std::string& path) {
  revkv::Options o;
  o.path = path;
  o.create_if_missing = true;
  o.sync = false;
  return o;
}

std::unique_ptr<LocalFamily> OpenLocalFamily(Strategy s, Workload w, std::string* err) {
  auto f = std::make_unique<LocalFamily>();
  f->strategy = s;
  f->workload = w;
  f->dir = std::make_unique<revkv::testing::TempDir>();
  f->keys = AccountKeys();
  const std::string initial = EncodeCounter(kInitialBalance);
  if (s == Strategy::kRocksOtxn) {
    const rocksdb::Options options = revkv::engine::MakeDBOptions(LocalOptions(f->dir->path()));
    f->write_options.sync = false;
    rocksdb::OptimisticTransactionDB* db = nullptr;
    rocksdb::Status st = rocksdb::OptimisticTransactionDB::Open(options, f->dir->path(), &db);
    f->odb.reset(db);
    if (!st.ok()) {
      *err = "rocksdb open: " + st.ToString();
      return nullptr;
    }
    for (const auto& key : f->keys) {
      st = f->odb->Put(f->write_options, key, initial);
      if (!st.ok()) {
        *err = "preload " + key + ": " + st.ToString();
        return nullptr;
      }
    }
    return f;
  }
  auto engine = revkv::Engine::Open(LocalOptions(f->dir->path()));
  if (!engine.ok()) {
    *err = "Engine::Open: " + engine.status().ToString();
    return nullptr;
  }
  f->engine = std::move(*engine);
  auto bucket = f->engine->OpenBucket("accounts", {.history = 1});
  if (!bucket.ok()) {
    *err = "OpenBucket: " + bucket.status().ToString();
    return nullptr;
  }
  f->bucket = std::move(*bucket);
  for (const auto& key : f->keys) {
    auto r = f->bucket->Put(key, initial);
    if (!r.ok()) {
      *err = "preload " + key + ": " + r.status().ToString();
      return nullptr;
    }
  }
  return f;
}

LocalFamily* LocalFamilyFor(Strategy s, Workload w, std::string* err) {
  const std::string name = std::string(StrategyName(s)) + "/" + WorkloadName(w);
  LocalRegistry& r = LocalReg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.families.find(name);
  if (it != r.families.end()) {
    if (it->second == nullptr) *err = "setup of " + name + " failed earlier";
    return it->second.get();
  }
  auto f = OpenLocalFamily(s, w, err);
  if (f == nullptr) *err = name + ": " + *err;
  LocalFamily* out = f.get();
  r.families.emplace(name, std::move(f));
  return out;
}

// Every balance of a local family's store. Only called when no thread writes.
std::optional<std::vector<uint64_t>> LocalBalances(LocalFamily& f, std::string* err) {
  std::vector<uint64_t> out;
  for (const auto& key : f.keys) {
    std::string value;
    if (f.odb) {
      rocksdb::Status s = f.odb->Get(rocksdb::ReadOptions(), key, &value);
      if (!s.ok()) {
        *err = "check: get " + key + ": " + s.ToString();
        return std::nullopt;
      }
    } else {
      auto r = f.bucket->Get(key);
      if (!r.ok()) {
        *err = "check: get " + key + ": " + r.status().ToString();
        return std::nullopt;
      }
      value = std::move(*r);
    }
    auto n = DecodeCounter(value);
    if (!n) {
      *err = "check: unparsable balance under " + key;
      return std::nullopt;
    }
    out.push_back(*n);
  }
  return out;
}

class RocksTransfer {
 public:
  explicit RocksTransfer(LocalFamily& f) : f_(f) {}

  bool Run(size_t from, size_t to, uint64_t* retries, std::string* err) {
    const std::string& kf = f_.keys[from];
    const std::string& kt = f_.keys[to];
    for (int64_t attempt = 0; attempt < kMaxRetriesPerOp; ++attempt) {
      rocksdb::Transaction* t = f_.odb->BeginTransaction(f_.write_options, options_, txn_.get());
      if (t != txn_.get()) txn_.reset(t);  // BeginTransaction reuses old_txn
      rocksdb::Status s = txn_->GetForUpdate(read_options_, kf, &va_);
      if (s.ok()) s = txn_->GetForUpdate(read_options_, kt, &vb_);
      if (!s.ok()) {
        *err = "GetForUpdate(" + kf + ", " + kt + "): " + s.ToString();
        return false;
      }
      std::optional<uint64_t> a = DecodeCounter(va_), b = DecodeCounter(vb_);
      if (!a || !b || *a == 0) {
        *err = "GetForUpdate(" + kf + ", " + kt + "): unparsable or empty balance";
        return false;
      }
      s = txn_->Put(kf, EncodeCounter(*a - 1));
      if (s.ok()) s = txn_->Put(kt, EncodeCounter(*b + 1));
      if (s.ok()) s = txn_->Commit();
      if (s.ok()) return true;
      if (!s.IsBusy() && !s.IsTryAgain()) {
        *err = "optimistic Commit(" + kf + ", " + kt + "): " + s.ToString();
        return false;
      }
      ++*retries;
    }
    *err = "rocksdb_otxn: gave up after " + std::to_string(kMaxRetriesPerOp) + " conflicts";
    return false;
  }

 private:
  LocalFamily& f_;
  rocksdb::ReadOptions read_options_;
  rocksdb::OptimisticTransactionOptions options_;
  std::unique_ptr<rocksdb::Transaction> txn_;
  std::string va_, vb_;
};

void BM_LocalTransfer(benchmark::State& state, Strategy strategy, Workload workload) {
  std::string err;
  LocalFamily* f = LocalFamilyFor(strategy, workload, &err);
  if (f == nullptr) return state.SkipWithError(err.c_str());

  std::optional<RevkvTransfer> revkv_transfer;
  std::optional<RocksTransfer> rocks_transfer;
  if (strategy == Strategy::kRocksOtxn) {
    rocks_transfer.emplace(*f);
  } else {
    revkv_transfer.emplace(strategy, f->keys, "", /*replicated=*/false);
  }
  KeyChooser chooser(kAccounts, ZipfFor(workload),
                     static_cast<uint64_t>(state.thread_index()) * 1000003 +
                         static_cast<uint64_t>(strategy) * 101 + static_cast<uint64_t>(workload));
  {
    std::lock_guard<std::mutex> lock(f->run_mu);
    if (f->run_entered++ == 0) f->run_cpu_start = ProcessCpuSeconds();
  }
  std::vector<int64_t> latency_ns;
  latency_ns.reserve(1 << 16);
  Ledger net{};
  uint64_t done = 0, retries = 0;
  int64_t lock_wait_ns = 0;
  for (auto _ : state) {
    const auto [from, to] = chooser.Pair();
    const Clock::time_point t0 = Clock::now();
    const bool ok = rocks_transfer ? rocks_transfer->Run(from, to, &retries, &err)
                                   : revkv_transfer->Run(*f->engine, *f->bucket, from, to, &retries,
                                                         &lock_wait_ns, &err);
    const Clock::time_point t1 = Clock::now();
    if (!ok) {
      if (WrittenBeforeFailing(err)) {
        --net[from];
        ++net[to];
      }
      state.SkipWithError(err.c_str());
      break;
    }
    ++done;
    --net[from];
    ++net[to];
    latency_ns.push_back(NsBetween(t0, t1));
  }

  state.counters["ops_per_s"] =
      benchmark::Counter(static_cast<double>(done), benchmark::Counter::kIsRate);
  state.counters["retries_per_op"] =
      benchmark::Counter(static_cast<double>(retries), benchmark::Counter::kAvgIterations);
  state.counters["lock_wait_us"] = benchmark::Counter(static_cast<double>(lock_wait_ns) / 1e3,
                                                      benchmark::Counter::kAvgIterations);

  // Rendezvous: the runner starts the next run only after every thread of
  // this one returned, so thread 0 may reset the shared state.
  std::unique_lock<std::mutex> lock(f->run_mu);
  f->run_samples.insert(f->run_samples.end(), latency_ns.begin(), latency_ns.end());
  for (size_t i = 0; i < kAccounts; ++i) f->net[i] += net[i];
  f->run_done += done;
  ++f->run_arrived;
  if (state.thread_index() != 0) {
    f->run_cv.notify_all();
    return;
  }
  f->run_cv.wait(lock, [&] { return f->run_arrived == state.threads(); });
  const double cpu_seconds = ProcessCpuSeconds() - f->run_cpu_start;
  const uint64_t run_done = f->run_done;
  std::vector<int64_t> samples = std::move(f->run_samples);
  f->run_samples.clear();
  f->run_arrived = 0;
  f->run_entered = 0;
  f->run_done = 0;
  const Ledger expected = f->net;
  lock.unlock();

  state.counters["p50_us"] = PercentileUs(&samples, 0.50);
  state.counters["p99_us"] = PercentileUs(&samples, 0.99);
  state.counters["cpu_us_per_op"] =
      run_done > 0 ? cpu_seconds * 1e6 / static_cast<double>(run_done) : 0;

  auto balances = LocalBalances(*f, &err);
  int errors = 1;
  std::string msg = balances ? CheckBalances(*balances, expected, &errors) : err;
  state.counters["balance_errors"] = errors;
  if (!msg.empty()) {
    g_failed = true;
    std::fprintf(stderr, "transfer/%s/%s threads:%d: %s\n", StrategyName(strategy),
                 WorkloadName(workload), state.threads(), msg.c_str());
    state.SkipWithError(msg.c_str());
  }
}

// ---------------------------------------------------------------------------
// Replicated cases.

// CPU time used so far by process `pid`, from /proc; 0 if unreadable.
double PidCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(stat.c_str() + close + 1,
                  " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string NatsError(const char* what, natsStatus s) {
  natsStatus ignored;
  const char* last = nats_GetLastError(&ignored);
  std::string msg = std::string(what) + ": " + natsStatus_GetText(s);
  if (last != nullptr && *last != '\0') msg += std::string(" (") + last + ")";
  return msg;
}

// A nats.c client that reads the server's truth for the balance check.
struct Checker {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* kv = nullptr;
  Checker() = default;
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;
  ~Checker() {
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  std::string Connect(const std::string& url, const std::string& bucket) {
    natsStatus s = revkv::testing::ConnectClient(url, &nc, &js);
    if (s != NATS_OK) return NatsError("connect", s);
    s = js_KeyValue(&kv, js, bucket.c_str());
    return s == NATS_OK ? "" : NatsError(("js_KeyValue(" + bucket + ")").c_str(), s);
  }
};

struct ReplicatedFamily {
  Strategy strategy;
  Workload workload;
  std::string bucket;  // "tx_lock_zipf"
  std::vector<std::string> keys;
  std::unique_ptr<Checker> checker;
  Ledger net{};  // every case so far
};

struct World {
  revkv::testing::NatsServer server;
  std::string error;
  std::map<std::string, std::unique_ptr<ReplicatedFamily>> families;  // nullptr: setup failed
  std::map<std::string, std::string> setup_errors;
  World() {
    if (!server.Start()) error = "nats-server did not start: " + server.error();
  }
};
World* g_world = nullptr;  // created by the first replicated case, destroyed in main

revkv::Options ReplicaOptions(const std::string& path, const std::string& url) {
  revkv::Options o;
  o.path = path;
  o.nats.servers = {url};
  return o;
}

ReplicatedFamily* ReplicatedFamilyFor(Strategy s, Workload w, std::string* err) {
  if (g_world == nullptr) g_world = new World;
  World& world = *g_world;
  if (!world.error.empty()) {
    *err = world.error;
    return nullptr;
  }
  const std::string name = std::string("tx_") + StrategyName(s) + "_" + WorkloadName(w);
  auto it = world.families.find(name);
  if (it != world.families.end()) {
    if (it->second == nullptr) *err = world.setup_errors[name];
    return it->second.get();
  }
  auto f = std::make_unique<ReplicatedFamily>();
  f->strategy = s;
  f->workload = w;
  f->bucket = name;
  f->keys = AccountKeys();
  std::string e;
  {
    // The setup engine closes before the cases, so that no idle replica
    // applies their writes.
    revkv::testing::TempDir dir;
    auto engine = revkv::Engine::Open(ReplicaOptions(dir.path(), world.server.url()));
    if (!engine.ok()) {
      e = "setup engine: " + engine.status().ToString();
    } else {
      auto bucket = (*engine)->OpenBucket(
          f->bucket, {.history = 1, .memory_storage = MemoryStorage(f->workload)});
      if (!bucket.ok()) e = "OpenBucket(" + f->bucket + "): " + bucket.status().ToString();
      const std::string initial = EncodeCounter(kInitialBalance);
      for (size_t i = 0; e.empty() && i < f->keys.size(); ++i) {
        auto r = (*bucket)->Put(f->keys[i], initial);
        if (!r.ok()) e = "preload " + f->keys[i] + ": " + r.status().ToString();
      }
    }
  }
  if (e.empty()) {
    f->checker = std::make_unique<Checker>();
    e = f->checker->Connect(world.server.url(), f->bucket);
  }
  if (!e.empty()) {
    *err = name + ": " + e;
    world.setup_errors[name] = *err;
    world.families.emplace(name, nullptr);
    return nullptr;
  }
  return world.families.emplace(name, std::move(f)).first->second.get();
}

std::optional<std::vector<uint64_t>> ServerBalances(ReplicatedFamily& f, std::string* err) {
  std::vector<uint64_t> out;
  for (const auto& key : f.keys) {
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, f.checker->kv, key.c_str());
    if (s != NATS_OK) {
      *err = NatsError(("check: kvStore_Get(" + key + ")").c_str(), s);
      return std::nullopt;
    }
    auto n = DecodeCounter(std::string_view(static_cast<const char*>(kvEntry_Value(e)),
                                            static_cast<size_t>(kvEntry_ValueLen(e))));
    kvEntry_Destroy(e);
    if (!n) {
      *err = "check: unparsable balance under " + key;
      return std::nullopt;
    }
    out.push_back(*n);
  }
  return out;
}

struct RunControl {
  std::mutex mu;
  std::condition_variable cv;
  int ready = 0;               // GUARDED_BY(mu)
  int finished = 0;            // GUARDED_BY(mu)
  bool go = false;             // GUARDED_BY(mu)
  bool abort = false;          // GUARDED_BY(mu)
  Clock::time_point deadline;  // set before go
  double cpu_end_self = 0;     // GUARDED_BY(mu): when the last engine stopped
  double cpu_end_server = 0;
  std::atomic<bool> stop{false};
};

class ReplicaWorker {
 public:
  ReplicaWorker(ReplicatedFamily& f, int index)
      : f_(f),
        index_(index),
        transfer_(f.strategy, f.keys, f.bucket, /*replicated=*/true),
        chooser_(kAccounts, ZipfFor(f.workload),
                 static_cast<uint64_t>(index) * 1000003 + static_cast<uint64_t>(f.strategy) * 101 +
                     static_cast<uint64_t>(f.workload)) {}

  std::string Open(const std::string& url) {
    auto engine = revkv::Engine::Open(ReplicaOptions(dir_.path(), url));
    if (!engine.ok()) return "Engine::Open: " + engine.status().ToString();
    engine_ = std::move(*engine);
    auto bucket = engine_->OpenBucket(f_.bucket);
    if (!bucket.ok()) return "OpenBucket(" + f_.bucket + "): " + bucket.status().ToString();
    bucket_ = std::move(*bucket);
    // A first write, transaction and lock outside the timed part, on keys
    // the balance check never reads.
    const std::string warm = "warm." + std::to_string(index_);
    revkv::Txn txn;
    txn.ops.push_back(revkv::TxnOp::Put(warm + ".a", "w"));
    txn.ops.push_back(revkv::TxnOp::Put(warm + ".b", "w"));
    auto c = bucket_->Commit(txn);
    if (!c.ok()) return "warm-up Commit: " + c.status().ToString();
    if (IsLock(f_.strategy)) {
      revkv::LockOptions o;
      o.locks_bucket = f_.bucket;
      auto lock = engine_->Acquire("lock." + warm, kLease, kAcquireTimeout, o);
      if (!lock.ok()) return "warm-up Acquire: " + lock.status().ToString();
      revkv::Status released = (*lock)->Release();
      if (!released.ok()) return "warm-up Release: " + released.ToString();
    }
    return "";
  }

  bool Run(RunControl& rc, std::string* err) {
    latency_ns_.reserve(1 << 14);
    while (!rc.stop.load(std::memory_order_relaxed)) {
      const Clock::time_point t0 = Clock::now();
      if (t0 >= rc.deadline) break;
      const auto [from, to] = chooser_.Pair();
      int64_t wait_ns = 0;
      const bool ok = transfer_.Run(*engine_, *bucket_, from, to, &retries_, &wait_ns, err);
      end_ = Clock::now();
      if (!ok) {
        // A Release that failed after the transfer was written: count it,
        // so that the balance check below stays exact.
        if (WrittenBeforeFailing(*err)) Count(from, to);
        return false;
      }
      Count(from, to);
      latency_ns_.push_back(NsBetween(t0, end_));
      if (IsLock(f_.strategy)) lock_wait_ns_.push_back(wait_ns);
    }
    return true;
  }

  void Close() {
    bucket_.reset();
    engine_.reset();
  }

  uint64_t done() const { return done_; }
  uint64_t retries() const { return retries_; }
  Clock::time_point end() const { return end_; }
  const Ledger& net() const { return net_; }
  std::vector<int64_t>& latency_ns() { return latency_ns_; }
  std::vector<int64_t>& lock_wait_ns() { return lock_wait_ns_; }

 private:
  void Count(size_t from, size_t to) {
    ++done_;
    --net_[from];
    ++net_[to];
  }

  ReplicatedFamily& f_;
  const int index_;
  RevkvTransfer transfer_;
  KeyChooser chooser_;
  revkv::testing::TempDir dir_;
  // The bucket is declared after the engine so that it is destroyed first.
  std::unique_ptr<revkv::Engine> engine_;
  std::shared_ptr<revkv::Bucket> bucket_;
  uint64_t done_ = 0;
  uint64_t retries_ = 0;
  Ledger net_{};
  Clock::time_point end_;
  std::vector<int64_t> latency_ns_;
  std::vector<int64_t> lock_wait_ns_;
};

void BM_ReplicatedTransfer(benchmark::State& state, Strategy strategy, Workload workload) {
  const int engines = static_cast<int>(state.range(0));
  std::string err;
  ReplicatedFamily* f = ReplicatedFamilyFor(strategy, workload, &err);
  if (f == nullptr) return state.SkipWithError(err.c_str());
  const std::string url = g_world->server.url();
  const pid_t server_pid = g_world->server.pid();
  const std::string case_name = std::string(StrategyName(strategy)) + "/" + WorkloadName(workload) +
                                " engines:" + std::to_string(engines);

  for (auto _ : state) {
    std::vector<std::unique_ptr<ReplicaWorker>> workers;
    for (int i = 0; i < engines; ++i) workers.push_back(std::make_unique<ReplicaWorker>(*f, i));
    RunControl rc;
    std::vector<std::string> errors(static_cast<size_t>(engines));
    std::vector<std::thread> threads;
    for (int i = 0; i < engines; ++i) {
      threads.emplace_back([&, i] {
        ReplicaWorker& w = *workers[static_cast<size_t>(i)];
        std::string& e = errors[static_cast<size_t>(i)];
        e = w.Open(url);
        {
          std::unique_lock<std::mutex> lk(rc.mu);
          ++rc.ready;
          if (!e.empty()) rc.abort = true;
          rc.cv.notify_all();
          rc.cv.wait(lk, [&] { return rc.go || rc.abort; });
        }
        if (e.empty() && !rc.abort && !w.Run(rc, &e)) rc.stop = true;
        // Close only when every engine has stopped.
        std::unique_lock<std::mutex> lk(rc.mu);
        if (++rc.finished == engines) {
          rc.cpu_end_self = ProcessCpuSeconds();
          rc.cpu_end_server = PidCpuSeconds(server_pid);
        }
        rc.cv.notify_all();
        rc.cv.wait(lk, [&] { return rc.finished == engines; });
        lk.unlock();
        w.Close();
      });
    }
    Clock::time_point start;
    double cpu_start_self = 0, cpu_start_server = 0;
    {
      std::unique_lock<std::mutex> lk(rc.mu);
      rc.cv.wait(lk, [&] { return rc.ready == engines; });
      cpu_start_self = ProcessCpuSeconds();
      cpu_start_server = PidCpuSeconds(server_pid);
      start = Clock::now();
      rc.deadline = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(g_mode.case_seconds));
      rc.go = true;
      rc.cv.notify_all();
    }
    for (auto& t : threads) t.join();

    uint64_t done = 0, retries = 0;
    Clock::time_point end = start;
    std::vector<int64_t> latency, lock_wait;
    for (auto& w : workers) {
      done += w->done();
      retries += w->retries();
      end = std::max(end, w->end());
      for (size_t i = 0; i < kAccounts; ++i) f->net[i] += w->net()[i];
      latency.insert(latency.end(), w->latency_ns().begin(), w->latency_ns().end());
      lock_wait.insert(lock_wait.end(), w->lock_wait_ns().begin(), w->lock_wait_ns().end());
    }
    for (const auto& e : errors) {
      if (!e.empty()) {
        g_failed = true;
        std::fprintf(stderr, "rtransfer/%s: %s\n", case_name.c_str(), e.c_str());
        return state.SkipWithError(e.c_str());
      }
    }
    const double seconds = std::chrono::duration<double>(end - start).count();
    state.SetIterationTime(seconds);
    state.counters["engines"] = engines;
    state.counters["ops"] = static_cast<double>(done);
    state.counters["ops_per_s"] = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    state.counters["retries_per_op"] =
        done > 0 ? static_cast<double>(retries) / static_cast<double>(done) : 0;
    state.counters["client_cpu_pct"] =
        seconds > 0 ? 100 * (rc.cpu_end_self - cpu_start_self) / seconds : 0;
    state.counters["server_cpu_pct"] =
        seconds > 0 ? 100 * (rc.cpu_end_server - cpu_start_server) / seconds : 0;
    state.counters["lock_wait_us"] = PercentileUs(&lock_wait, 0.50);
    state.counters["p50_us"] = PercentileUs(&latency, 0.50);
    state.counters["p99_us"] = PercentileUs(&latency, 0.99);

    auto balances = ServerBalances(*f, &err);
    int balance_errors = 1;
    std::string msg = balances ? CheckBalances(*balances, f->net, &balance_errors) : err;
    state.counters["balance_errors"] = balance_errors;
    if (!msg.empty()) {
      g_failed = true;
      std::fprintf(stderr, "rtransfer/%s: %s\n", case_name.c_str(), msg.c_str());
      return state.SkipWithError(msg.c_str());
    }
  }
}

// ---------------------------------------------------------------------------
// Single measurement: what each write of a transfer costs with one engine
// and nobody else, sample by sample so that drift hits all alike: a Put, a
// Commit of two Puts (one atomic batch), and Acquire + Release of a lock in
// the same bucket; on a file-storage bucket (as the cases) and on a
// memory-storage one.
void BM_SingleWrites(benchmark::State& state, bool memory) {
  std::string err;
  if (g_world == nullptr) g_world = new World;
  if (!g_world->error.empty()) return state.SkipWithError(g_world->error.c_str());
  const std::string name = memory ? "tx_single_memory" : "tx_single_file";
  const std::string value = EncodeCounter(kInitialBalance);
  for (auto _ : state) {
    revkv::testing::TempDir dir;
    auto engine = revkv::Engine::Open(ReplicaOptions(dir.path(), g_world->server.url()));
    if (!engine.ok()) return state.SkipWithError(engine.status().ToString().c_str());
    auto bucket = (*engine)->OpenBucket(name, {.history = 1, .memory_storage = memory});
    if (!bucket.ok()) return state.SkipWithError(bucket.status().ToString().c_str());
    revkv::LockOptions lock_options;
    lock_options.locks_bucket = name;
    std::vector<int64_t> put, commit, lock;
    const Clock::time_point begin = Clock::now();
    for (int i = 0; i < g_mode.single_samples + 5; ++i) {  // 5 warm-up rounds
      const Clock::time_point t0 = Clock::now();
      auto w = (*bucket)->Put("a", value);
      const Clock::time_point t1 = Clock::now();
      if (!w.ok()) return state.SkipWithError(("Put: " + w.status().ToString()).c_str());
      revkv::Txn txn;
      txn.ops.push_back(revkv::TxnOp::Put("a", value));
      txn.ops.push_back(revkv::TxnOp::Put("b", value));
      const Clock::time_point t2 = Clock::now();
      auto c = (*bucket)->Commit(txn);
      const Clock::time_point t3 = Clock::now();
      if (!c.ok()) return state.SkipWithError(("Commit: " + c.status().ToString()).c_str());
      auto l = (*engine)->Acquire("lock.a", kLease, kAcquireTimeout, lock_options);
      if (!l.ok()) return state.SkipWithError(("Acquire: " + l.status().ToString()).c_str());
      revkv::Status released = (*l)->Release();
      const Clock::time_point t4 = Clock::now();
      if (!released.ok()) return state.SkipWithError(("Release: " + released.ToString()).c_str());
      if (i < 5) continue;
      put.push_back(NsBetween(t0, t1));
      commit.push_back(NsBetween(t2, t3));
      lock.push_back(NsBetween(t3, t4));
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - begin).count());
    state.counters["samples"] = static_cast<double>(put.size());
    state.counters["put_p50_us"] = PercentileUs(&put, 0.50);
    state.counters["put_p99_us"] = PercentileUs(&put, 0.99);
    state.counters["commit2_p50_us"] = PercentileUs(&commit, 0.50);
    state.counters["commit2_p99_us"] = PercentileUs(&commit, 0.99);
    state.counters["lock_acq_rel_p50_us"] = PercentileUs(&lock, 0.50);
    state.counters["lock_acq_rel_p99_us"] = PercentileUs(&lock, 0.99);
  }
}

bool ShortModeFromEnv() {
  const char* v = std::getenv("REVKV_TXN_CONTENTION_SHORT");
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
  g_mode.short_mode = short_mode;
  g_mode.case_seconds = short_mode ? 1.0 : 5.0;
  g_mode.single_samples = short_mode ? 100 : 300;

  for (Strategy s : kLocalStrategies) {
    for (Workload w : kLocalWorkloads) {
      const std::string name = std::string("transfer/") + StrategyName(s) + "/" + WorkloadName(w);
      benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
          name.c_str(), [s, w](benchmark::State& state) { BM_LocalTransfer(state, s, w); });
      b->UseRealTime();
      for (int t : kThreadCounts) b->Threads(t);
      if (short_mode) b->MinTime(kShortMinTime);
    }
  }
  for (Strategy s : kReplicatedStrategies) {
    for (Workload w : kReplicatedWorkloads) {
      const std::string name = std::string("rtransfer/") + StrategyName(s) + "/" + WorkloadName(w);
      benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
          name.c_str(), [s, w](benchmark::State& state) { BM_ReplicatedTransfer(state, s, w); });
      b->ArgName("engines")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
      for (int n : kEngineCounts) b->Arg(n);
    }
  }

  for (bool memory : {false, true}) {
    benchmark::RegisterBenchmark(
        memory ? "single/writes/memory" : "single/writes/file",
        [memory](benchmark::State& state) { BM_SingleWrites(state, memory); })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("revkv_txn_contention_mode", short_mode ? "short" : "full");
  benchmark::AddCustomContext("revkv_case_seconds", std::to_string(g_mode.case_seconds));
  benchmark::AddCustomContext("revkv_accounts", std::to_string(kAccounts));
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueSize));
  benchmark::AddCustomContext("revkv_zipf_theta", std::to_string(kZipfTheta));
  benchmark::AddCustomContext("rocksdb_version", std::to_string(ROCKSDB_MAJOR) + "." +
                                                     std::to_string(ROCKSDB_MINOR) + "." +
                                                     std::to_string(ROCKSDB_PATCH));
  benchmark::AddCustomContext("nats_server", revkv::testing::NatsServer::Version());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  CloseLocalStores();
  delete g_world;  // the checkers, then the server
  if (g_failed) {
    std::fprintf(stderr, "txn contention bench: a run FAILED (see above)\n");
    return 1;
  }
  return 0;
}
