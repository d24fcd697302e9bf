// Cross-process contention suite (issue 5, point 4; issue 13, point 6): the
// read-increment-write of bench/contention_bench.cc, done by 1, 2, 4 and 8
// engines that share one nats-server, each engine in its own worker process
// with its own NATS connection and its own replica directory, one thread per
// process, as deployed. Nothing is shared between them but the server (DESIGN
// §6 queues waiters per process, and §7 serializes UpdateWithRetry per
// process, so one thread per process makes every contention a remote one).
// The raw nats.c baseline runs one process per client the same way.
//
// An earlier version ran all engines as threads of one process. Every
// replica applies every write, so past two engines on a 2-core machine it
// measured that one process's CPU; it showed nothing this version cannot,
// and is gone.
//
// Strategies (the same 100-byte counter value as the local suite):
//   occ   Bucket::UpdateWithRetry(key, mutate) on a replicated history-1
//         bucket: a local read, a CAS publish, the wait for the local apply.
//         RetryPolicy's default backoff; no attempt limit that could end a run.
//   lock  Engine::Acquire("ctr.<bucket>.<key>", lease 10 s, timeout 30 s),
//         GetEntry(key), Update(key, value + 1, revision), Release(). The
//         lock and the counter live in different streams, so the replica of
//         the counter bucket may not yet hold the previous holder's write when
//         the lock is granted: the CAS then fails with Conflict (never a lost
//         update), and the holder Syncs the bucket and reads again. Those
//         retries are this strategy's conflicts. After that Sync the read
//         is linearizable, so the next CAS must succeed, or the case fails:
//         a second conflict would mean that someone wrote while the lock was
//         held. (The revision a conflict names is not a bound for the
//         re-read: a Conflict found by the replica before publishing names
//         the replica's revision, and the server may be further on.)
//   fenced  the lock kept in the counter's own bucket (LockOptions::
//         locks_bucket, lock "lock.<key>"): Acquire, GetEntry(key), then a
//         Put(key, value + 1) fenced by the lock (one publish that the server
//         stores only while the lock's record is the holder's, nats-server
//         2.11+), Release(). With the lock in the same stream, every earlier
//         holder's write precedes the acquisition: once the replica has
//         applied revision fencing_token() the read is current. A replica
//         behind it is Synced first (counted as a conflict); a lost update
//         would fail the case.
//   fenced_cas  the same with Update(key, value + 1, revision) fenced: one
//         atomic batch (2.12+) that checks the lock's record and the key's
//         revision together.
//   raw   nats.c directly, no revkv: per engine its own natsConnection and
//         kvStore; kvStore_Get, then kvStore_Update(revision), again at once
//         on "wrong last sequence" (the seed's "Option 2").
// Workloads (the key of each increment):
//   hot   always the same key;
//   zipf  Zipf(theta = 0.99) over 1,000 keys (YCSB's generator, unscrambled,
//         as in the local suite).
//
// Each (strategy, workload) family has its own KV bucket (rc_<strategy>_<workload>),
// created and preloaded with zeros on first use, and reused by every engine
// count and repetition. Each case spawns one worker process per engine (this
// binary, with --rc_worker=...; see "Worker processes" below), which opens
// its engine (or raw connection), warms it up and reports ready; once all
// are ready the driver releases them through their pipes to a common start
// time, each runs until the common deadline (1 s with --short, else 5 s)
// and stops after the increment in flight, reports its counters and
// samples through its pipe, and closes only when the driver says so, after
// every worker has reported. Opening, warm-up and closing are not timed
// (manual time: the wall time from the common start to the end of the last
// increment of any worker).
//
// Counters of each case (one iteration, manual time):
//   ops_per_s          successful increments per second, all workers.
//   conflicts_per_op   failed CAS writes per increment: UpdateOutcome::attempts
//                      - 1 (occ), stale reads under the lock (lock), failed
//                      kvStore_Update calls (raw).
//   p50_us, p99_us     latency of one increment (retries and lock waits
//                      included), nearest rank over all workers' samples.
//   lock_wait_p50_us,  time inside Engine::Acquire per increment (lock only).
//   lock_wait_mean_us
//   client_cpu_pct,    CPU time over wall time, in % of one core, of all
//   server_cpu_pct     worker processes together (engines or raw clients)
//                      and of the nats-server, from the start until every
//                      worker has reported: on a small machine the 8-engine
//                      cases are CPU-bound, since every replica applies
//                      every write.
//   lost_updates       |sum of the family's counters, read from the server
//                      with kvStore_Get - successful increments so far,
//                      summed over every worker process|. It
//                      must be 0; otherwise the case fails and the program
//                      exits 1.
//
// Two single measurements for the note:
//   single/lock_vs_update   one engine, nobody else: Acquire + Release of one
//                           lock, interleaved sample by sample with one raw
//                           kvStore_Update, one revkv Update, one raw
//                           kvStore_Get and one revkv GetEntry: the parts of
//                           the occ and raw increments (a local read + a
//                           revkv Update, against kvStore_Get +
//                           kvStore_Update). In the driver's process.
//   single/lock_wake        engine A holds a lock, engine B waits in Acquire;
//                           the time from A's Release() call to B's Acquire
//                           returning (p50, p99).
//
// Short mode (--short before the benchmark flags, or
// REVKV_REPLICATED_CONTENTION_SHORT=1): 1 s per case and fewer single
// samples; the 40 cases and both singles then take about 60 s per
// repetition on 2 cores.
// --occ_backoff_us=INITIAL,MAX sets UpdateWithRetry's backoff bounds for the
// occ strategy (default: RetryPolicy's, 50 and 20000).
// The binary starts its own nats-server (tests/nats_server.h) on a free
// loopback port with a temporary store, and stops it at exit.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <poll.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
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
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kZipfTheta = 0.99;
constexpr size_t kZipfKeys = 1000;
constexpr std::chrono::milliseconds kLease{10000};
constexpr std::chrono::milliseconds kAcquireTimeout{30000};
constexpr std::chrono::milliseconds kSyncTimeout{10000};
constexpr int kMaxRetriesPerOp = 100000;  // a livelock guard, never expected
constexpr int kEngineCounts[] = {1, 2, 4, 8};

enum class Strategy { kOcc, kLock, kFenced, kFencedCas, kRaw };
enum class Workload { kHot, kZipf };

constexpr Strategy kStrategies[] = {Strategy::kOcc, Strategy::kLock, Strategy::kFenced,
                                    Strategy::kFencedCas, Strategy::kRaw};
constexpr Workload kWorkloads[] = {Workload::kHot, Workload::kZipf};

bool Fenced(Strategy s) { return s == Strategy::kFenced || s == Strategy::kFencedCas; }

const char* StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kOcc:
      return "occ";
    case Strategy::kLock:
      return "lock";
    case Strategy::kFenced:
      return "fenced";
    case Strategy::kFencedCas:
      return "fenced_cas";
    case Strategy::kRaw:
      return "raw";
  }
  return "?";
}

