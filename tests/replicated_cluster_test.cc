// Replicated buckets with three stream replicas, on real three-node
// JetStream clusters (NatsCluster):
//  - on the bootstrapped 2.10+ server, compare-and-swap and Create are exact
//    across engines connected to different nodes;
//  - on Debian 12's 2.9.10, which lets two CAS writers both win on R>1
//    streams (fixed in 2.9.21), CAS, Create and UpdateWithRetry are refused
//    on R3 buckets with a clear error, while Put, and CAS on R1 buckets,
//    still work.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/tcp_relay.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsCluster;
using testing::NatsServer;
using testing::TempDir;

class ClusterTest : public ::testing::Test {
 protected:
  explicit ClusterTest(std::string binary) : cluster_(std::move(binary)) {}

  void SetUp() override { ASSERT_TRUE(cluster_.Start()) << cluster_.error(); }

  // An engine connected to one node only, so that engines on different
  // nodes reach the stream through the cluster's routes.
  std::unique_ptr<Engine> OpenEngine(TempDir& dir, int node) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {cluster_.node(node).url()};
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  std::shared_ptr<Bucket> OpenBucket(Engine& engine, const std::string& name,
                                     const BucketOptions& options = {}) {
    auto b = engine.OpenBucket(name, options);
    EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  // The stream's replica count as the server states it (-1 if unreadable).
  int StreamReplicas(const std::string& bucket) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    int replicas = -1;
    if (testing::ConnectClient(cluster_.node(2).url(), &nc, &js) == NATS_OK) {
      jsStreamInfo* si = nullptr;
      const std::string stream = "KV_" + bucket;
      if (js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) == NATS_OK) {
        replicas = static_cast<int>(si->Config->Replicas);
        jsStreamInfo_Destroy(si);
      }
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return replicas;
  }

  NatsCluster cluster_;
  TempDir dir_a_, dir_b_;
};

// The bootstrapped 2.10+ server.
class CurrentClusterTest : public ClusterTest {
 protected:
  CurrentClusterTest() : ClusterTest(NatsServer::Binary()) {}
};
// Debian 12's nats-server 2.9.10.
class OldClusterTest : public ClusterTest {
 protected:
  OldClusterTest() : ClusterTest(REVKV_SYSTEM_NATS_SERVER) {}
};
// Lower-case suite names, so that `ctest -R cluster` selects them.
using replicated_cluster = CurrentClusterTest;
using replicated_cluster_2_9 = OldClusterTest;

TEST_F(replicated_cluster, StaleCasFromAnotherEngineIsConflictOnThreeReplicas) {
  auto a = OpenEngine(dir_a_, 0);
  auto b = OpenEngine(dir_b_, 1);
  ASSERT_TRUE(a && b);
  auto ba = a->OpenBucket("r3", {.replicas = 3});
  ASSERT_TRUE(ba.ok()) << ba.status().ToString();
  auto bb = b->OpenBucket("r3");
  ASSERT_TRUE(bb.ok()) << bb.status().ToString();
  ASSERT_EQ(StreamReplicas("r3"), 3);

  auto r1 = (*ba)->Put("k", "a1");
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ASSERT_TRUE((*bb)->Sync(5s).ok());
  auto r2 = (*bb)->Update("k", "b2", *r1);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  auto stale = (*ba)->Update("k", "a3", *r1);
  EXPECT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_EQ(stale.status().revision(), *r2) << stale.status().ToString();
  auto stale_create = (*ba)->Create("k", "a4");
  EXPECT_TRUE(stale_create.status().IsExists()) << stale_create.status().ToString();

  for (Bucket* bucket : {ba->get(), bb->get()}) {
    ASSERT_TRUE(bucket->Sync(5s).ok());
    auto e = bucket->GetEntry("k");
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->value, "b2");
    EXPECT_EQ(e->revision, *r2);
  }
}

