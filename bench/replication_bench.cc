// Replicated buckets against raw nats.c on the same nats-server, in one
// binary (DESIGN §8). Each revkv benchmark has its nats.c baseline here:
//
//   BM_ReplicatedGet       vs BM_NatsKvGet          Get from the local replica vs kvStore_Get
//   BM_ReplicatedUpdate    vs BM_NatsKvUpdate       CAS Update (publish, ack, applied locally)
//                                                   vs kvStore_Update, one thread, on a bucket
//                                                   with a watcher (BM_NatsKvUpdateWatched; without
//                                                   one: context)
//   BM_ReplicatedPut/8 thr vs BM_NatsPublishAsync   8 writers on distinct keys, one engine, vs
//                                                   js_PublishAsync pipelined from one thread
//                                                   (BM_NatsPublishSync, 8 threads: context)
//   BM_ReplicatedPutAsync  vs BM_NatsPublishAsync   PutAsync pipelined from one thread
//   BM_ReplicationLag      vs BM_NatsPublishRtt     engine A Put -> engine B's watch callback,
//                                                   vs one js_Publish round trip (p50/p99, µs)
//   BM_ReplicaBootstrap    vs BM_NatsOrderedReplay  a new replica of 100k keys (Open, OpenBucket,
//                                                   Sync) vs an ordered consumer replaying them;
//                                                   (BM_ReplicaBootstrapReplay, context: the
//                                                   same with the 2.11+ snapshot turned off)
//
// bench/replication_report.py pairs them and checks the targets.
//
// The benchmark starts its own nats-server (the bootstrapped 2.10+ one) on a
// free loopback port with a temporary store, and stops it at exit.

#include <benchmark/benchmark.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replication/snapshot_bootstrap.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kKeys = 1000;
constexpr int kValueBytes = 100;
// Writers in the multi-writer pair; each writes kKeys keys of its own.
constexpr int kWriters = 8;
// js_PublishAsync publishes this many messages, then drains the acks with
// js_PublishAsyncComplete, inside the timed loop.
constexpr int kAsyncBatch = 1000;
// Samples behind each p50/p99: the p99 then rests on 20 of them.
constexpr int kLatencySamples = 2000;
// Distinct keys in the bootstrap bucket (history 1).
constexpr int kBootEntries = 100000;
constexpr auto kWait = std::chrono::seconds(60);

revkv::Options EngineOptions(const std::string& path, const std::string& url) {
  revkv::Options o;
  o.path = path;
  o.nats.servers = {url};
  return o;
}

// Nearest-rank percentile, in microseconds, of samples in nanoseconds.
double PercentileUs(std::vector<int64_t> ns, double p) {
  if (ns.empty()) return 0;
  std::sort(ns.begin(), ns.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(ns.size())));
  rank = std::clamp<size_t>(rank, 1, ns.size());
  return static_cast<double>(ns[rank - 1]) / 1e3;
}

void SetLatencyCounters(benchmark::State& state, const std::vector<int64_t>& ns) {
  state.counters["p50_us"] = PercentileUs(ns, 0.50);
  state.counters["p99_us"] = PercentileUs(ns, 0.99);
}