const char* WorkloadName(Workload w) { return w == Workload::kHot ? "hot" : "zipf"; }

size_t NumKeys(Workload w) { return w == Workload::kHot ? 1 : kZipfKeys; }

// Per-mode settings, fixed before the benchmarks run.
struct Mode {
  bool short_mode = false;
  // UpdateWithRetry's backoff (occ); RetryPolicy's defaults unless
  // --occ_backoff_us=INITIAL,MAX says otherwise.
  std::chrono::microseconds occ_initial_backoff = revkv::RetryPolicy{}.initial_backoff;
  std::chrono::microseconds occ_max_backoff = revkv::RetryPolicy{}.max_backoff;
  double case_seconds = 5.0;
  int single_samples = 2000;  // lock_vs_update pairs
  int wake_rounds = 1000;     // lock_wake rounds
};
Mode g_mode;

// Set when a case fails its correctness check; main then exits 1.
std::atomic<bool> g_failed{false};

// ---------------------------------------------------------------------------
// Counter values and key choice: bench/workload.h.

using revkv::bench::DecodeCounter;
using revkv::bench::EncodeCounter;
using revkv::bench::kDigits;
using revkv::bench::kValueSize;
using revkv::bench::Rng;
using Zipf = revkv::bench::ZipfParams;

// Key choice: the hot workload's one key, or Zipf over kZipfKeys.
using revkv::bench::KeyChooser;
using revkv::bench::PercentileUs;
KeyChooser ChooserFor(Workload w, uint64_t seed) {
  static const Zipf zipf(kZipfKeys, kZipfTheta);
  return KeyChooser(w == Workload::kHot ? 1 : kZipfKeys, w == Workload::kHot ? nullptr : &zipf,
                    seed);
}

double MeanUs(const std::vector<int64_t>& v) {
  if (v.empty()) return 0;
  double sum = 0;
  for (int64_t x : v) sum += static_cast<double>(x);
  return sum / static_cast<double>(v.size()) / 1e3;
}

int64_t NsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

std::string NatsError(const char* what, natsStatus s) {
  natsStatus ignored;
  const char* last = nats_GetLastError(&ignored);
  std::string msg = std::string(what) + ": " + natsStatus_GetText(s);
  if (last != nullptr && *last != '\0') msg += std::string(" (") + last + ")";
  return msg;
}

// kvStore_Update hides the JetStream error code (DESIGN §5); the text of a
// CAS failure names the subject's current sequence.
bool IsWrongLastSequence() {
  natsStatus ignored;
  const char* last = nats_GetLastError(&ignored);
  return last != nullptr && std::strstr(last, "wrong last sequence") != nullptr;
}

// CPU time used so far by process `pid` (the nats-server, a worker), all
// threads, from /proc; 0 if it cannot be read.
double PidCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the ")" that ends the command name: state is field 3;
  // utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  const char* p = stat.c_str() + close + 1;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
      2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

pid_t g_server_pid = -1;  // the nats-server's, once started

revkv::Options EngineOptions(const std::string& path, const std::string& url) {
  revkv::Options o;
  o.path = path;
  o.nats.servers = {url};
  return o;
}

// A plain nats.c client: connection, JetStream context, one bucket.
struct RawClient {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* kv = nullptr;

  RawClient() = default;
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() {
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  std::string Connect(const std::string& url, const std::string& bucket) {
    natsStatus s = revkv::testing::ConnectClient(url, &nc, &js);
    if (s != NATS_OK) return NatsError("connect", s);
    s = js_KeyValue(&kv, js, bucket.c_str());
    if (s != NATS_OK) return NatsError(("js_KeyValue(" + bucket + ")").c_str(), s);
    return "";
  }
};

// ---------------------------------------------------------------------------
// The server and the families' buckets.

// What a family's bucket holds, derived from its strategy and workload alone
// so that a worker process can rebuild it from its command line.
struct FamilySpec {
  Strategy strategy;
  Workload workload;
  std::string bucket;                   // "rc_occ_hot"
  std::vector<std::string> keys;        // "c.00042"
  std::vector<std::string> lock_names;  // "ctr.rc_lock_hot.c.00042"
};

FamilySpec MakeSpec(Strategy s, Workload w) {
  FamilySpec spec{s, w, std::string("rc_") + StrategyName(s) + "_" + WorkloadName(w), {}, {}};
  char buf[32];
  for (size_t i = 0; i < NumKeys(w); ++i) {
    std::snprintf(buf, sizeof(buf), "c.%05zu", i);
    spec.keys.emplace_back(buf);
    // A fenced lock lives in the counter's bucket, next to its key.
    spec.lock_names.push_back(Fenced(s) ? "lock." + spec.keys.back()
                                        : "ctr." + spec.bucket + "." + spec.keys.back());
  }
  return spec;
}

// The driver's view of a family: its buckets are set up once, and the
// checker reads the server's truth after every case.
struct Family {
  FamilySpec spec;
  std::unique_ptr<RawClient> checker;
  uint64_t increments = 0;  // successful, over every case so far
};

struct World {
  revkv::testing::NatsServer server;
  std::string error;                                        // set if the server did not start
  std::map<std::string, std::unique_ptr<Family>> families;  // nullptr: setup failed
  std::map<std::string, std::string> setup_errors;

  World() {
    if (!server.Start()) error = "nats-server did not start: " + server.error();
  }
};
World* g_world = nullptr;  // created in main, destroyed there after the runs

std::string SetupFamily(Family* f, const std::string& url) {
  const std::string zero = EncodeCounter(0);
  if (f->spec.strategy == Strategy::kRaw) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsStatus s = revkv::testing::ConnectClient(url, &nc, &js);
    kvStore* kv = nullptr;
    if (s == NATS_OK) {
      kvConfig cfg;
      kvConfig_Init(&cfg);
      cfg.Bucket = f->spec.bucket.c_str();
      cfg.History = 1;
      s = js_CreateKeyValue(&kv, js, &cfg);
    }
    std::string err = s == NATS_OK ? "" : NatsError("create raw bucket", s);
    for (size_t i = 0; err.empty() && i < f->spec.keys.size(); ++i) {
      uint64_t rev = 0;
      s = kvStore_Put(&rev, kv, f->spec.keys[i].c_str(), zero.data(),
                      static_cast<int>(zero.size()));
      if (s != NATS_OK) err = NatsError(("preload " + f->spec.keys[i]).c_str(), s);
    }
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (!err.empty()) return err;
  } else {
    // revkv creates its own buckets, then the setup engine goes away so that
    // no idle replica applies the cases' writes.
    revkv::testing::TempDir dir;
    auto engine = revkv::Engine::Open(EngineOptions(dir.path(), url));
    if (!engine.ok()) return "setup engine: " + engine.status().ToString();
    auto bucket = (*engine)->OpenBucket(f->spec.bucket, {.history = 1});
    if (!bucket.ok()) return "OpenBucket(" + f->spec.bucket + "): " + bucket.status().ToString();
    for (const auto& key : f->spec.keys) {
      auto r = (*bucket)->Put(key, zero);
      if (!r.ok()) return "preload " + key + ": " + r.status().ToString();
    }
  }
  f->checker = std::make_unique<RawClient>();
  return f->checker->Connect(url, f->spec.bucket);
}

