// Asynchronous (pipelined) writes on replicated buckets: many writes in
// flight on one connection, each with its own expectation headers and an
// exact outcome; read-your-writes when a future completes; the bound on
// writes in flight; every pending future completes when the engine goes;
// a timed-out Put retried with its idempotency key is stored once; local
// buckets complete at once.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

bool Ready(std::future<Result<uint64_t>>& f) { return f.wait_for(0s) == std::future_status::ready; }

class replicated_async : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }
  void TearDown() override {
    if (paused_) kill(server_.pid(), SIGCONT);
  }

  std::unique_ptr<Engine> OpenEngine(const TempDir& dir, std::chrono::milliseconds timeout = 5s,
                                     size_t in_flight = 1024) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.nats.write_timeout = timeout;
    o.nats.max_writes_in_flight = in_flight;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }
  std::shared_ptr<Bucket> OpenBucket(Engine& e) {
    auto b = e.OpenBucket("a");
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }
  void Pause() {
    ASSERT_EQ(kill(server_.pid(), SIGSTOP), 0);
    paused_ = true;
    // The signal lands asynchronously: wait until the kernel shows the
    // server stopped, so that nothing sent after this is answered.
    for (int i = 0; i < 200 && !Stopped(); ++i) std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(Stopped()) << "nats-server " << server_.pid() << " did not stop";
  }
  bool Stopped() {
    std::ifstream stat("/proc/" + std::to_string(server_.pid()) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'T';
  }
  void Resume() {
    ASSERT_EQ(kill(server_.pid(), SIGCONT), 0);
    paused_ = false;
  }

  NatsServer server_;
  TempDir dir_a_, dir_b_;
  bool paused_ = false;
};

TEST_F(replicated_async, PipelinedPutsAreStoredInOrderAndReadableWhenTheyComplete) {
  // A long write timeout: past it an acknowledged write completes even if
  // the replica has not applied it yet, which a loaded machine could reach.
  auto engine = OpenEngine(dir_a_, 60s);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  constexpr int kWrites = 3000;
  std::vector<std::future<Result<uint64_t>>> futures;
  for (int i = 0; i < kWrites; ++i) {
    futures.push_back(bucket->PutAsync("k." + std::to_string(i % 100), "v" + std::to_string(i)));
  }
  // Published in order on one connection: stored in that order.
  uint64_t previous = 0;
  for (int i = 0; i < kWrites; ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_GT(*r, previous) << i;
    previous = *r;
    // Read-your-writes: the replica has this revision, or a later one.
    auto e = bucket->GetEntry("k." + std::to_string(i % 100));
    ASSERT_TRUE(e.ok());
    EXPECT_GE(e->revision, *r) << i;
    if (i >= kWrites - 100) {
      EXPECT_EQ(e->value, "v" + std::to_string(i));
    }
  }
  EXPECT_EQ(bucket->LastRevision(), previous);
  // Another engine's replica holds exactly the last value of each key.
  auto other = OpenEngine(dir_b_);
  ASSERT_TRUE(other);
  auto b = OpenBucket(*other);
  ASSERT_TRUE(b && b->Sync(5s).ok());
  for (int k = 0; k < 100; ++k) {
    auto v = b->Get("k." + std::to_string(k));
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, "v" + std::to_string(kWrites - 100 + k));
  }
}

