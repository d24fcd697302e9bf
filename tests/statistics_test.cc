// Engine::GetStatistics: each counter counts what happened, by operation
// and outcome, with a latency sample per call; locally and replicated.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

const OperationStatistics& Op(const Statistics& s, const std::string& name) {
  static const OperationStatistics kNone;
  auto it = s.operations.find(name);
  return it == s.operations.end() ? kNone : it->second;
}

TEST(StatisticsTest, WritesAreCountedByOperationAndOutcome) {
  TempDir dir;
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto b = (*e)->OpenBucket("s");
  ASSERT_TRUE(b.ok());
  Bucket& bucket = **b;
  EXPECT_TRUE((*e)->GetStatistics().operations.empty());

  auto r1 = bucket.Put("k", "1");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(bucket.Put("k", "2").ok());
  EXPECT_TRUE(bucket.Update("k", "3", *r1).status().IsConflict());  // stale
  EXPECT_TRUE(bucket.Create("k", "4").status().IsExists());
  EXPECT_TRUE(bucket.Put("", "x").status().IsInvalidArgument());
  ASSERT_TRUE(bucket.Delete("k").ok());

  const Statistics s = (*e)->GetStatistics();
  const OperationStatistics& put = Op(s, "put");
  EXPECT_EQ(put.calls, 3u);
  EXPECT_EQ(put.ok, 2u);
  EXPECT_EQ(put.errors, 1u);
  EXPECT_EQ(put.conflicts, 0u);
  EXPECT_EQ(put.latency.count, 3u);
  EXPECT_GT(put.latency.sum_us, 0);
  EXPECT_EQ(put.latency.counts.size(), put.latency.bounds_us.size() + 1);
  EXPECT_EQ(Op(s, "update").conflicts, 1u);
  EXPECT_EQ(Op(s, "create").conflicts, 1u);
  EXPECT_EQ(Op(s, "delete").ok, 1u);
  EXPECT_EQ(s.operations.count("purge"), 0u);  // never called: absent
  EXPECT_EQ(s.apply_batches, 0u);               // local only
  EXPECT_EQ(s.reconnects, 0u);
}

TEST(StatisticsTest, UpdateWithRetryCountsItsRetries) {
  TempDir dir;
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok());
  auto b = (*e)->OpenBucket("s");
  ASSERT_TRUE(b.ok());
  Bucket& bucket = **b;
  ASSERT_TRUE(bucket.Put("n", "0").ok());
  int calls = 0;
  // The first attempt's CAS loses to a Put made meanwhile: one retry.
  auto out = bucket.UpdateWithRetry("n", [&](const std::optional<std::string>& cur) {
    if (++calls == 1) {
      EXPECT_TRUE(bucket.Put("n", "7").ok());
    }
    return std::optional<std::string>(*cur + "+");
  });
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->attempts, 2);
  const Statistics s = (*e)->GetStatistics();
  EXPECT_EQ(Op(s, "update_with_retry").calls, 1u);
  EXPECT_EQ(Op(s, "update_with_retry").ok, 1u);
  EXPECT_EQ(s.update_retries, 1u);
}

TEST(StatisticsTest, LocksCountGrantsWaitsGiveUpsTakeoversAndLosses) {
  TempDir dir;
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok());
  Engine& engine = **e;

  auto first = engine.Acquire("a", 5s, 1s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(engine.TryAcquire("a", 5s).status().IsBusy());
  // A waiter that gets the lock once it is released.
  auto waiter = std::async(std::launch::async, [&] { return engine.Acquire("a", 5s, 5s); });
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE((*first)->Release().ok());
  auto second = waiter.get();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_TRUE((*second)->Release().ok());

  // A lease that runs out without renewal is taken over; its holder's
  // release then finds it lost.
  auto stale = engine.Acquire("b", 50ms, 1s, {.auto_renew = false});
  ASSERT_TRUE(stale.ok());
  std::this_thread::sleep_for(150ms);
  auto taker = engine.Acquire("b", 5s, 2s);
  ASSERT_TRUE(taker.ok()) << taker.status().ToString();
  EXPECT_TRUE((*stale)->Release().IsLockLost());

  const Statistics s = engine.GetStatistics();
  EXPECT_EQ(s.lock_acquires, 4u);  // first, second, stale, taker
  EXPECT_GE(s.lock_waits, 1u);     // second waited
  EXPECT_EQ(s.lock_timeouts, 1u);  // the TryAcquire
  EXPECT_EQ(s.lock_takeovers, 1u);
  EXPECT_EQ(s.lock_losses, 1u);
  EXPECT_EQ(s.lock_wait.count, 4u);
  EXPECT_GE(s.lock_wait.PercentileUs(1.0), 50e3);  // the waiter's 100 ms
}

TEST(HistogramTest, PercentileIsTheBoundOfItsBucket) {
  Histogram h;
  h.bounds_us = {10, 100, 1000};
  h.counts = {5, 4, 0, 1};
  h.count = 10;
  EXPECT_EQ(h.PercentileUs(0.5), 10);
  EXPECT_EQ(h.PercentileUs(0.9), 100);
  EXPECT_EQ(h.PercentileUs(1.0), 1000);  // above the last bound: the last bound
  EXPECT_EQ(Histogram{}.PercentileUs(0.5), 0);
}

class ReplicatedStatisticsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }
  NatsServer server_;
  TempDir dir_;
};

TEST_F(ReplicatedStatisticsTest, AppliesAsyncWritesAndReconnectsAreCounted) {
  Options o;
  o.path = dir_.path();
  o.nats.servers = {server_.url()};
  auto e = Engine::Open(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto b = (*e)->OpenBucket("s");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  Bucket& bucket = **b;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(bucket.Put("k" + std::to_string(i), "v").ok());
  std::vector<std::future<Result<uint64_t>>> pending;
  for (int i = 0; i < 30; ++i) pending.push_back(bucket.PutAsync("a" + std::to_string(i), "v"));
  for (auto& f : pending) ASSERT_TRUE(f.get().ok());
  EXPECT_TRUE(bucket.UpdateAsync("k5", "w", 1).get().status().IsConflict());  // k5 is at 6
  ASSERT_TRUE(bucket.Sync(5s).ok());

  Statistics s = (*e)->GetStatistics();
  EXPECT_EQ(Op(s, "put").calls, 20u);
  EXPECT_EQ(Op(s, "put_async").ok, 30u);
  EXPECT_EQ(Op(s, "update_async").conflicts, 1u);
  // Every write reached the replica: ahead of the consumer or through it.
  EXPECT_GT(s.apply_batches, 0u);
  EXPECT_GE(s.applied_messages + s.own_writes_applied, 50u);
  EXPECT_GT(s.apply_lag.count, 0u);
  EXPECT_EQ(s.skipped_messages, 0u);
  EXPECT_EQ(s.reconnects, 0u);

  ASSERT_TRUE(server_.Restart()) << server_.error();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((*e)->GetStatistics().reconnects == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ((*e)->GetStatistics().reconnects, 1u);
}

}  // namespace
}  // namespace revkv