Family* FamilyFor(Strategy s, Workload w, std::string* err) {
  World& world = *g_world;
  if (!world.error.empty()) {
    *err = world.error;
    return nullptr;
  }
  const std::string name = MakeSpec(s, w).bucket;
  auto it = world.families.find(name);
  if (it != world.families.end()) {
    if (it->second == nullptr) *err = world.setup_errors[name];
    return it->second.get();
  }
  auto f = std::make_unique<Family>();
  f->spec = MakeSpec(s, w);
  std::string e = SetupFamily(f.get(), world.server.url());
  if (!e.empty()) {
    *err = name + ": " + e;
    world.setup_errors[name] = *err;
    world.families.emplace(name, nullptr);
    return nullptr;
  }
  return world.families.emplace(name, std::move(f)).first->second.get();
}

// The sum of the family's counters as the server holds them. Only called
// when no engine is writing.
std::optional<uint64_t> SumOnServer(Family& f, std::string* err) {
  uint64_t sum = 0;
  for (const auto& key : f.spec.keys) {
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
      *err = "check: unparsable counter under " + key;
      return std::nullopt;
    }
    sum += *n;
  }
  return sum;
}

// ---------------------------------------------------------------------------
// One engine of a case, in its own process: opens its engine (or raw client),
// waits for the common start, increments until the deadline.

