// Leader failover on a three-node cluster with an R3 bucket (DESIGN §5):
//  - the stream leader is killed with SIGKILL while three engines, each on
//    its own node, run CAS increments; once with the killed node first in
//    every engine's server list and once with it last;
//  - the same with the JetStream meta leader;
//  - a lock held across a stream leader kill is kept or reported lost
//    before anyone else takes it, never both;
//  - a dead first server in the list does not stop an R3 bucket from
//    opening (the version is read from the server the connection is on);
//  - a rolling upgrade from 2.10 to the newest server under CAS load.
// Every case prints the outage the writers saw, from the kill to the first
// write that succeeded after it.

#include <gtest/gtest.h>
#include <nats/nats.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::NatsCluster;
using testing::NatsServer;
using testing::TempDir;

constexpr char kBucket[] = "failover";

// "2.10.27" of a binary whose --version says "nats-server: v2.10.27".
std::string VersionOf(const std::string& binary) {
  const std::string line = NatsServer::Version(binary);
  const size_t v = line.find(" v");
  return v == std::string::npos ? line : line.substr(v + 2);
}
constexpr char kKey[] = "counter";

// What the increments of one run saw.
struct Tally {
  std::mutex mu;
  std::vector<uint64_t> acked_values;     // the counter values that were acknowledged
  std::set<uint64_t> acked_revisions;
  int unknown = 0;                        // Timeout or Unavailable: may or may not be in
  std::map<std::string, int> failures;    // code -> count
  std::vector<std::string> unexpected;    // any other failure
  std::optional<Clock::time_point> first_success_after_kill;
  // Outages after the kill: from a failed write to the next success.
  std::optional<Clock::time_point> failing_since;
  std::chrono::milliseconds longest_outage{0};
  int outages = 0;
};

class FailoverTest : public ::testing::Test {
 protected:
  explicit FailoverTest(std::vector<std::string> binaries = {})
      : cluster_(binaries.empty() ? std::vector<std::string>(3, NatsServer::Binary())
                                  : std::move(binaries)) {}

  void SetUp() override { ASSERT_TRUE(cluster_.Start()) << cluster_.error(); }

  // An engine whose server list starts with node `home`, with node `killed`
  // first (killed_first) or last in the list. nats.c may still shuffle it.
  std::unique_ptr<Engine> OpenEngine(TempDir& dir, int home, int killed, bool killed_first) {
    std::vector<std::string> servers;
    if (killed_first) servers.push_back(cluster_.node(killed).url());
    servers.push_back(cluster_.node(home).url());
    for (int i = 0; i < NatsCluster::kSize; ++i) {
      if (i != home && i != killed) servers.push_back(cluster_.node(i).url());
    }
    if (!killed_first && home != killed) servers.push_back(cluster_.node(killed).url());
    if (home == killed && !killed_first) {
      // Its own node is the one to die; it is still listed last.
      servers.erase(servers.begin());
      servers.push_back(cluster_.node(killed).url());
    }
    Options o;
    o.path = dir.path();
    o.nats.servers = servers;
    o.nats.write_timeout = 2s;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Creates the R3 bucket with a plain client and returns its leader.
  int CreateBucket(const std::string& bucket) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    EXPECT_EQ(testing::ConnectClient(cluster_.node(0).url(), &nc, &js), NATS_OK);
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    cfg.Replicas = 3;
    kvStore* kv = nullptr;
    natsStatus s = js_CreateKeyValue(&kv, js, &cfg);
    EXPECT_EQ(s, NATS_OK) << nats_GetLastError(nullptr);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    int leader = -1;
    const auto deadline = Clock::now() + 10s;
    while (leader < 0 && Clock::now() < deadline) {
      leader = cluster_.StreamLeader("KV_" + bucket);
      if (leader < 0) std::this_thread::sleep_for(50ms);
    }
    return leader;
  }