TEST_F(replicated_async, EachCompareAndSwapHasItsOwnExactOutcome) {
  auto engine = OpenEngine(dir_a_);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  auto first = bucket->Put("x", "0");
  ASSERT_TRUE(first.ok());
  // A chain of CAS writes in flight at once: the first expects the stored
  // revision; each later one expects the revision before it, which the
  // server stores only if the one before it landed: all succeed, in order.
  // Then one stale CAS, and Creates of a live and a new key.
  uint64_t expected = *first;
  auto ok1 = bucket->UpdateAsync("x", "1", expected);
  auto r1 = ok1.get();
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  std::vector<std::future<Result<uint64_t>>> chain;
  // Revisions are bucket-wide; with only this writer, each Update takes
  // the next one, so the expected revision of the n-th is r1 + n - 1.
  for (int n = 1; n <= 20; ++n) {
    chain.push_back(bucket->UpdateAsync("x", "c" + std::to_string(n), *r1 + n - 1));
  }
  auto stale = bucket->UpdateAsync("x", "stale", *first);
  auto live = bucket->CreateAsync("x", "again");
  auto fresh = bucket->CreateAsync("y", "new");
  auto wrong_delete = bucket->DeleteAsync("x", /*expected_revision=*/1);
  for (int n = 1; n <= 20; ++n) {
    auto r = chain[n - 1].get();
    ASSERT_TRUE(r.ok()) << n << ": " << r.status().ToString();
    EXPECT_EQ(*r, *r1 + n);
  }
  auto s = stale.get();
  ASSERT_TRUE(s.status().IsConflict()) << s.status().ToString();
  auto l = live.get();
  ASSERT_TRUE(l.status().IsExists()) << l.status().ToString();
  auto f = fresh.get();
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto d = wrong_delete.get();
  ASSERT_TRUE(d.status().IsConflict()) << d.status().ToString();
  auto x = bucket->GetEntry("x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->value, "c20");
  auto y = bucket->Get("y");
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(*y, "new");
  // A CAS the server refuses (the replica cannot tell yet: another engine
  // wrote) is a Conflict naming the server's revision.
  auto other = OpenEngine(dir_b_);
  ASSERT_TRUE(other);
  auto b = OpenBucket(*other);
  ASSERT_TRUE(b && b->Sync(5s).ok());
  auto theirs = b->Put("x", "theirs");
  ASSERT_TRUE(theirs.ok());
  auto late = bucket->UpdateAsync("x", "late", x->revision).get();
  if (late.status().IsConflict()) {
    EXPECT_EQ(late.status().revision(), *theirs);
  } else {
    ADD_FAILURE() << "expected Conflict, got " << late.status().ToString();
  }
  // Delete and Purge, pipelined, with and without an expected revision.
  auto del = bucket->DeleteAsync("y").get();
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  EXPECT_TRUE(bucket->Get("y").status().IsNotFound());
  auto purge = bucket->PurgeAsync("x", *theirs).get();
  ASSERT_TRUE(purge.ok()) << purge.status().ToString();
  auto h = bucket->History("x");
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 1u);
  EXPECT_EQ((*h)[0].operation, Operation::kPurge);
}

// Pipelined writes to one key of a history-1 bucket: the server keeps
// only the last message of the key, so the consumer's count of pending
// messages names messages removed before they are delivered. The replica
// must not wait for them (it once held such a catch-up for 5 s).
TEST_F(replicated_async, PipelinedWritesToOneKeyNeverStallTheReplica) {
  auto engine = OpenEngine(dir_a_, 30s);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  std::chrono::steady_clock::duration worst{0};
  for (int round = 0; round < 30; ++round) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::future<Result<uint64_t>>> futures;
    for (int i = 0; i < 30; ++i) futures.push_back(bucket->PutAsync("hot", std::to_string(i)));
    futures.push_back(bucket->PutAsync("other", std::to_string(round)));
    for (auto& f : futures) ASSERT_TRUE(f.get().ok());
    worst = std::max(worst, std::chrono::steady_clock::now() - start);
  }
  // A round is a few milliseconds; a held catch-up took 5 s.
  EXPECT_LT(worst, 2s) << "a round of 31 pipelined writes took "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count()
                       << " ms";
}

TEST_F(replicated_async, ABadArgumentIsReadyAtOnce) {
  auto engine = OpenEngine(dir_a_);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  auto bad = bucket->PutAsync("bad..key", "v");
  ASSERT_TRUE(Ready(bad));
  EXPECT_TRUE(bad.get().status().IsInvalidArgument());
  WriteOptions idem;
  idem.idempotency_key = "id-1";
  auto not_put = bucket->UpdateAsync("k", "v", 1, idem);
  ASSERT_TRUE(Ready(not_put));
  EXPECT_TRUE(not_put.get().status().IsInvalidArgument());
}

TEST_F(replicated_async, TheBoundOnWritesInFlightHoldsBackTheCaller) {
  auto engine = OpenEngine(dir_a_, 800ms, /*in_flight=*/4);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  ASSERT_TRUE(bucket->Put("warm", "up").ok());
  Pause();  // no acknowledgement comes back
  std::vector<std::future<Result<uint64_t>>> futures;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) futures.push_back(bucket->PutAsync("k" + std::to_string(i), "v"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 400ms) << "the first four wait for nothing";
  for (auto& f : futures) EXPECT_FALSE(Ready(f));
  // The fifth waits for a slot; none frees within its own (shorter)
  // timeout, while the four are still in flight.
  WriteOptions short_wait;
  short_wait.timeout = 300ms;
  auto fifth = bucket->PutAsync("k4", "v", short_wait);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 290ms);
  ASSERT_TRUE(Ready(fifth));
  for (auto& f : futures) EXPECT_FALSE(Ready(f));
  auto r = fifth.get();
  EXPECT_TRUE(r.status().IsTimeout()) << r.status().ToString();
  // The four in flight end unknown: Timeout.
  for (auto& f : futures) {
    auto w = f.get();
    EXPECT_TRUE(w.status().IsTimeout()) << w.status().ToString();
  }
  Resume();
  // The connection is still usable, and a slot is free again.
  auto after = bucket->PutAsync("k5", "v").get();
  EXPECT_TRUE(after.ok()) << after.status().ToString();
}