class Worker {
 public:
  Worker(FamilySpec spec, int index)
      : f_(std::move(spec)), index_(index), chooser_(ChooserFor(f_.workload, Seed(f_, index))) {
    mutate_ = [this](const std::optional<std::string>& current) -> std::optional<std::string> {
      bad_value_ = false;  // may run more than once per update
      std::optional<uint64_t> n;
      if (current) n = DecodeCounter(*current);
      if (!n) {
        bad_value_ = true;
        return std::nullopt;
      }
      return EncodeCounter(*n + 1);
    };
    policy_.max_attempts = 1000000;
    policy_.deadline = std::chrono::seconds(30);
    policy_.initial_backoff = g_mode.occ_initial_backoff;
    policy_.max_backoff = g_mode.occ_max_backoff;
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the engine (or raw client) and warms it up. Empty on success.
  std::string Open(const std::string& url) {
    if (f_.strategy == Strategy::kRaw) {
      raw_ = std::make_unique<RawClient>();
      std::string err = raw_->Connect(url, f_.bucket);
      if (!err.empty()) return err;
      kvEntry* e = nullptr;
      natsStatus s = kvStore_Get(&e, raw_->kv, f_.keys[0].c_str());
      kvEntry_Destroy(e);
      return s == NATS_OK ? "" : NatsError("warm-up kvStore_Get", s);
    }
    auto engine = revkv::Engine::Open(EngineOptions(dir_.path(), url));
    if (!engine.ok()) return "Engine::Open: " + engine.status().ToString();
    engine_ = std::move(*engine);
    auto bucket = engine_->OpenBucket(f_.bucket);
    if (!bucket.ok()) return "OpenBucket(" + f_.bucket + "): " + bucket.status().ToString();
    bucket_ = std::move(*bucket);
    // The first write (and, for locks, the locks bucket's binding) outside
    // the timed part, on keys the counter check never reads.
    const std::string warm = "warm." + std::to_string(index_);
    auto put = bucket_->Put(warm, "w");
    if (!put.ok()) return "warm-up Put: " + put.status().ToString();
    if (f_.strategy != Strategy::kOcc) {
      auto lock = engine_->Acquire(warm + ".lock", kLease, kAcquireTimeout, LockOptions());
      if (!lock.ok()) return "warm-up Acquire: " + lock.status().ToString();
      revkv::Status released = (*lock)->Release();
      if (!released.ok()) return "warm-up Release: " + released.ToString();
    }
    return "";
  }

  // Increments until the deadline. Returns false with *err on failure.
  bool Run(Clock::time_point deadline, std::string* err) {
    latency_ns_.reserve(1 << 14);
    for (;;) {
      const Clock::time_point t0 = Clock::now();
      if (t0 >= deadline) break;
      const size_t i = chooser_.Next();
      bool ok = false;
      switch (f_.strategy) {
        case Strategy::kOcc:
          ok = Occ(i, err);
          break;
        case Strategy::kLock:
        case Strategy::kFencedCas:
          ok = LockReadWrite(i, err);
          break;
        case Strategy::kFenced:
          ok = LockFencedPut(i, err);
          break;
        case Strategy::kRaw:
          ok = Raw(i, err);
          break;
      }
      end_ = Clock::now();
      if (!ok) return false;
      ++done_;
      latency_ns_.push_back(NsBetween(t0, end_));
    }
    return true;
  }

  // Closes the engine or client.
  void Close() {
    bucket_.reset();
    engine_.reset();
    raw_.reset();
  }

  uint64_t done() const { return done_; }
  uint64_t conflicts() const { return conflicts_; }
  Clock::time_point end() const { return end_; }
  std::vector<int64_t>& latency_ns() { return latency_ns_; }
  std::vector<int64_t>& lock_wait_ns() { return lock_wait_ns_; }

 private:
  static uint64_t Seed(const FamilySpec& f, int index) {
    return static_cast<uint64_t>(index) * 1000003 + static_cast<uint64_t>(f.strategy) * 101 +
           static_cast<uint64_t>(f.workload);
  }

  bool Occ(size_t i, std::string* err) {
    const std::string& key = f_.keys[i];
    auto r = bucket_->UpdateWithRetry(key, mutate_, policy_);
    if (!r.ok()) {
      *err = "UpdateWithRetry(" + key + "): " + r.status().ToString();
      return false;
    }
    if (bad_value_ || !r->written) {
      *err = "UpdateWithRetry(" + key + "): missing or unparsable counter";
      return false;
    }
    conflicts_ += static_cast<uint64_t>(r->attempts - 1);
    return true;
  }

  // Acquires `lock_name`, timing the wait; nullptr with *err on failure.
  std::unique_ptr<revkv::Lock> TimedAcquire(const std::string& lock_name, std::string* err) {
    const Clock::time_point t0 = Clock::now();
    auto lock = engine_->Acquire(lock_name, kLease, kAcquireTimeout, LockOptions());
    lock_wait_ns_.push_back(NsBetween(t0, Clock::now()));
    if (!lock.ok()) {
      *err = "Acquire(" + lock_name + "): " + lock.status().ToString();
      return nullptr;
    }
    return std::move(*lock);
  }

  bool LockReadWrite(size_t i, std::string* err) {
    const std::string& key = f_.keys[i];
    const std::string& lock_name = f_.lock_names[i];
    auto lock = TimedAcquire(lock_name, err);
    if (lock == nullptr) return false;
    // On an error below, the handle's destructor releases the lock.
    bool synced = false;      // Synced under this lock already
    uint64_t read_after = 0;  // the revision read after that Sync
    for (int attempt = 0;; ++attempt) {
      auto entry = bucket_->GetEntry(key);
      if (!entry.ok()) {
        *err = "GetEntry(" + key + ") under lock: " + entry.status().ToString();
        return false;
      }
      if (synced) read_after = entry->revision;
      std::optional<uint64_t> n = DecodeCounter(entry->value);
      if (!n) {
        *err = "GetEntry(" + key + "): unparsable counter";
        return false;
      }
      auto w = bucket_->Update(key, EncodeCounter(*n + 1), entry->revision,
                               f_.strategy == Strategy::kFencedCas
                                   ? revkv::WriteOptions{.fence = lock->fence()}
                                   : revkv::WriteOptions{});
      if (w.ok()) break;
      if (!w.status().IsConflict() || attempt >= kMaxRetriesPerOp) {
        *err = "Update(" + key + ") under lock " + lock_name + ": " + w.status().ToString();
        return false;
      }
      if (synced) {
        // The read after the Sync saw every write acknowledged before it,
        // the previous holder's included: a newer one came while we held
        // the lock.
        *err = "key " + key + " changed under lock " + lock_name + ": a conflict (" +
               w.status().ToString() + ") after a Sync and a read at revision " +
               std::to_string(read_after);
        return false;
      }
      // The replica had not applied the previous holder's write yet (see
      // the file comment): catch up with the server, then read again.
      ++conflicts_;
      revkv::Status caught_up = bucket_->Sync(kSyncTimeout);
      if (!caught_up.ok()) {
        *err = "Sync(" + f_.bucket + ") under lock: " + caught_up.ToString();
        return false;
      }
      synced = true;
    }
    revkv::Status released = lock->Release();
    if (!released.ok()) {
      // The increment is written: count it before failing the case.
      ++done_;
      *err = "Release(" + lock_name + "): " + released.ToString();
      return false;
    }
    return true;
  }

  bool LockFencedPut(size_t i, std::string* err) {
    const std::string& key = f_.keys[i];
    const std::string& lock_name = f_.lock_names[i];
    auto lock = TimedAcquire(lock_name, err);
    if (lock == nullptr) return false;
    // Every earlier holder's write precedes the acquisition in the stream.
    if (bucket_->LastRevision() < lock->fencing_token()) {
      ++conflicts_;
      revkv::Status synced = bucket_->Sync(kSyncTimeout);
      if (!synced.ok()) {
        *err = "Sync(" + f_.bucket + ") under lock: " + synced.ToString();
        return false;
      }
    }
    auto entry = bucket_->GetEntry(key);
    std::optional<uint64_t> n;
    if (entry.ok()) n = DecodeCounter(entry->value);
    if (!n) {
      *err = "GetEntry(" + key + ") under lock: " +
             (entry.ok() ? std::string("unparsable counter") : entry.status().ToString());
      return false;
    }
    auto w = bucket_->Put(key, EncodeCounter(*n + 1), {.fence = lock->fence()});
    if (!w.ok()) {
      *err = "fenced Put(" + key + ") under lock " + lock_name + ": " + w.status().ToString();
      return false;
    }
    revkv::Status released = lock->Release();
    if (!released.ok()) {
      ++done_;  // the increment is written: count it before failing the case
      *err = "Release(" + lock_name + "): " + released.ToString();
      return false;
    }
    return true;
  }

  // The fenced strategies keep each lock in the counter's bucket.
  revkv::LockOptions LockOptions() const {
    revkv::LockOptions o;
    if (Fenced(f_.strategy)) o.locks_bucket = f_.bucket;
    return o;
  }

  bool Raw(size_t i, std::string* err) {
    const std::string& key = f_.keys[i];
    for (int attempt = 0; attempt < kMaxRetriesPerOp; ++attempt) {
      kvEntry* e = nullptr;
      natsStatus s = kvStore_Get(&e, raw_->kv, key.c_str());
      if (s != NATS_OK) {
        *err = NatsError(("kvStore_Get(" + key + ")").c_str(), s);
        return false;
      }
      const uint64_t rev = kvEntry_Revision(e);
      auto n = DecodeCounter(std::string_view(static_cast<const char*>(kvEntry_Value(e)),
                                              static_cast<size_t>(kvEntry_ValueLen(e))));
      kvEntry_Destroy(e);
      if (!n) {
        *err = "kvStore_Get(" + key + "): unparsable counter";
        return false;
      }
      const std::string next = EncodeCounter(*n + 1);
      uint64_t written = 0;
      s = kvStore_Update(&written, raw_->kv, key.c_str(), next.data(),
                         static_cast<int>(next.size()), rev);
      if (s == NATS_OK) return true;
      if (!IsWrongLastSequence()) {
        *err = NatsError(("kvStore_Update(" + key + ")").c_str(), s);
        return false;
      }
      ++conflicts_;
    }
    *err = "raw: gave up on " + key + " after " + std::to_string(kMaxRetriesPerOp) + " conflicts";
    return false;
  }

  const FamilySpec f_;
  const int index_;
  KeyChooser chooser_;
  revkv::Mutator mutate_;
  revkv::RetryPolicy policy_;
  bool bad_value_ = false;

  revkv::testing::TempDir dir_;
  // The bucket is declared after the engine so that it is destroyed first.
  std::unique_ptr<revkv::Engine> engine_;
  std::shared_ptr<revkv::Bucket> bucket_;
  std::unique_ptr<RawClient> raw_;

  uint64_t done_ = 0;
  uint64_t conflicts_ = 0;
  Clock::time_point end_;
  std::vector<int64_t> latency_ns_;
  std::vector<int64_t> lock_wait_ns_;
};

// ---------------------------------------------------------------------------
// Worker processes and the driver's side of them.
//
// The driver spawns each worker as this binary with --rc_worker=... (an exec,
// not a bare fork: the driver runs nats.c threads, which a forked child would
// not have). The worker reads the driver's commands on its stdin and writes
// its reports on fd 3, one line each:
//   worker -> driver  READY                      engine open and warmed up
//                     ERROR <message>            failed (open or run); exits
//   driver -> worker  GO <start_ns> <end_ns>     steady_clock (CLOCK_MONOTONIC,
//                                                the same in every process)
//                                                times of the common start
//                                                and of the deadline
//   worker -> driver  RESULT <ops> <conflicts> <last_end_ns>
//                     LAT <n> <ns>...            latency of each increment
//                     WAIT <n> <ns>...           time in Acquire (locks)
//                     END | ERROR <message>
//   driver -> worker  EXIT (or EOF)              close the engine and exit
// The driver sends EXIT only after every worker has reported, so that no
// closing engine slows down the last increments of the others.

constexpr int kReportFd = 3;
constexpr std::string_view kWorkerFlag = "--rc_worker=";

// Writes one report line; a newline inside `text` would split it.
void Report(FILE* out, const std::string& text) {
  std::string line = text;
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

void ReportSamples(FILE* out, const char* tag, const std::vector<int64_t>& v) {
  std::fprintf(out, "%s %zu", tag, v.size());
  for (int64_t x : v) std::fprintf(out, " %lld", static_cast<long long>(x));
  std::fputc('\n', out);
  std::fflush(out);
}

int64_t SinceEpochNs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Clock::time_point FromEpochNs(int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

std::optional<Strategy> StrategyByName(std::string_view name) {
  for (Strategy s : kStrategies) {
    if (name == StrategyName(s)) return s;
  }
  return std::nullopt;
}

std::optional<Workload> WorkloadByName(std::string_view name) {
  for (Workload w : kWorkloads) {
    if (name == WorkloadName(w)) return w;
  }
  return std::nullopt;
}

// The worker's command line: --rc_worker=STRATEGY,WORKLOAD,INDEX,
// BACKOFF_INITIAL_US,BACKOFF_MAX_US,URL (the URL last: it has no comma).
std::string WorkerArg(Strategy s, Workload w, int index, const std::string& url) {
  return std::string(kWorkerFlag) + StrategyName(s) + "," + WorkloadName(w) + "," +
         std::to_string(index) + "," + std::to_string(g_mode.occ_initial_backoff.count()) + "," +
         std::to_string(g_mode.occ_max_backoff.count()) + "," + url;
}

// The worker process's main. Returns its exit code.
int WorkerMain(std::string_view arg) {
  FILE* out = fdopen(kReportFd, "w");
  if (out == nullptr) {
    std::fprintf(stderr, "rc_worker: fd %d is not open for the report\n", kReportFd);
    return 2;
  }
  std::vector<std::string> parts;
  for (size_t pos = 0;;) {
    const size_t comma = arg.find(',', pos);
    if (parts.size() == 5 || comma == std::string_view::npos) {
      parts.emplace_back(arg.substr(pos));
      break;
    }
    parts.emplace_back(arg.substr(pos, comma - pos));
    pos = comma + 1;
  }
  std::optional<Strategy> strategy = parts.size() == 6 ? StrategyByName(parts[0]) : std::nullopt;
  std::optional<Workload> workload = parts.size() == 6 ? WorkloadByName(parts[1]) : std::nullopt;
  if (!strategy || !workload) {
    Report(out, "ERROR bad worker arguments: " + std::string(arg));
    return 2;
  }
  const int index = std::atoi(parts[2].c_str());
  g_mode.occ_initial_backoff = std::chrono::microseconds(std::atoll(parts[3].c_str()));
  g_mode.occ_max_backoff = std::chrono::microseconds(std::atoll(parts[4].c_str()));

  Worker worker(MakeSpec(*strategy, *workload), index);
  std::string err = worker.Open(parts[5]);
  if (!err.empty()) {
    Report(out, "ERROR " + err);
    return 1;
  }
  Report(out, "READY");
  std::string line;
  long long start_ns = 0, deadline_ns = 0;
  if (!std::getline(std::cin, line) ||
      std::sscanf(line.c_str(), "GO %lld %lld", &start_ns, &deadline_ns) != 2) {
    return 0;  // the driver gave up on this case
  }
  std::this_thread::sleep_until(FromEpochNs(start_ns));
  const bool ok = worker.Run(FromEpochNs(deadline_ns), &err);
  Report(out, "RESULT " + std::to_string(worker.done()) + " " + std::to_string(worker.conflicts()) +
                  " " + std::to_string(SinceEpochNs(worker.end())));
  ReportSamples(out, "LAT", worker.latency_ns());
  ReportSamples(out, "WAIT", worker.lock_wait_ns());
  Report(out, ok ? "END" : "ERROR " + err);
  while (std::getline(std::cin, line) && line != "EXIT") {
  }
  worker.Close();
  return ok ? 0 : 1;
}

// Reads lines from a pipe, waiting at most until a deadline.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  ~LineReader() {
    if (fd_ >= 0) close(fd_);
  }

  // The next line, without its newline; nullopt at EOF, on an error or at
  // the deadline (*why says which).
  std::optional<std::string> Next(Clock::time_point deadline, std::string* why) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        *why = "no report in time";
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
      if (r < 0 && errno != EINTR) {
        *why = std::string("poll: ") + std::strerror(errno);
        return std::nullopt;
      }
      if (r <= 0) continue;
      char chunk[65536];
      const ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *why = n == 0 ? "the worker exited without a report" : std::strerror(errno);
        return std::nullopt;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
};

// One spawned worker, as the driver sees it.
struct Child {
  pid_t pid = -1;
  int control = -1;  // the worker's stdin
  std::unique_ptr<LineReader> reports;