  // `threads` threads per engine increment the counter with UpdateWithRetry
  // until `stop`, tallying every outcome.
  static void Increment(Bucket* bucket, const std::atomic<bool>& stop,
                        const std::atomic<bool>& killed, Tally& tally) {
    RetryPolicy policy;
    policy.max_attempts = 50;
    policy.deadline = 3s;
    while (!stop.load()) {
      uint64_t wrote = 0;
      auto r = bucket->UpdateWithRetry(
          kKey,
          [&](const std::optional<std::string>& v) -> std::optional<std::string> {
            wrote = (v ? std::stoull(*v) : 0) + 1;
            return std::to_string(wrote);
          },
          policy);
      const auto now = Clock::now();
      std::lock_guard<std::mutex> lock(tally.mu);
      if (r.ok()) {
        tally.acked_values.push_back(wrote);
        tally.acked_revisions.insert(r->revision);
        if (killed.load() && !tally.first_success_after_kill) tally.first_success_after_kill = now;
        if (tally.failing_since) {
          tally.longest_outage =
              std::max(tally.longest_outage, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 now - *tally.failing_since));
          ++tally.outages;
          tally.failing_since.reset();
        }
        continue;
      }
      const Status& s = r.status();
      tally.failures[std::string(CodeName(s.code()))]++;
      if (killed.load() && !tally.failing_since) tally.failing_since = now;
      if (s.IsTimeout() || s.IsUnavailable()) {
        ++tally.unknown;  // the increment may or may not have landed
      } else if (!s.IsConflict() && !s.IsBusy()) {
        tally.unexpected.push_back(s.ToString());
      }
      if (!s.ok()) std::this_thread::sleep_for(20ms);
    }
  }

  // Runs the workload from three engines (one per node), kills node
  // `victim()` after a second, keeps writing until every engine has written
  // again (at most 40 s), restarts the node and checks the history.
  template <typename Victim>
  void RunKill(bool killed_first, const char* what, Victim victim) {
    const int stream_leader = CreateBucket(kBucket);
    ASSERT_GE(stream_leader, 0) << "no stream leader";
    const int target = victim();
    ASSERT_GE(target, 0) << "no " << what;
    TempDir dirs[3];
    std::unique_ptr<Engine> engines[3];
    std::shared_ptr<Bucket> buckets[3];
    for (int i = 0; i < 3; ++i) {
      engines[i] = OpenEngine(dirs[i], i, target, killed_first);
      ASSERT_TRUE(engines[i]);
      auto b = engines[i]->OpenBucket(kBucket);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      buckets[i] = *b;
    }
    std::atomic<bool> stop{false}, killed{false};
    Tally tallies[3];
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back(Increment, buckets[i].get(), std::cref(stop), std::cref(killed),
                           std::ref(tallies[i]));
    }
    std::this_thread::sleep_for(1s);
    const auto kill_at = Clock::now();
    killed = true;
    cluster_.node(target).Kill();
    // Writes resume after the election: wait until every engine has written
    // since the kill.
    const auto give_up = kill_at + 40s;
    auto resumed = [&] {
      for (auto& t : tallies) {
        std::lock_guard<std::mutex> lock(t.mu);
        if (!t.first_success_after_kill) return false;
      }
      return true;
    };
    while (!resumed() && Clock::now() < give_up) std::this_thread::sleep_for(50ms);
    std::this_thread::sleep_for(500ms);
    stop = true;
    for (auto& t : threads) t.join();
    ASSERT_TRUE(resumed()) << "writes did not resume within 40 s of killing the " << what;

    // The node comes back; every replica converges.
    ASSERT_TRUE(cluster_.node(target).Start()) << cluster_.node(target).error();

    std::vector<uint64_t> acked;
    std::set<uint64_t> revisions;
    int unknown = 0;
    for (int i = 0; i < 3; ++i) {
      Tally& t = tallies[i];
      EXPECT_TRUE(t.unexpected.empty())
          << "engine " << i << ": " << t.unexpected.size() << " unexpected failures, first: "
          << t.unexpected.front();
      acked.insert(acked.end(), t.acked_values.begin(), t.acked_values.end());
      for (uint64_t r : t.acked_revisions) {
        EXPECT_TRUE(revisions.insert(r).second) << "revision " << r << " acknowledged twice";
      }
      unknown += t.unknown;
      std::string failures;
      for (const auto& [code, n] : t.failures) failures += " " + code + "=" + std::to_string(n);
      const auto resumed_after =
          t.first_success_after_kill
              ? std::chrono::duration_cast<std::chrono::milliseconds>(*t.first_success_after_kill -
                                                                      kill_at)
                    .count()
              : -1;
      std::printf("[%s killed, listed %s] engine %d: %zu acked; failures:%s; first success "
                  "%lld ms after the kill; longest outage (failed write -> next success) %lld ms "
                  "over %d outage(s)\n",
                  what, killed_first ? "first" : "last", i, t.acked_values.size(),
                  failures.empty() ? " none" : failures.c_str(),
                  static_cast<long long>(resumed_after),
                  static_cast<long long>(t.longest_outage.count()), t.outages);
    }
    // No increment won twice: two winners of one CAS round would have
    // written the same value.
    std::sort(acked.begin(), acked.end());
    EXPECT_EQ(std::adjacent_find(acked.begin(), acked.end()), acked.end())
        << "one counter value was acknowledged twice";
    ASSERT_FALSE(acked.empty());
    // Every acknowledged increment is in the final value; unknown outcomes
    // may or may not be.
    std::optional<Entry> final_entry;
    for (int i = 0; i < 3; ++i) {
      Status synced = buckets[i]->Sync(20s);
      ASSERT_TRUE(synced.ok()) << "engine " << i << ": " << synced.ToString();
      auto e = buckets[i]->GetEntry(kKey);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      if (!final_entry) final_entry = *e;
      EXPECT_EQ(e->revision, final_entry->revision) << "engine " << i;
      EXPECT_EQ(e->value, final_entry->value) << "engine " << i;
    }
    const uint64_t final_value = std::stoull(final_entry->value);
    EXPECT_GE(final_value, acked.back());
    EXPECT_GE(final_value, acked.size());
    EXPECT_LE(final_value, acked.size() + static_cast<uint64_t>(unknown));
    // The restarted node serves the same state.
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    ASSERT_EQ(testing::ConnectClient(cluster_.node(target).url(), &nc, &js), NATS_OK);
    kvStore* kv = nullptr;
    natsStatus s = NATS_ERR;
    kvEntry* server_entry = nullptr;
    const auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      if (kv == nullptr) js_KeyValue(&kv, js, kBucket);
      if (kv != nullptr) {
        kvEntry_Destroy(server_entry);
        server_entry = nullptr;
        s = kvStore_Get(&server_entry, kv, kKey);
        if (s == NATS_OK && kvEntry_Revision(server_entry) == final_entry->revision) break;
      }
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_EQ(s, NATS_OK) << natsStatus_GetText(s);
    EXPECT_EQ(kvEntry_Revision(server_entry), final_entry->revision);
    EXPECT_EQ(std::string(kvEntry_ValueString(server_entry)), final_entry->value);
    kvEntry_Destroy(server_entry);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }

  NatsCluster cluster_;
};

