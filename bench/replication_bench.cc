// Replicated buckets against raw nats.c on the same nats-server, in one
// binary (DESIGN §8): Get from the local replica vs kvStore_Get, and a CAS
// Update (publish, ack, applied locally) vs kvStore_Update.
//
// The benchmark starts its own nats-server (the bootstrapped 2.10+ one) on a
// free loopback port with a temporary store.

#include <benchmark/benchmark.h>
#include <nats/nats.h>

#include <memory>
#include <mutex>
#include <string>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

constexpr int kKeys = 1000;

struct World {
  revkv::testing::NatsServer server;
  revkv::testing::TempDir dir;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* raw = nullptr;  // bucket "rawkv", used through nats.c only
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;  // bucket "revkv", through revkv
  std::string error;

  World() {
    if (!server.Start()) {
      error = server.error();
      return;
    }
    if (revkv::testing::ConnectClient(server.url(), &nc, &js) != NATS_OK) {
      error = "cannot connect nats.c";
      return;
    }
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = "rawkv";
    if (js_CreateKeyValue(&raw, js, &cfg) != NATS_OK) {
      error = "cannot create the raw bucket";
      return;
    }
    revkv::Options o;
    o.path = dir.path();
    o.nats.servers = {server.url()};
    auto e = revkv::Engine::Open(o);
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
    const std::string value(100, 'v');
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
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
};

World& TheWorld() {
  static World* w = new World();  // lives until exit; the server is stopped by the OS then
  return *w;
}

std::string KeyFor(int64_t i) { return "key." + std::to_string(i % kKeys); }

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
  const std::string value(100, 'u');
  for (auto _ : state) {
    if (kvStore_Update(&rev, w.raw, "key.0", value.data(), static_cast<int>(value.size()), rev) !=
        NATS_OK) {
      return state.SkipWithError("kvStore_Update failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplicatedUpdate(benchmark::State& state) {
  World& w = TheWorld();
  if (!w.error.empty()) return state.SkipWithError(w.error.c_str());
  auto e = w.bucket->GetEntry("key.0");
  if (!e.ok()) return state.SkipWithError(e.status().ToString().c_str());
  uint64_t rev = e->revision;
  const std::string value(100, 'u');
  for (auto _ : state) {
    auto r = w.bucket->Update("key.0", value, rev);
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    rev = *r;
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_NatsKvGet)->UseRealTime();
BENCHMARK(BM_ReplicatedGet)->UseRealTime();
BENCHMARK(BM_NatsKvUpdate)->UseRealTime();
BENCHMARK(BM_ReplicatedUpdate)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