int64_t Ns(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// The server, a raw nats.c client with its bucket "rawkv", and a revkv
// engine with its replicated bucket "revkv".
struct World {
  revkv::testing::NatsServer server;
  revkv::testing::TempDir dir;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // A second JetStream context on the same connection for js_PublishAsync,
  // so that its pending acks never mix with other calls.
  jsCtx* js_async = nullptr;
  std::atomic<int64_t> async_errors{0};
  kvStore* raw = nullptr;  // bucket "rawkv", used through nats.c only
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;  // bucket "revkv", through revkv
  std::string error;

  static void OnAsyncPublishError(jsCtx*, jsPubAckErr*, void* closure) {
    static_cast<World*>(closure)->async_errors.fetch_add(1);
  }

  World() {
    if (!server.Start()) {
      error = server.error();
      return;
    }
    if (revkv::testing::ConnectClient(server.url(), &nc, &js) != NATS_OK) {
      error = "cannot connect nats.c";
      return;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.ErrHandler = &World::OnAsyncPublishError;
    jo.PublishAsync.ErrHandlerClosure = this;
    if (natsConnection_JetStream(&js_async, nc, &jo) != NATS_OK) {
      error = "cannot open a JetStream context for async publishes";
      return;
    }
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = "rawkv";
    if (js_CreateKeyValue(&raw, js, &cfg) != NATS_OK) {
      error = "cannot create the raw bucket";
      return;
    }
    auto e = revkv::Engine::Open(EngineOptions(dir.path(), server.url()));
    if (!e.ok()) {
      error = e.status().ToString();
      return;
    }
    engine = std::move(*e);
    auto b = engine->OpenBucket("revkv");
    if (!b.ok()) {
      error = b.status().ToString();
      return;
    }
    bucket = *b;
    const std::string value(kValueBytes, 'v');
    for (int i = 0; i < kKeys; ++i) {
      std::string key = "key." + std::to_string(i);
      uint64_t rev = 0;
      if (kvStore_Put(&rev, raw, key.c_str(), value.data(), static_cast<int>(value.size())) !=
              NATS_OK ||
          !bucket->Put(key, value).ok()) {
        error = "preload failed";
        return;
      }
    }
  }
  ~World() {
    bucket.reset();
    engine.reset();
    kvStore_Destroy(raw);
    jsCtx_Destroy(js_async);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }

  // Publishes `count` messages with js_PublishAsync, subject(i) for the i-th,
  // draining the acks every kAsyncBatch. Returns an error text, empty if
  // every message was acknowledged.
  template <typename SubjectFn>
  std::string PublishAsync(int64_t first, int64_t count, const std::string& value,
                           SubjectFn subject) {
    const int64_t errors_before = async_errors.load();
    for (int64_t i = first; i < first + count; ++i) {
      natsStatus s = js_PublishAsync(js_async, subject(i).c_str(), value.data(),
                                     static_cast<int>(value.size()), nullptr);
      if (s != NATS_OK) return std::string("js_PublishAsync: ") + natsStatus_GetText(s);
      if ((i - first + 1) % kAsyncBatch == 0 || i + 1 == first + count) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 30000;
        s = js_PublishAsyncComplete(js_async, &po);
        if (s != NATS_OK) return std::string("js_PublishAsyncComplete: ") + natsStatus_GetText(s);
      }
    }
    if (async_errors.load() != errors_before) return "the server refused async publishes";
    return "";
  }
};

// Engines A and B, each with its own directory and connection, on bucket
// "lag". B watches the bucket; the callback stamps the time each revision
// becomes visible there.
struct LagPair {
  revkv::testing::TempDir dir_a;
  revkv::testing::TempDir dir_b;
  std::unique_ptr<revkv::Engine> a;
  std::unique_ptr<revkv::Engine> b;
  std::shared_ptr<revkv::Bucket> bucket_a;
  std::shared_ptr<revkv::Bucket> bucket_b;
  std::unique_ptr<revkv::Watcher> watch_b;
  std::mutex mu;
  std::condition_variable seen_cv;
  uint64_t seen_revision = 0;  // GUARDED_BY(mu)
  Clock::time_point seen_at;   // GUARDED_BY(mu)
  std::string error;           // GUARDED_BY(mu) once the watch runs

  explicit LagPair(const std::string& url) {
    if (!Open(dir_a, url, &a, &bucket_a) || !Open(dir_b, url, &b, &bucket_b)) return;
    revkv::WatchOptions wo;
    wo.start = revkv::WatchStart::kUpdatesOnly;
    auto w = bucket_b->Watch(">", wo, [this](const revkv::Result<revkv::Entry>& e) {
      const auto now = Clock::now();
      std::lock_guard<std::mutex> lock(mu);
      if (e.ok()) {
        seen_revision = e->revision;
        seen_at = now;
      } else {
        error = e.status().ToString();
      }
      seen_cv.notify_all();
    });
    if (!w.ok()) {
      error = w.status().ToString();
      return;
    }
    watch_b = std::move(*w);
  }
  bool Open(const revkv::testing::TempDir& dir, const std::string& url,
            std::unique_ptr<revkv::Engine>* engine, std::shared_ptr<revkv::Bucket>* bucket) {
    auto e = revkv::Engine::Open(EngineOptions(dir.path(), url));
    if (!e.ok()) {
      error = e.status().ToString();
      return false;
    }
    *engine = std::move(*e);
    auto opened = (*engine)->OpenBucket("lag");
    if (!opened.ok()) {
      error = opened.status().ToString();
      return false;
    }
    *bucket = *opened;
    return true;
  }
  ~LagPair() {
    if (watch_b) watch_b->Cancel();
    watch_b.reset();
    bucket_a.reset();
    bucket_b.reset();
    a.reset();
    b.reset();
  }
};

// Bucket "boot" (history 1) holding kBootEntries distinct keys, written
// through nats.c.
struct BootBucket {
  uint64_t last_sequence = 0;
  std::string error;

  explicit BootBucket(World& w) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = "boot";
    cfg.History = 1;
    kvStore* kv = nullptr;
    if (js_CreateKeyValue(&kv, w.js, &cfg) != NATS_OK) {
      error = "cannot create bucket 'boot'";
      return;
    }
    kvStore_Destroy(kv);
    error = w.PublishAsync(0, kBootEntries, std::string(kValueBytes, 'b'),
                           [](int64_t i) { return "$KV.boot.k." + std::to_string(i); });
    if (!error.empty()) return;
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, w.js, "KV_boot", nullptr, nullptr) != NATS_OK) {
      error = "cannot read the stream info of bucket 'boot'";
      return;
    }
    last_sequence = si->State.LastSeq;
    const uint64_t msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (msgs != static_cast<uint64_t>(kBootEntries)) {
      error = "bucket 'boot' holds " + std::to_string(msgs) + " messages, not " +
              std::to_string(kBootEntries);
    }
  }
};