TEST_F(replicated_async, DestroyingTheEngineCompletesEveryPendingWrite) {
  auto engine = OpenEngine(dir_a_, 1500ms);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  ASSERT_TRUE(bucket->Put("warm", "up").ok());
  Pause();
  std::vector<std::future<Result<uint64_t>>> futures;
  for (int i = 0; i < 50; ++i) futures.push_back(bucket->PutAsync("k" + std::to_string(i), "v"));
  Txn txn;
  txn.ops.push_back(TxnOp::Put("t", "v"));
  auto txn_future = bucket->CommitAsync(txn);
  engine.reset();  // the bucket handle outlives the engine
  for (auto& f : futures) {
    ASSERT_TRUE(Ready(f)) << "a future still pending after the engine was destroyed";
    auto r = f.get();
    EXPECT_TRUE(r.status().IsTimeout() || r.status().IsUnavailable()) << r.status().ToString();
  }
  ASSERT_EQ(txn_future.wait_for(0s), std::future_status::ready);
  EXPECT_FALSE(txn_future.get().ok());
  // After that the bucket takes no more asynchronous writes.
  auto late = bucket->PutAsync("late", "v");
  ASSERT_TRUE(Ready(late));
  EXPECT_TRUE(late.get().status().IsUnavailable());
  Resume();
}

TEST_F(replicated_async, ATimedOutPutRetriedWithItsIdempotencyKeyIsStoredOnce) {
  auto engine = OpenEngine(dir_a_, 600ms);
  ASSERT_TRUE(engine);
  auto bucket = OpenBucket(*engine);
  ASSERT_TRUE(bucket);
  ASSERT_TRUE(bucket->Put("warm", "up").ok());
  const uint64_t before = bucket->LastRevision();
  WriteOptions o;
  o.idempotency_key = "order-42";
  Pause();
  auto first = bucket->PutAsync("order", "placed", o);
  std::this_thread::sleep_for(100ms);  // the message is in the server's socket buffer
  auto r = first.get();  // no ack while paused
  ASSERT_TRUE(r.status().IsTimeout()) << r.status().ToString();
  Resume();
  // Retried with the same key: stored at most once, whichever copy landed.
  auto again = bucket->PutAsync("order", "placed", o).get();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto third = bucket->PutAsync("order", "placed", o).get();
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, *again);
  ASSERT_TRUE(bucket->Sync(5s).ok());
  auto h = bucket->History("order");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->size(), 1u);
  EXPECT_EQ(bucket->LastRevision(), before + 1);
}

TEST(LocalAsync, FuturesAreReadyWhenTheCallReturns) {
  TempDir dir;
  Options o;
  o.path = dir.path();
  auto engine = Engine::Open(o);
  ASSERT_TRUE(engine.ok());
  auto bucket = (*engine)->OpenBucket("a");
  ASSERT_TRUE(bucket.ok());
  auto put = (*bucket)->PutAsync("k", "v");
  ASSERT_TRUE(Ready(put));
  auto rev = put.get();
  ASSERT_TRUE(rev.ok());
  auto conflict = (*bucket)->UpdateAsync("k", "w", *rev + 5);
  ASSERT_TRUE(Ready(conflict));
  EXPECT_TRUE(conflict.get().status().IsConflict());
  auto create = (*bucket)->CreateAsync("k", "w");
  ASSERT_TRUE(Ready(create));
  EXPECT_TRUE(create.get().status().IsExists());
  Txn txn;
  txn.ops = {TxnOp::Put("a", "1"), TxnOp::Put("b", "2")};
  auto commit = (*bucket)->CommitAsync(txn);
  ASSERT_EQ(commit.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(commit.get().ok());
  EXPECT_TRUE((*bucket)->DeleteAsync("a").get().ok());
  EXPECT_TRUE((*bucket)->PurgeAsync("b").get().ok());
}

}  // namespace
}  // namespace revkv