  // Writes one command line; false if the worker is gone.
  bool Send(const std::string& line) {
    const std::string text = line + "\n";
    return control >= 0 &&
           write(control, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }
  void CloseControl() {
    if (control >= 0) close(control);
    control = -1;
  }
};

// Spawns this binary as a worker. Empty on success.
std::string SpawnWorker(const std::string& worker_arg, Child* child) {
  int control[2], reports[2];
  if (pipe2(control, O_CLOEXEC) != 0) return std::string("pipe2: ") + std::strerror(errno);
  if (pipe2(reports, O_CLOEXEC) != 0) {
    close(control[0]);
    close(control[1]);
    return std::string("pipe2: ") + std::strerror(errno);
  }
  // dup2 onto the same number would leave FD_CLOEXEC set: move it first.
  if (reports[1] == kReportFd) {
    const int moved = fcntl(reports[1], F_DUPFD_CLOEXEC, 10);
    close(reports[1]);
    reports[1] = moved;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, control[0], 0);
  posix_spawn_file_actions_adddup2(&actions, reports[1], kReportFd);
  std::string exe = "/proc/self/exe";
  std::string arg = worker_arg;
  char* argv[] = {exe.data(), arg.data(), nullptr};
  const int rc = posix_spawn(&child->pid, exe.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(control[0]);
  close(reports[1]);
  child->control = control[1];
  child->reports = std::make_unique<LineReader>(reports[0]);
  if (rc != 0) {
    child->pid = -1;
    return std::string("posix_spawn: ") + std::strerror(rc);
  }
  return "";
}

// Parses "TAG <n> <v>..." into *out. False if the line is not that.
bool ParseSamples(const std::string& line, std::string_view tag, std::vector<int64_t>* out) {
  const char* p = line.c_str();
  const char* end = p + line.size();
  if (line.compare(0, tag.size(), tag) != 0) return false;
  p += tag.size();
  auto next = [&](int64_t* v) {
    while (p < end && *p == ' ') ++p;
    auto [ptr, ec] = std::from_chars(p, end, *v);
    if (ec != std::errc()) return false;
    p = ptr;
    return true;
  };
  int64_t n = 0;
  if (!next(&n) || n < 0) return false;
  out->reserve(out->size() + static_cast<size_t>(n));
  for (int64_t i = 0, v = 0; i < n; ++i) {
    if (!next(&v)) return false;
    out->push_back(v);
  }
  return true;
}

// What the driver collects from one worker after its run.
struct WorkerResult {
  uint64_t done = 0;
  uint64_t conflicts = 0;
  Clock::time_point end;
  std::string error;  // empty: the worker ran to the deadline
};

// Reads a worker's RESULT, LAT, WAIT and END lines, appending the samples.
// Empty on success (a worker's own ERROR is in result->error instead).
std::string ReadResult(Child& c, Clock::time_point deadline, WorkerResult* result,
                       std::vector<int64_t>* latency, std::vector<int64_t>* lock_wait) {
  std::string why;
  std::optional<std::string> line = c.reports->Next(deadline, &why);
  if (!line) return why;
  unsigned long long done = 0, conflicts = 0;
  long long end_ns = 0;
  if (line->compare(0, 6, "ERROR ") == 0) {
    result->error = line->substr(6);
    return "";
  }
  if (std::sscanf(line->c_str(), "RESULT %llu %llu %lld", &done, &conflicts, &end_ns) != 3) {
    return "unexpected report: " + line->substr(0, 200);
  }
  result->done = done;
  result->conflicts = conflicts;
  result->end = FromEpochNs(end_ns);
  line = c.reports->Next(deadline, &why);
  if (!line || !ParseSamples(*line, "LAT", latency)) return line ? "bad LAT line" : why;
  line = c.reports->Next(deadline, &why);
  if (!line || !ParseSamples(*line, "WAIT", lock_wait)) return line ? "bad WAIT line" : why;
  line = c.reports->Next(deadline, &why);
  if (!line) return why;
  if (line->compare(0, 6, "ERROR ") == 0) {
    result->error = line->substr(6);
  } else if (*line != "END") {
    return "unexpected report: " + line->substr(0, 200);
  }
  return "";
}

// Ends every worker still running (they are ours) and reaps them all.
// Returns the first abnormal exit, if any.
std::string ReapAll(std::vector<Child>& children, bool kill_first) {
  std::string first;
  for (auto& c : children) c.CloseControl();
  for (auto& c : children) {
    if (c.pid <= 0) continue;
    if (kill_first) kill(c.pid, SIGKILL);
    int status = 0;
    while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!kill_first && first.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      first = "worker " + std::to_string(c.pid) +
              (WIFSIGNALED(status) ? " died of signal " + std::to_string(WTERMSIG(status))
                                   : " exited with " + std::to_string(WEXITSTATUS(status)));
    }
    c.pid = -1;
  }
  return first;
}

// CPU time used so far by the nats-server and by every worker.
struct CpuSample {
  double server = 0;
  double workers = 0;
  static CpuSample Now(const std::vector<Child>& children) {
    CpuSample s;
    s.server = PidCpuSeconds(g_server_pid);
    for (const auto& c : children) s.workers += PidCpuSeconds(c.pid);
    return s;
  }
};

void BM_ReplicatedContention(benchmark::State& state, Strategy strategy, Workload workload) {
  const int engines = static_cast<int>(state.range(0));
  std::string err;
  Family* f = FamilyFor(strategy, workload, &err);
  if (f == nullptr) return state.SkipWithError(err.c_str());
  const std::string url = g_world->server.url();
  const std::string case_name = std::string(StrategyName(strategy)) + "/" + WorkloadName(workload) +
                                " engines:" + std::to_string(engines);
  auto fail = [&](const std::string& msg) {
    g_failed = true;
    std::fprintf(stderr, "rcontention/%s: %s\n", case_name.c_str(), msg.c_str());
    state.SkipWithError(msg.c_str());
  };

  for (auto _ : state) {
    // Spawn every worker, then wait until all have opened and warmed up.
    std::vector<Child> children(static_cast<size_t>(engines));
    for (int i = 0; i < engines && err.empty(); ++i) {
      err = SpawnWorker(WorkerArg(strategy, workload, i, url), &children[static_cast<size_t>(i)]);
    }
    const Clock::time_point open_deadline = Clock::now() + std::chrono::seconds(120);
    for (auto& c : children) {
      if (!err.empty()) break;
      std::string why;
      std::optional<std::string> line = c.reports->Next(open_deadline, &why);
      if (!line) {
        err = "worker " + std::to_string(c.pid) + " did not open: " + why;
      } else if (*line != "READY") {
        err = "worker " + std::to_string(c.pid) + ": " + *line;
      }
    }
    if (!err.empty()) {
      ReapAll(children, /*kill_first=*/true);
      return fail(err);
    }

    // The common start, a little ahead so that every worker is waiting for
    // it; the measured window excludes opening, warm-up and closing.
    const CpuSample cpu_start = CpuSample::Now(children);
    const Clock::time_point start = Clock::now() + std::chrono::milliseconds(20);
    const Clock::time_point deadline =
        start + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(g_mode.case_seconds));
    const std::string go =
        "GO " + std::to_string(SinceEpochNs(start)) + " " + std::to_string(SinceEpochNs(deadline));
    for (auto& c : children) {
      if (!c.Send(go)) err = "worker " + std::to_string(c.pid) + " is gone before the start";
    }

    uint64_t done = 0, conflicts = 0;
    Clock::time_point end = start;
    std::vector<int64_t> latency, lock_wait;
    const Clock::time_point report_deadline = deadline + std::chrono::seconds(120);
    // Every worker's counts, even after one has failed: the others' writes
    // are on the server, and the family's total must include them.
    bool counts_known = true;
    for (auto& c : children) {
      WorkerResult r;
      std::string e = ReadResult(c, report_deadline, &r, &latency, &lock_wait);
      if (!e.empty()) {
        counts_known = false;
        if (err.empty()) err = "worker " + std::to_string(c.pid) + ": " + e;
        continue;
      }
      done += r.done;
      conflicts += r.conflicts;
      end = std::max(end, r.end);
      if (!r.error.empty() && err.empty()) err = r.error;
    }
    const CpuSample cpu_end = CpuSample::Now(children);
    f->increments += done;
    for (auto& c : children) c.Send("EXIT");
    const std::string exit_error = ReapAll(children, /*kill_first=*/!counts_known);
    if (err.empty()) err = exit_error;
    if (!err.empty()) {
      // A worker that died mid-run took its count with it: the family's
      // later cases are checked from the server's sum now, so that one
      // failure is reported once, not by every later case.
      std::string ignored;
      if (std::optional<uint64_t> sum = SumOnServer(*f, &ignored)) f->increments = *sum;
      return fail(err);
    }

    const double seconds = std::chrono::duration<double>(end - start).count();
    state.SetIterationTime(seconds);
    state.counters["engines"] = engines;
    state.counters["ops"] = static_cast<double>(done);
    state.counters["ops_per_s"] = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    state.counters["conflicts_per_op"] =
        done > 0 ? static_cast<double>(conflicts) / static_cast<double>(done) : 0;
    // Where the CPU went (100 = one core busy): all worker processes
    // together (engines or raw clients) and the nats-server, from the
    // start until every worker had reported. All share the machine.
    state.counters["client_cpu_pct"] =
        seconds > 0 ? 100 * (cpu_end.workers - cpu_start.workers) / seconds : 0;
    state.counters["server_cpu_pct"] =
        seconds > 0 ? 100 * (cpu_end.server - cpu_start.server) / seconds : 0;
    state.counters["lock_wait_mean_us"] = MeanUs(lock_wait);
    state.counters["lock_wait_p50_us"] = PercentileUs(&lock_wait, 0.50);
    state.counters["p50_us"] = PercentileUs(&latency, 0.50);
    state.counters["p99_us"] = PercentileUs(&latency, 0.99);

    std::optional<uint64_t> sum = SumOnServer(*f, &err);
    if (!sum) return fail(err);
    const uint64_t lost = *sum > f->increments ? *sum - f->increments : f->increments - *sum;
    state.counters["lost_updates"] = static_cast<double>(lost);
    if (lost != 0) {
      const std::string msg = "LOST UPDATES: counters add up to " + std::to_string(*sum) +
                              " after " + std::to_string(f->increments) +
                              " successful increments, summed over every worker process";
      f->increments = *sum;  // reported once; later cases start from here
      return fail(msg);
    }
  }
}

// ---------------------------------------------------------------------------
// Single measurements.

// One engine and one raw client, nobody else: Acquire + Release vs one
// kvStore_Update, sample by sample, so that drift hits both alike.
void BM_LockVsUpdate(benchmark::State& state) {
  if (!g_world->error.empty()) return state.SkipWithError(g_world->error.c_str());
  const std::string url = g_world->server.url();
  const std::string raw_bucket = "rc_single_raw";
  const std::string value = EncodeCounter(0);
  for (auto _ : state) {
    // The raw bucket (created by the first run, bound by later ones).
    RawClient raw;
    natsStatus s = revkv::testing::ConnectClient(url, &raw.nc, &raw.js);
    if (s == NATS_OK) {
      kvConfig cfg;
      kvConfig_Init(&cfg);
      cfg.Bucket = raw_bucket.c_str();
      cfg.History = 1;
      s = js_CreateKeyValue(&raw.kv, raw.js, &cfg);
    }
    uint64_t raw_rev = 0;
    if (s == NATS_OK) {
      s = kvStore_Put(&raw_rev, raw.kv, "u", value.data(), static_cast<int>(value.size()));
    }
    if (s != NATS_OK) return state.SkipWithError(NatsError("raw client", s).c_str());

    revkv::testing::TempDir dir;
    auto engine = revkv::Engine::Open(EngineOptions(dir.path(), url));
    if (!engine.ok()) return state.SkipWithError(engine.status().ToString().c_str());
    auto bucket = (*engine)->OpenBucket("rc_single", {.history = 1});
    if (!bucket.ok()) return state.SkipWithError(bucket.status().ToString().c_str());
    auto put = (*bucket)->Put("u", value);
    if (!put.ok()) return state.SkipWithError(put.status().ToString().c_str());
    uint64_t revkv_rev = *put;
    {  // binds the locks bucket outside the samples
      auto warm = (*engine)->Acquire("solo", kLease, kAcquireTimeout);
      if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
    }

    std::vector<int64_t> acq_rel, acq, rel, kv_update, revkv_update, kv_get, revkv_get;
    const Clock::time_point begin = Clock::now();
    for (int i = 0; i < g_mode.single_samples; ++i) {
      const Clock::time_point t0 = Clock::now();
      auto lock = (*engine)->Acquire("solo", kLease, kAcquireTimeout);
      const Clock::time_point t1 = Clock::now();
      if (!lock.ok()) return state.SkipWithError(lock.status().ToString().c_str());
      revkv::Status released = (*lock)->Release();
      const Clock::time_point t2 = Clock::now();
      if (!released.ok()) return state.SkipWithError(released.ToString().c_str());
      acq.push_back(NsBetween(t0, t1));
      rel.push_back(NsBetween(t1, t2));
      acq_rel.push_back(NsBetween(t0, t2));

      const Clock::time_point t3 = Clock::now();
      s = kvStore_Update(&raw_rev, raw.kv, "u", value.data(), static_cast<int>(value.size()),
                         raw_rev);
      const Clock::time_point t4 = Clock::now();
      if (s != NATS_OK) return state.SkipWithError(NatsError("kvStore_Update", s).c_str());
      kv_update.push_back(NsBetween(t3, t4));

      const Clock::time_point t5 = Clock::now();
      auto w = (*bucket)->Update("u", value, revkv_rev);
      const Clock::time_point t6 = Clock::now();
      if (!w.ok()) return state.SkipWithError(w.status().ToString().c_str());
      revkv_rev = *w;
      revkv_update.push_back(NsBetween(t5, t6));

      // The reads of the two read-increment-writes: raw nats.c asks the
      // server, revkv reads its replica.
      kvEntry* got = nullptr;
      const Clock::time_point t7 = Clock::now();
      s = kvStore_Get(&got, raw.kv, "u");
      const Clock::time_point t8 = Clock::now();
      kvEntry_Destroy(got);
      if (s != NATS_OK) return state.SkipWithError(NatsError("kvStore_Get", s).c_str());
      kv_get.push_back(NsBetween(t7, t8));
      const Clock::time_point t9 = Clock::now();
      auto local = (*bucket)->GetEntry("u");
      const Clock::time_point t10 = Clock::now();
      if (!local.ok()) return state.SkipWithError(local.status().ToString().c_str());
      revkv_get.push_back(NsBetween(t9, t10));
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - begin).count());
    state.counters["samples"] = g_mode.single_samples;
    const double lock_p50 = PercentileUs(&acq_rel, 0.50);
    const double update_p50 = PercentileUs(&kv_update, 0.50);
    state.counters["lock_acq_rel_p50_us"] = lock_p50;
    state.counters["lock_acq_rel_p99_us"] = PercentileUs(&acq_rel, 0.99);
    state.counters["acquire_p50_us"] = PercentileUs(&acq, 0.50);
    state.counters["release_p50_us"] = PercentileUs(&rel, 0.50);
    state.counters["kv_update_p50_us"] = update_p50;
    state.counters["kv_update_p99_us"] = PercentileUs(&kv_update, 0.99);
    state.counters["revkv_update_p50_us"] = PercentileUs(&revkv_update, 0.50);
    state.counters["kv_get_p50_us"] = PercentileUs(&kv_get, 0.50);
    state.counters["revkv_get_p50_us"] = PercentileUs(&revkv_get, 0.50);
    state.counters["lock_over_kv_update"] = update_p50 > 0 ? lock_p50 / update_p50 : 0;
  }
}