using replicated_failover = FailoverTest;

TEST_F(replicated_failover, StreamLeaderKilledListedFirstWritesResumeAndLoseNothing) {
  RunKill(true, "stream leader", [&] { return cluster_.StreamLeader(std::string("KV_") + kBucket); });
}

TEST_F(replicated_failover, StreamLeaderKilledListedLastWritesResumeAndLoseNothing) {
  RunKill(false, "stream leader", [&] { return cluster_.StreamLeader(std::string("KV_") + kBucket); });
}

TEST_F(replicated_failover, MetaLeaderKilledWritesResumeAndLoseNothing) {
  RunKill(true, "meta leader", [&] { return cluster_.MetaLeader(); });
}

TEST_F(replicated_failover, DeadFirstServerDoesNotStopAThreeReplicaBucket) {
  // The first listed node is down before the engine even starts.
  ASSERT_GE(CreateBucket(kBucket), 0);
  cluster_.node(0).Kill();
  TempDir dir;
  Options o;
  o.path = dir.path();
  o.nats.servers = cluster_.urls();  // node 0 first
  auto engine = Engine::Open(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  std::shared_ptr<Bucket> bucket;
  Status last;
  // Node 0 may have led the stream or the meta group: until both have a
  // leader again, each consumer create waits out the JetStream timeout (5 s).
  // Under a sanitizer and a parallel ctest, 2.10.27 took more than 20 s.
  const auto deadline = Clock::now() + 60s;
  while (!bucket && Clock::now() < deadline) {
    auto b = (*engine)->OpenBucket(kBucket);
    if (b.ok()) {
      bucket = *b;
    } else {
      last = b.status();
      std::this_thread::sleep_for(200ms);
    }
  }
  ASSERT_TRUE(bucket) << last.ToString();
  Result<uint64_t> created = Status::Unavailable("not tried");
  while (Clock::now() < deadline) {
    created = bucket->Create("k", "v");
    if (created.ok() || !(created.status().IsUnavailable() || created.status().IsTimeout())) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto updated = bucket->Update("k", "w", *created);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_FALSE(bucket->GetStatus().server_version.empty());
}

TEST_F(replicated_failover, LockHeldAcrossAStreamLeaderKillIsKeptOrLostFirstNeverBoth) {
  // The locks bucket is R3; its stream leader dies while engine A holds the
  // lock and engine B keeps trying to take it.
  const int leader = CreateBucket("locks");
  ASSERT_GE(leader, 0);
  const int home_a = (leader + 1) % 3, home_b = (leader + 2) % 3;
  TempDir da, db;
  auto a = OpenEngine(da, home_a, leader, false);
  auto b = OpenEngine(db, home_b, leader, false);
  ASSERT_TRUE(a && b);
  constexpr auto kLease = 3s;
  auto held = a->Acquire("L", kLease, 5s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  std::atomic<int64_t> lost_at_ns{-1};
  const auto t0 = Clock::now();
  (*held)->on_lost([&](const Status&) {
    lost_at_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  });
  std::atomic<bool> stop{false};
  std::atomic<int64_t> b_acquired_at_ns{-1};
  std::unique_ptr<Lock> b_lock;
  std::thread contender([&] {
    while (!stop.load() && b_acquired_at_ns.load() < 0) {
      auto r = b->TryAcquire("L", kLease);
      if (r.ok()) {
        b_acquired_at_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
        // A's view at the moment B holds it: lost() must already say so.
        if (!(*held)->lost()) {
          ADD_FAILURE() << "B acquired the lock while A still believed it held it";
        }
        b_lock = std::move(*r);
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  std::this_thread::sleep_for(500ms);
  const auto kill_at = Clock::now();
  cluster_.node(leader).Kill();
  // Two leases: the renewals either go through after the election or the
  // lease runs out.
  std::this_thread::sleep_for(2 * kLease + 2s);
  stop = true;
  contender.join();
  const bool a_lost = (*held)->lost();
  std::printf("lock across a leader kill: A %s%s, B %s\n", a_lost ? "lost it" : "kept it",
              a_lost ? (" at +" + std::to_string((lost_at_ns.load() -
                                                  std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                      kill_at - t0).count()) / 1000000) +
                        " ms after the kill")
                           .c_str()
                     : "",
              b_acquired_at_ns.load() >= 0 ? "took it" : "never took it");
  if (b_acquired_at_ns.load() >= 0) {
    ASSERT_TRUE(a_lost) << "both A and B held the lock";
    EXPECT_LT(lost_at_ns.load(), b_acquired_at_ns.load())
        << "A learned it had lost the lock only after B took it";
  }
  if (!a_lost) {
    EXPECT_LT(b_acquired_at_ns.load(), 0);
    // A kept it: its lock still works and releases cleanly.
    EXPECT_TRUE((*held)->Release().ok());
  }
}

// Mixed-version clusters: 2.10 nodes next to the newest server, as during a
// rolling upgrade.
class replicated_upgrade : public FailoverTest {
 protected:
  explicit replicated_upgrade(std::vector<std::string> binaries =
                                  std::vector<std::string>(3, REVKV_NATS_SERVER_210))
      : FailoverTest(std::move(binaries)) {}

  // An engine on each node, node i's in engines_[i] and buckets_[i].
  void OpenOnEveryNode() {
    for (int i = 0; i < 3; ++i) {
      buckets_[i] = OpenOn(i, dirs_[i], &engines_[i]);
      ASSERT_TRUE(buckets_[i]) << "engine " << i;
    }
  }

  // An engine on node `node` only.
  std::shared_ptr<Bucket> OpenOn(int node, TempDir& dir, std::unique_ptr<Engine>* engine) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {cluster_.node(node).url()};
    o.nats.write_timeout = 2s;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok()) return nullptr;
    *engine = std::move(*e);
    auto b = (*engine)->OpenBucket(kBucket);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  TempDir dirs_[3];
  std::unique_ptr<Engine> engines_[3];
  std::shared_ptr<Bucket> buckets_[3];
};

class replicated_mixed : public replicated_upgrade {
 protected:
  replicated_mixed()
      : replicated_upgrade({REVKV_NATS_SERVER_210, REVKV_NATS_SERVER_NEWEST,
                            REVKV_NATS_SERVER_NEWEST}) {}
};

// On a mixed cluster each engine reads the version of the node it is on,
// and keeps writing. CAS is not asserted here: with plain nats.c clients
// (kvStore_Update from one client per node, racing on one revision) such a
// 2.10 + 2.15 cluster stored losers' writes it had answered with "wrong last
// sequence", and served reads whose revision went backwards, in about half
// of the runs; a cluster of one version never did (replicated_cluster_test).
TEST_F(replicated_mixed, EachEngineReadsTheVersionOfItsOwnNodeAndWrites) {
  ASSERT_GE(CreateBucket(kBucket), 0);
  ASSERT_NO_FATAL_FAILURE(OpenOnEveryNode());
  auto& buckets = buckets_;
  EXPECT_EQ(buckets[0]->GetStatus().server_version, VersionOf(REVKV_NATS_SERVER_210));
  for (int i = 1; i < 3; ++i) {
    const std::string v = buckets[i]->GetStatus().server_version;
    EXPECT_NE(NatsServer::Version(REVKV_NATS_SERVER_NEWEST).find("v" + v), std::string::npos)
        << "engine " << i << " reports " << v;
  }
  // The R3 bucket's CAS is allowed on both versions (2.9.21+).
  for (int i = 0; i < 3; ++i) {
    const std::string key = "from." + std::to_string(i);
    auto created = buckets[i]->Create(key, "v" + std::to_string(i));
    ASSERT_TRUE(created.ok()) << "engine " << i << ": " << created.status().ToString();
    auto read = buckets[i]->GetEntry(key);  // read-your-writes
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(read->revision, *created);
    EXPECT_EQ(read->value, "v" + std::to_string(i));
  }
}

// A cluster of 2.10 nodes is upgraded node by node to the newest server:
// after each node, every engine writes again (a Put it reads back), and at
// the end every engine reads the new version, from the server its
// connection has moved to. Only Puts: CAS is not to be counted on while the
// cluster mixes the two versions (see replicated_mixed above; under CAS load
// during this upgrade, plain nats.c clients also saw two winners on one
// revision).
TEST_F(replicated_upgrade, RollingUpgradeFrom2_10KeepsWritingAndEachEngineSeesTheNewVersion) {
  ASSERT_GE(CreateBucket(kBucket), 0);
  const std::string old = VersionOf(REVKV_NATS_SERVER_210);
  ASSERT_NO_FATAL_FAILURE(OpenOnEveryNode());
  auto& buckets = buckets_;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(buckets[i]->GetStatus().server_version, old) << "engine " << i;
  }
  const std::string newest = REVKV_NATS_SERVER_NEWEST;
  for (int step = 0; step < 3; ++step) {
    cluster_.node(step).Stop();
    cluster_.node(step).SetBinary(newest);
    ASSERT_TRUE(cluster_.node(step).Start()) << cluster_.node(step).error();
    for (int i = 0; i < 3; ++i) {
      const std::string key = "step" + std::to_string(step) + ".engine" + std::to_string(i);
      const auto deadline = Clock::now() + 30s;
      Result<uint64_t> put = Status::Unavailable("not tried");
      while (Clock::now() < deadline) {
        put = buckets[i]->Put(key, "v");
        if (put.ok() || !(put.status().IsUnavailable() || put.status().IsTimeout())) break;
        std::this_thread::sleep_for(200ms);
      }
      ASSERT_TRUE(put.ok()) << "engine " << i << " after node " << step
                            << " was upgraded: " << put.status().ToString();
      // An acknowledged write is returned even when the replica applies it
      // late (its consumer may be moving to another node): it shows up.
      auto read = buckets[i]->GetEntry(key);
      while (!read.ok() && Clock::now() < deadline + 10s) {
        std::this_thread::sleep_for(50ms);
        read = buckets[i]->GetEntry(key);
      }
      ASSERT_TRUE(read.ok()) << read.status().ToString();
      EXPECT_EQ(read->revision, *put);
    }
  }
  // Every node now runs the newest server, and every connection has moved
  // to one since (its node restarted under it).
  const auto deadline = Clock::now() + 30s;
  for (int i = 0; i < 3; ++i) {
    std::string version;
    while (Clock::now() < deadline) {
      version = buckets[i]->GetStatus().server_version;
      if (!version.empty() && version != old) break;
      std::this_thread::sleep_for(100ms);
    }
    EXPECT_NE(NatsServer::Version(newest).find("v" + version), std::string::npos)
        << "engine " << i << " reports " << version << " after the upgrade";
  }
  // CAS is allowed again on one version.
  auto created = buckets[0]->Create("after", "v");
  EXPECT_TRUE(created.ok()) << created.status().ToString();
}

}  // namespace
}  // namespace revkv