// Created on first use, so a --benchmark_filter pays only for what it runs;
// destroyed by main() after the run, engines before the server.
std::unique_ptr<World> g_world;
std::unique_ptr<LagPair> g_lag;
std::unique_ptr<BootBucket> g_boot;

World& TheWorld() {
  static std::once_flag once;
  std::call_once(once, [] { g_world = std::make_unique<World>(); });
  return *g_world;
}

LagPair& TheLagPair(World& w) {
  if (!g_lag) g_lag = std::make_unique<LagPair>(w.server.url());
  return *g_lag;
}

BootBucket& TheBootBucket(World& w) {
  if (!g_boot) g_boot = std::make_unique<BootBucket>(w);
  return *g_boot;
}

std::string KeyFor(int64_t i) { return "key." + std::to_string(i % kKeys); }

// ---- Get, CAS Update ----

void BM_NatsKvGet(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  int64_t i = 0;
  for (auto _ : state) {
    kvEntry* e = nullptr;
    if (kvStore_Get(&e, w.raw, KeyFor(i++).c_str()) != NATS_OK) {
      return state.SkipWithError("kvStore_Get failed");
    }
    benchmark::DoNotOptimize(kvEntry_ValueLen(e));
    kvEntry_Destroy(e);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplicatedGet(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  int64_t i = 0;
  for (auto _ : state) {
    auto v = w.bucket->Get(KeyFor(i++));
    if (!v.ok()) return state.SkipWithError(v.status().ToString().c_str());
    benchmark::DoNotOptimize(v->size());
  }
  state.SetItemsProcessed(state.iterations());
}

// A CAS update of one key with the revision the caller already knows, as an
// optimistic read-modify-write does after its read.
void BM_NatsKvUpdate(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  kvEntry* e = nullptr;
  if (kvStore_Get(&e, w.raw, "key.0") != NATS_OK) return state.SkipWithError("get");
  uint64_t rev = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  const std::string value(kValueBytes, 'u');
  for (auto _ : state) {
    if (kvStore_Update(&rev, w.raw, "key.0", value.data(), static_cast<int>(value.size()), rev) !=
        NATS_OK) {
      return state.SkipWithError("kvStore_Update failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// BM_NatsKvUpdate on a bucket with an active watcher, as a deployment
// has (every revkv bucket has one: its replica's consumer). The watcher is
// nats.c's kvStore_WatchAll on its own connection, drained by a thread.
void BM_NatsKvUpdateWatched(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* kv = nullptr;
  kvWatcher* watcher = nullptr;
  if (revkv::testing::ConnectClient(w.server.url(), &nc, &js) != NATS_OK ||
      js_KeyValue(&kv, js, "rawkv") != NATS_OK || kvStore_WatchAll(&watcher, kv, nullptr) != NATS_OK) {
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return state.SkipWithError("cannot watch the raw bucket");
  }
  std::atomic<bool> stop{false};
  std::thread drain([&] {
    while (!stop) {
      kvEntry* e = nullptr;
      if (kvWatcher_Next(&e, watcher, 100) == NATS_OK) kvEntry_Destroy(e);
    }
  });
  kvEntry* e = nullptr;
  uint64_t rev = 0;
  if (kvStore_Get(&e, w.raw, "key.0") == NATS_OK) rev = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  const std::string value(kValueBytes, 'u');
  for (auto _ : state) {
    if (kvStore_Update(&rev, w.raw, "key.0", value.data(), static_cast<int>(value.size()), rev) !=
        NATS_OK) {
      state.SkipWithError("kvStore_Update failed");
      break;
    }
  }
  stop = true;
  drain.join();
  kvWatcher_Destroy(watcher);
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplicatedUpdate(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  auto e = w.bucket->GetEntry("key.0");
  if (!e.ok()) return state.SkipWithError(e.status().ToString().c_str());
  uint64_t rev = e->revision;
  const std::string value(kValueBytes, 'u');
  for (auto _ : state) {
    auto r = w.bucket->Update("key.0", value, rev);
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    rev = *r;
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- Writers on distinct keys ----

// The raw ceiling for writes to a KV stream: one thread pipelining
// js_PublishAsync to "$KV.rawkv.w<t>.<n>", the same 8 x kKeys subjects the
// revkv writers use, with the acks drained every kAsyncBatch (timed).
void BM_NatsPublishAsync(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  const std::string value(kValueBytes, 'p');
  std::vector<std::string> subjects;
  for (int n = 0; n < kKeys; ++n) {
    for (int t = 0; t < kWriters; ++t) {
      subjects.push_back("$KV.rawkv.w" + std::to_string(t) + "." + std::to_string(n));
    }
  }
  int64_t next = 0;
  while (state.KeepRunningBatch(kAsyncBatch)) {
    auto subject = [&](int64_t i) -> const std::string& {
      return subjects[static_cast<size_t>(i) % subjects.size()];
    };
    std::string err = w.PublishAsync(next, kAsyncBatch, value, subject);
    next += kAsyncBatch;
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Context for the pair above, no target: synchronous js_Publish (request,
// store, ack) from each thread on its own subjects, as a replicated Put must
// wait for its ack before it returns.
void BM_NatsPublishSync(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  const std::string prefix = "$KV.rawkv.s" + std::to_string(state.thread_index()) + ".";
  std::vector<std::string> subjects;
  for (int n = 0; n < kKeys; ++n) subjects.push_back(prefix + std::to_string(n));
  const std::string value(kValueBytes, 's');
  size_t i = 0;
  for (auto _ : state) {
    jsPubAck* ack = nullptr;
    natsStatus s = js_Publish(&ack, w.js, subjects[i++ % subjects.size()].c_str(), value.data(),
                              static_cast<int>(value.size()), nullptr, nullptr);
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
      state.SkipWithError((std::string("js_Publish: ") + natsStatus_GetText(s)).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Replicated Put from each benchmark thread on its own keys, one engine:
// each Put publishes, waits for the ack and for the local apply.
void BM_ReplicatedPut(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  const std::string prefix = "w" + std::to_string(state.thread_index()) + ".";
  std::vector<std::string> keys;
  for (int n = 0; n < kKeys; ++n) keys.push_back(prefix + std::to_string(n));
  const std::string value(kValueBytes, 'p');
  size_t i = 0;
  for (auto _ : state) {
    auto r = w.bucket->Put(keys[i++ % keys.size()], value);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// One thread pipelining PutAsync over the same 8 x kKeys keys, waiting for
// every future each kAsyncBatch writes (so each batch is acknowledged and
// applied locally before the next): the pair of BM_NatsPublishAsync.
void BM_ReplicatedPutAsync(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  std::vector<std::string> keys;
  for (int n = 0; n < kKeys; ++n) {
    for (int t = 0; t < kWriters; ++t) keys.push_back("w" + std::to_string(t) + "." + std::to_string(n));
  }
  const std::string value(kValueBytes, 'p');
  std::vector<std::future<revkv::Result<uint64_t>>> futures;
  futures.reserve(kAsyncBatch);
  size_t i = 0;
  while (state.KeepRunningBatch(kAsyncBatch)) {
    futures.clear();
    for (int n = 0; n < kAsyncBatch; ++n) {
      futures.push_back(w.bucket->PutAsync(keys[i++ % keys.size()], value));
    }
    for (auto& f : futures) {
      auto r = f.get();
      if (!r.ok()) {
        state.SkipWithError(r.status().ToString().c_str());
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- Replication lag ----

// One synchronous js_Publish to "$KV.rawkv.rtt.<n>": request, store, ack.
void BM_NatsPublishRtt(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  const std::string value(kValueBytes, 'r');
  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(state.max_iterations));
  int64_t i = 0;
  for (auto _ : state) {
    const std::string subject = "$KV.rawkv.rtt." + std::to_string(i++ % kKeys);
    const auto start = Clock::now();
    jsPubAck* ack = nullptr;
    natsStatus s = js_Publish(&ack, w.js, subject.c_str(), value.data(),
                              static_cast<int>(value.size()), nullptr, nullptr);
    samples.push_back(Ns(Clock::now() - start));
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
      state.SkipWithError((std::string("js_Publish: ") + natsStatus_GetText(s)).c_str());
      break;
    }
  }
  SetLatencyCounters(state, samples);
  state.SetItemsProcessed(state.iterations());
}

// Engine A Puts a key of bucket "lag"; the sample runs from the call to A's
// Put until engine B's watch callback delivers that revision. This includes
// A's publish round trip, the server's delivery to B's ordered consumer, B's
// local apply and the hand-off to the watch thread: the time after which an
// application on B can see a write an application on A has just asked for.
void BM_ReplicationLag(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  LagPair& p = TheLagPair(w);
  if (!p.error.empty()) return state.SkipWithError(p.error.c_str());
  const std::string value(kValueBytes, 'l');
  std::vector<int64_t> samples;
  std::vector<int64_t> after_return;
  samples.reserve(static_cast<size_t>(state.max_iterations));
  after_return.reserve(static_cast<size_t>(state.max_iterations));
  int64_t i = 0;
  for (auto _ : state) {
    const std::string key = "lag." + std::to_string(i++ % kKeys);
    const auto start = Clock::now();
    auto r = p.bucket_a->Put(key, value);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
    const auto returned = Clock::now();
    std::unique_lock<std::mutex> lock(p.mu);
    if (!p.seen_cv.wait_for(lock, kWait,
                            [&] { return p.seen_revision >= *r || !p.error.empty(); }) ||
        !p.error.empty()) {
      state.SkipWithError(p.error.empty() ? "engine B did not see the write" : p.error.c_str());
      break;
    }
    // A writes one key at a time, so the last revision B saw is this one.
    samples.push_back(Ns(p.seen_at - start));
    after_return.push_back(Ns(p.seen_at - returned));
  }
  SetLatencyCounters(state, samples);
  // Context: B's visibility relative to the return of A's Put (negative when
  // B applied the write before A's read-your-writes wait ended).
  state.counters["after_put_p50_us"] = PercentileUs(after_return, 0.50);
  state.counters["after_put_p99_us"] = PercentileUs(after_return, 0.99);
  state.SetItemsProcessed(state.iterations());
}

// ---- Bootstrap ----

// A fresh replica of bucket "boot": Engine::Open on an empty directory (its
// own connection), OpenBucket, then Sync until the replica has applied the
// stream's last sequence. Teardown is not timed.
// `snapshot`: the default path (a snapshot on servers with batched direct
// get); without it, the replay through the ordered consumer, the path
// before snapshots and the one older servers take.
void RunBootstrap(benchmark::State& state, bool snapshot) {
  revkv::replication::TEST_SetSnapshotBootstrap(snapshot);
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  BootBucket& boot = TheBootBucket(w);
  if (!boot.error.empty()) return state.SkipWithError(boot.error.c_str());
  for (auto _ : state) {
    revkv::testing::TempDir dir;
    const auto start = Clock::now();
    auto e = revkv::Engine::Open(EngineOptions(dir.path(), w.server.url()));
    if (!e.ok()) {
      state.SkipWithError(e.status().ToString().c_str());
      break;
    }
    auto b = (*e)->OpenBucket("boot");
    if (!b.ok()) {
      state.SkipWithError(b.status().ToString().c_str());
      break;
    }
    revkv::Status s = (*b)->Sync(kWait);
    const auto end = Clock::now();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    state.SetIterationTime(SecondsBetween(start, end));
    if ((*b)->LastRevision() != boot.last_sequence) {
      state.SkipWithError("the replica's revision is not the stream's last sequence");
      break;
    }
  }
  revkv::replication::TEST_SetSnapshotBootstrap(true);
  state.SetItemsProcessed(state.iterations() * kBootEntries);
}

void BM_ReplicaBootstrap(benchmark::State& state) { RunBootstrap(state, /*snapshot=*/true); }
// Context: the same with the snapshot turned off.
void BM_ReplicaBootstrapReplay(benchmark::State& state) {
  RunBootstrap(state, /*snapshot=*/false);
}

struct Replay {
  uint64_t last_sequence = 0;
  uint64_t received = 0;  // touched by the subscription's thread only
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;              // GUARDED_BY(mu)
  Clock::time_point done_at;      // GUARDED_BY(mu)
  uint64_t received_at_done = 0;  // GUARDED_BY(mu)
  bool completed = false;         // GUARDED_BY(mu): no callback runs any more

  static void OnComplete(void* closure) {
    auto* r = static_cast<Replay*>(closure);
    std::lock_guard<std::mutex> lock(r->mu);
    r->completed = true;
    r->done_cv.notify_all();
  }

  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* r = static_cast<Replay*>(closure);
    uint64_t seq = 0;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    benchmark::DoNotOptimize(natsMsg_GetData(msg));
    natsMsg_Destroy(msg);
    ++r->received;
    if (seq >= r->last_sequence) {
      std::lock_guard<std::mutex> lock(r->mu);
      if (!r->done) {
        r->done = true;
        r->done_at = Clock::now();
        r->received_at_done = r->received;
      }
      r->done_cv.notify_all();
    }
  }
};

// The raw replay rate: a new connection and an ordered push consumer on
// "$KV.boot.>" delivering the last message per subject, as revkv's apply
// loop subscribes for a new replica, counting messages until the stream's
// last sequence arrives.
void BM_NatsOrderedReplay(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  BootBucket& boot = TheBootBucket(w);
  if (!boot.error.empty()) return state.SkipWithError(boot.error.c_str());
  for (auto _ : state) {
    Replay replay;
    replay.last_sequence = boot.last_sequence;
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsSubscription* sub = nullptr;
    const auto start = Clock::now();
    natsStatus s = revkv::testing::ConnectClient(w.server.url(), &nc, &js);
    if (s == NATS_OK) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Ordered = true;
      so.Stream = "KV_boot";
      so.Config.DeliverPolicy = js_DeliverLastPerSubject;
      s = js_Subscribe(&sub, js, "$KV.boot.>", &Replay::OnMessage, &replay, nullptr, &so, nullptr);
    }
    if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, &Replay::OnComplete, &replay);
    bool done = false;
    if (s == NATS_OK) {
      std::unique_lock<std::mutex> lock(replay.mu);
      done = replay.done_cv.wait_for(lock, kWait, [&] { return replay.done; });
    }
    // `replay` lives on this stack frame: wait until nats.c says that no
    // callback runs any more before it goes.
    if (sub != nullptr && natsSubscription_Unsubscribe(sub) == NATS_OK) {
      std::unique_lock<std::mutex> lock(replay.mu);
      replay.done_cv.wait_for(lock, std::chrono::seconds(10), [&] { return replay.completed; });
    }
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (s != NATS_OK || !done) {
      state.SkipWithError(s != NATS_OK ? natsStatus_GetText(s)
                                       : "the ordered consumer did not reach the last sequence");
      break;
    }
    std::lock_guard<std::mutex> lock(replay.mu);
    state.SetIterationTime(SecondsBetween(start, replay.done_at));
    state.counters["messages"] = static_cast<double>(replay.received_at_done);
  }
  state.SetItemsProcessed(state.iterations() * kBootEntries);
}

BENCHMARK(BM_NatsKvGet)->UseRealTime();
BENCHMARK(BM_ReplicatedGet)->UseRealTime();
BENCHMARK(BM_NatsKvUpdate)->UseRealTime();
BENCHMARK(BM_NatsKvUpdateWatched)->UseRealTime();
BENCHMARK(BM_ReplicatedUpdate)->UseRealTime();
BENCHMARK(BM_NatsPublishAsync)->UseRealTime();
BENCHMARK(BM_NatsPublishSync)->Threads(kWriters)->UseRealTime();
BENCHMARK(BM_ReplicatedPut)->Threads(1)->Threads(kWriters)->UseRealTime();
BENCHMARK(BM_ReplicatedPutAsync)->UseRealTime();
BENCHMARK(BM_NatsPublishRtt)->Iterations(kLatencySamples)->UseRealTime();
BENCHMARK(BM_ReplicationLag)->Iterations(kLatencySamples)->UseRealTime();
BENCHMARK(BM_ReplicaBootstrap)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReplicaBootstrapReplay)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NatsOrderedReplay)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("nats_server", revkv::testing::NatsServer::Version());
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueBytes));
  benchmark::AddCustomContext("revkv_bootstrap_entries", std::to_string(kBootEntries));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Engines and clients first, then the server (World's last member to go).
  g_lag.reset();
  g_boot.reset();
  g_world.reset();
  return 0;
}