// Engine A holds a lock; engine B waits for it in Acquire. Each round: A
// acquires, B starts its Acquire, A waits kWaiterHeadStart so that B is
// surely waiting (B's Create has failed and it sleeps on its replica's apply
// events), then A releases. The sample is the time from A's Release() call
// to B's Acquire returning.
void BM_LockWake(benchmark::State& state) {
  if (!g_world->error.empty()) return state.SkipWithError(g_world->error.c_str());
  constexpr auto kWaiterHeadStart = std::chrono::milliseconds(5);
  const std::string url = g_world->server.url();
  const std::string name = "wake";
  for (auto _ : state) {
    revkv::testing::TempDir dir_a, dir_b;
    auto a = revkv::Engine::Open(EngineOptions(dir_a.path(), url));
    if (!a.ok()) return state.SkipWithError(a.status().ToString().c_str());
    auto b = revkv::Engine::Open(EngineOptions(dir_b.path(), url));
    if (!b.ok()) return state.SkipWithError(b.status().ToString().c_str());
    for (auto* e : {&*a, &*b}) {  // binds each locks bucket outside the samples
      auto warm = (*e)->Acquire(name, kLease, kAcquireTimeout);
      if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
    }

    std::mutex mu;
    std::condition_variable cv;
    int round = 0;               // GUARDED_BY(mu): B's next round to run
    int finished_round = 0;      // GUARDED_BY(mu)
    bool quit = false;           // GUARDED_BY(mu)
    Clock::time_point acquired;  // GUARDED_BY(mu)
    std::string b_error;         // GUARDED_BY(mu)
    std::thread waiter([&] {
      std::unique_lock<std::mutex> lk(mu);
      for (int r = 1;; ++r) {
        cv.wait(lk, [&] { return quit || round >= r; });
        if (quit) return;
        lk.unlock();
        auto lock = (*b)->Acquire(name, kLease, kAcquireTimeout);
        const Clock::time_point t = Clock::now();
        std::string e;
        if (!lock.ok()) {
          e = "B: Acquire: " + lock.status().ToString();
        } else if (revkv::Status st = (*lock)->Release(); !st.ok()) {
          e = "B: Release: " + st.ToString();
        }
        lk.lock();
        acquired = t;
        b_error = e;
        finished_round = r;
        cv.notify_all();
      }
    });

    std::vector<int64_t> wake, release_call;
    std::string error;
    const Clock::time_point begin = Clock::now();
    for (int r = 1; r <= g_mode.wake_rounds && error.empty(); ++r) {
      auto lock = (*a)->Acquire(name, kLease, kAcquireTimeout);
      if (!lock.ok()) {
        error = "A: Acquire: " + lock.status().ToString();
        break;
      }
      {
        std::lock_guard<std::mutex> lk(mu);
        round = r;
        cv.notify_all();
      }
      std::this_thread::sleep_for(kWaiterHeadStart);
      const Clock::time_point t0 = Clock::now();
      revkv::Status st = (*lock)->Release();
      const Clock::time_point t1 = Clock::now();
      if (!st.ok()) error = "A: Release: " + st.ToString();
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return finished_round == r; });
      if (!b_error.empty()) error = b_error;
      if (acquired < t0) error = "B acquired the lock before A released it";
      wake.push_back(NsBetween(t0, acquired));
      release_call.push_back(NsBetween(t0, t1));
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      quit = true;
      cv.notify_all();
    }
    waiter.join();
    if (!error.empty()) {
      g_failed = true;
      std::fprintf(stderr, "single/lock_wake: %s\n", error.c_str());
      return state.SkipWithError(error.c_str());
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - begin).count());
    state.counters["samples"] = static_cast<double>(wake.size());
    state.counters["wake_p50_us"] = PercentileUs(&wake, 0.50);
    state.counters["wake_p99_us"] = PercentileUs(&wake, 0.99);
    state.counters["release_call_p50_us"] = PercentileUs(&release_call, 0.50);
  }
}