// Rounds of writers racing with the same expected revision from two engines
// on two nodes: the server must let exactly one of them win each round.
TEST_F(replicated_cluster, RacingCasWritersHaveExactlyOneWinnerPerRound) {
  auto a = OpenEngine(dir_a_, 0);
  auto b = OpenEngine(dir_b_, 1);
  ASSERT_TRUE(a && b);
  auto ba = OpenBucket(*a, "race", {.replicas = 3});
  auto bb = OpenBucket(*b, "race");
  ASSERT_TRUE(ba && bb);
  ASSERT_EQ(StreamReplicas("race"), 3);
  auto start = ba->Put("k", "start");
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  uint64_t current = *start;

  constexpr int kRounds = 15;
  constexpr int kWriters = 4;  // two per engine
  int unknown = 0;             // losers told 10164
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(ba->Sync(5s).ok());
    ASSERT_TRUE(bb->Sync(5s).ok());
    ASSERT_EQ(ba->GetEntry("k")->revision, current);
    ASSERT_EQ(bb->GetEntry("k")->revision, current);
    std::barrier sync_point(kWriters);
    std::vector<Result<uint64_t>> results(kWriters, Status::Unavailable("not run"));
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      Bucket* bucket = (w % 2 == 0 ? ba : bb).get();
      threads.emplace_back([&, w, bucket] {
        sync_point.arrive_and_wait();
        results[static_cast<size_t>(w)] =
            bucket->Update("k", "r" + std::to_string(round) + "w" + std::to_string(w), current);
      });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    int winner = -1;
    for (int w = 0; w < kWriters; ++w) {
      const auto& r = results[static_cast<size_t>(w)];
      if (r.ok()) {
        ++winners;
        winner = w;
      } else {
        EXPECT_TRUE(r.status().IsConflict()) << "round " << round << ": " << r.status().ToString();
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    const uint64_t won = *results[static_cast<size_t>(winner)];
    for (const auto& r : results) {
      if (r.ok()) continue;
      // A loser either learns the winner's revision (10071), or, from 2.11,
      // that another CAS was in flight (10164): then the revision is
      // explicitly unknown, never a made-up 0.
      if (r.status().revision_known()) {
        EXPECT_EQ(r.status().revision(), won) << r.status().ToString();
      } else {
        ++unknown;
        EXPECT_NE(r.status().message().find("10164"), std::string_view::npos)
            << r.status().ToString();
      }
    }
    for (Bucket* bucket : {ba.get(), bb.get()}) {
      ASSERT_TRUE(bucket->Sync(5s).ok());
      auto e = bucket->GetEntry("k");
      ASSERT_TRUE(e.ok());
      EXPECT_EQ(e->revision, won);
      EXPECT_EQ(e->value, "r" + std::to_string(round) + "w" + std::to_string(winner));
    }
    current = won;
  }
  // Every round wrote exactly one revision.
  EXPECT_EQ(ba->LastRevision(), *start + kRounds);
  std::printf("losers told that another CAS was in flight (10164): %d of %d\n", unknown,
              kRounds * (kWriters - 1));
}

TEST_F(replicated_cluster, UpdateWithRetryIncrementsFromThreeEnginesLoseNothing) {
  // Three engines, one per node, two threads each: every increment that
  // returns OK is in the final value, whatever mix of 10071 and 10164 the
  // cluster answered the losers with.
  TempDir dir_c;
  std::unique_ptr<Engine> engines[] = {OpenEngine(dir_a_, 0), OpenEngine(dir_b_, 1),
                                       OpenEngine(dir_c, 2)};
  std::shared_ptr<Bucket> buckets[3];
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(engines[i]);
    buckets[i] = OpenBucket(*engines[i], "counter", {.replicas = 3});
    ASSERT_TRUE(buckets[i]);
  }
  ASSERT_EQ(StreamReplicas("counter"), 3);
  constexpr int kThreadsPerEngine = 2;
  constexpr int kIncrements = 40;
  std::atomic<int> ok{0}, attempts{0};
  std::vector<std::string> errors;
  std::mutex errors_mu;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    for (int t = 0; t < kThreadsPerEngine; ++t) {
      threads.emplace_back([&, i] {
        RetryPolicy policy;
        policy.max_attempts = 1000;
        policy.deadline = 60s;
        for (int n = 0; n < kIncrements; ++n) {
          auto r = buckets[i]->UpdateWithRetry(
              "n",
              [](const std::optional<std::string>& v) -> std::optional<std::string> {
                return std::to_string(v ? std::stoll(*v) + 1 : 1);
              },
              policy);
          if (r.ok()) {
            ++ok;
            attempts += r->attempts;
          } else {
            std::lock_guard<std::mutex> lock(errors_mu);
            errors.push_back(r.status().ToString());
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.size() << " increments failed, first: " << errors.front();
  EXPECT_EQ(ok.load(), 3 * kThreadsPerEngine * kIncrements);
  for (auto& b : buckets) {
    ASSERT_TRUE(b->Sync(5s).ok());
    auto v = b->Get("n");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(*v, std::to_string(ok.load()));
  }
  std::printf("%d increments took %d attempts\n", ok.load(), attempts.load());
}

// A client that must reach the cluster through one listed address (here a
// relay in front of node 0, as a proxy or port forward would be): with
// ignore_discovered_servers it stays on that address, so when the address
// goes away its writes fail instead of reaching the cluster around it.
// Without the option it learns the nodes the cluster advertises and carries
// on through them.
TEST_F(replicated_cluster, IgnoringDiscoveredServersKeepsTheClientOnItsListedServers) {
  for (const bool ignore : {true, false}) {
    SCOPED_TRACE(ignore ? "ignore_discovered_servers" : "following the cluster");
    TempDir dir;
    auto relay = std::make_unique<testing::TcpRelay>(cluster_.node(0).port());
    ASSERT_TRUE(relay->ok()) << relay->error();
    Options o;
    o.path = dir.path();
    o.nats.servers = {relay->url()};
    o.nats.ignore_discovered_servers = ignore;
    o.nats.write_timeout = 2s;
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto b = OpenBucket(**e, "proxied", {.replicas = 3});
    ASSERT_TRUE(b);
    auto before = b->Put("k", "through the relay");
    ASSERT_TRUE(before.ok()) << before.status().ToString();
    relay.reset();  // the only listed address is gone
    // A write in flight as the connection drops has an unknown outcome
    // (Timeout) either way; what differs is whether a later one gets through.
    Status last = Status::OK();
    bool wrote = false;
    for (const auto until = std::chrono::steady_clock::now() + 6s;
         !wrote && std::chrono::steady_clock::now() < until;) {
      auto r = b->Put("k", "with the relay gone");
      wrote = r.ok();
      if (!wrote) last = r.status();
    }
    if (ignore) {
      EXPECT_FALSE(wrote) << "a write reached the cluster around the listed address";
      EXPECT_TRUE(last.IsUnavailable() || last.IsTimeout()) << last.ToString();
    } else {
      EXPECT_TRUE(wrote) << "last error: " << last.ToString();
    }
  }
}

TEST_F(replicated_cluster, ConcurrentCreatesHaveExactlyOneWinner) {
  auto a = OpenEngine(dir_a_, 0);
  auto b = OpenEngine(dir_b_, 1);
  ASSERT_TRUE(a && b);
  auto ba = OpenBucket(*a, "create", {.replicas = 3});
  auto bb = OpenBucket(*b, "create");
  ASSERT_TRUE(ba && bb);
  ASSERT_EQ(StreamReplicas("create"), 3);

  constexpr int kKeys = 15;
  constexpr int kCreators = 4;  // two per engine
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = "job." + std::to_string(k);
    // Every other key was deleted first: Create is then a CAS on the
    // tombstone, which must have one winner too.
    if (k % 2 == 1) {
      ASSERT_TRUE(ba->Put(key, "old").ok());
      ASSERT_TRUE(ba->Delete(key).ok());
      ASSERT_TRUE(bb->Sync(5s).ok());
    }
    std::barrier sync_point(kCreators);
    std::vector<Result<uint64_t>> results(kCreators, Status::Unavailable("not run"));
    std::vector<std::thread> threads;
    for (int c = 0; c < kCreators; ++c) {
      Bucket* bucket = (c % 2 == 0 ? ba : bb).get();
      threads.emplace_back([&, c, bucket] {
        sync_point.arrive_and_wait();
        results[static_cast<size_t>(c)] = bucket->Create(key, "c" + std::to_string(c));
      });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    int winner = -1;
    for (int c = 0; c < kCreators; ++c) {
      const auto& r = results[static_cast<size_t>(c)];
      if (r.ok()) {
        ++winners;
        winner = c;
      } else {
        EXPECT_TRUE(r.status().IsExists()) << key << ": " << r.status().ToString();
      }
    }
    ASSERT_EQ(winners, 1) << key;
    const uint64_t won = *results[static_cast<size_t>(winner)];
    for (const auto& r : results) {
      if (!r.ok()) {
        EXPECT_EQ(r.status().revision(), won) << key << ": " << r.status().ToString();
      }
    }
    for (Bucket* bucket : {ba.get(), bb.get()}) {
      ASSERT_TRUE(bucket->Sync(5s).ok());
      auto e = bucket->GetEntry(key);
      ASSERT_TRUE(e.ok()) << key << ": " << e.status().ToString();
      EXPECT_EQ(e->revision, won);
      EXPECT_EQ(e->value, "c" + std::to_string(winner));
    }
  }
}

TEST_F(replicated_cluster_2_9, CasCreateAndUpdateWithRetryAreRefusedOnThreeReplicas) {
  auto a = OpenEngine(dir_a_, 0);
  auto b = OpenEngine(dir_b_, 1);
  ASSERT_TRUE(a && b);
  auto ba = a->OpenBucket("r3", {.replicas = 3});
  ASSERT_TRUE(ba.ok()) << ba.status().ToString();
  // An engine that binds without asking for replicas is refused all the same.
  auto bb = b->OpenBucket("r3");
  ASSERT_TRUE(bb.ok()) << bb.status().ToString();
  ASSERT_EQ(StreamReplicas("r3"), 3);

  // Put needs no compare-and-swap: still allowed.
  auto put = (*ba)->Put("k", "v1");
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_TRUE((*bb)->Sync(5s).ok());
  EXPECT_EQ(*(*bb)->Get("k"), "v1");

  for (Bucket* bucket : {ba->get(), bb->get()}) {
    std::vector<std::pair<std::string, Status>> refused;
    refused.emplace_back("Update", bucket->Update("k", "v2", *put).status());
    refused.emplace_back("Create", bucket->Create("fresh", "v").status());
    refused.emplace_back("UpdateWithRetry",
                         bucket
                             ->UpdateWithRetry("k",
                                               [](const std::optional<std::string>&) {
                                                 return std::optional<std::string>("v3");
                                               })
                             .status());
    refused.emplace_back("Delete(expected)", bucket->Delete("k", *put).status());
    for (const auto& [what, s] : refused) {
      EXPECT_TRUE(s.IsInvalidArgument()) << what << ": " << s.ToString();
      EXPECT_NE(s.message().find("2.9.10"), std::string_view::npos) << what << ": " << s.ToString();
      EXPECT_NE(s.message().find("2.9.21"), std::string_view::npos) << what << ": " << s.ToString();
    }
  }
  // Nothing was written by the refused calls.
  ASSERT_TRUE((*ba)->Sync(5s).ok());
  EXPECT_EQ((*ba)->LastRevision(), *put);
  EXPECT_EQ(*(*ba)->Get("k"), "v1");
  EXPECT_TRUE((*ba)->Get("fresh").status().IsNotFound());
}

TEST_F(replicated_cluster_2_9, SingleReplicaBucketsKeepCasOnTheSameCluster) {
  auto a = OpenEngine(dir_a_, 0);
  auto b = OpenEngine(dir_b_, 1);
  ASSERT_TRUE(a && b);
  auto ba = a->OpenBucket("r1", {.replicas = 1});
  ASSERT_TRUE(ba.ok()) << ba.status().ToString();
  auto bb = b->OpenBucket("r1");
  ASSERT_TRUE(bb.ok()) << bb.status().ToString();
  ASSERT_EQ(StreamReplicas("r1"), 1);
  // An R3 bucket next to it is refused, so the guard is live on this cluster.
  auto r3 = a->OpenBucket("r3", {.replicas = 3});
  ASSERT_TRUE(r3.ok()) << r3.status().ToString();
  EXPECT_TRUE((*r3)->Create("k", "v").status().IsInvalidArgument());

  auto c = (*ba)->Create("k", "a1");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE((*bb)->Sync(5s).ok());
  auto u = (*bb)->Update("k", "b2", *c);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  auto stale = (*ba)->Update("k", "a3", *c);
  EXPECT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_TRUE((*bb)->Create("k", "b4").status().IsExists());
  auto n = (*bb)->UpdateWithRetry("n", [](const std::optional<std::string>& cur) {
    return std::optional<std::string>(cur ? *cur + "+" : "1");
  });
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_TRUE(n->written);
  ASSERT_TRUE((*ba)->Sync(5s).ok());
  EXPECT_EQ(*(*ba)->Get("k"), "b2");
  EXPECT_EQ(*(*ba)->Get("n"), "1");
}

}  // namespace
}  // namespace revkv