bool ShortModeFromEnv() {
  const char* v = std::getenv("REVKV_REPLICATED_CONTENTION_SHORT");
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]).substr(0, kWorkerFlag.size()) == kWorkerFlag) {
    return WorkerMain(std::string_view(argv[1]).substr(kWorkerFlag.size()));
  }
  // A worker that dies must fail its case, not end the driver.
  std::signal(SIGPIPE, SIG_IGN);
  // --short and --occ_backoff_us (ours) are removed before the library
  // parses the rest.
  bool short_mode = ShortModeFromEnv();
  std::optional<std::pair<int64_t, int64_t>> backoff;
  constexpr std::string_view kBackoffFlag = "--occ_backoff_us=";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--short") {
      short_mode = true;
    } else if (arg.substr(0, kBackoffFlag.size()) == kBackoffFlag) {
      long long initial = 0, max = 0;
      if (std::sscanf(argv[i] + kBackoffFlag.size(), "%lld,%lld", &initial, &max) != 2 ||
          initial < 0 || max < initial) {
        std::fprintf(stderr, "%s: want %sINITIAL,MAX (microseconds, 0 <= INITIAL <= MAX)\n",
                     argv[0], kBackoffFlag.data());
        return 1;
      }
      backoff = std::make_pair(initial, max);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  if (short_mode) {
    g_mode.short_mode = true;
    g_mode.case_seconds = 1.0;
    g_mode.single_samples = 300;
    g_mode.wake_rounds = 200;
  }
  if (backoff) {
    g_mode.occ_initial_backoff = std::chrono::microseconds(backoff->first);
    g_mode.occ_max_backoff = std::chrono::microseconds(backoff->second);
  }

  for (Strategy s : kStrategies) {
    for (Workload w : kWorkloads) {
      const std::string name =
          std::string("rcontention/") + StrategyName(s) + "/" + WorkloadName(w);
      benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
          name.c_str(), [s, w](benchmark::State& state) { BM_ReplicatedContention(state, s, w); });
      b->ArgName("engines")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
      for (int n : kEngineCounts) b->Arg(n);
    }
  }
  benchmark::RegisterBenchmark("single/lock_vs_update", BM_LockVsUpdate)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("single/lock_wake", BM_LockWake)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("revkv_replicated_contention_mode", short_mode ? "short" : "full");
  benchmark::AddCustomContext("revkv_case_seconds", std::to_string(g_mode.case_seconds));
  benchmark::AddCustomContext("revkv_occ_backoff_us",
                              std::to_string(g_mode.occ_initial_backoff.count()) + "," +
                                  std::to_string(g_mode.occ_max_backoff.count()));
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueSize));
  benchmark::AddCustomContext("revkv_zipf_theta", std::to_string(kZipfTheta));
  benchmark::AddCustomContext("revkv_zipf_keys", std::to_string(kZipfKeys));
  benchmark::AddCustomContext("nats_server", revkv::testing::NatsServer::Version());
  g_world = new World;
  g_server_pid = g_world->server.pid();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete g_world;  // the families' clients, then the server
  if (g_failed) {
    std::fprintf(stderr, "replicated contention bench: a case FAILED (see above)\n");
    return 1;
  }
  return 0;
}
