// The engine's "apply committed entries" interface, which the replication
// layer drives: entries keep their own revisions, redeliveries are skipped,
// gaps are normal, history and purge behave as for local writes, the applied
// revision survives a reopen, and watchers see what was applied.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/local_bucket.h"
#include "engine/local_engine.h"
#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

Entry Make(std::string key, uint64_t revision, std::string value = "",
           Operation op = Operation::kPut) {
  Entry e;
  e.key = std::move(key);
  e.value = std::move(value);
  e.revision = revision;
  e.created_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(revision);
  e.operation = op;
  return e;
}

class ApplyTest : public ::testing::Test {
 protected:
  void Open(int history = 1) {
    bucket_.reset();
    engine_.reset();
    auto e = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    auto b = engine_->OpenBucket("replica", {.history = history});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bucket_ = std::dynamic_pointer_cast<engine::LocalBucket>(*b);
    ASSERT_NE(bucket_, nullptr);
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<engine::LocalBucket> bucket_;
};

TEST_F(ApplyTest, EntriesKeepTheirRevisionsTimesAndOperations) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 3, "x"), Make("b", 7, "y"),
                                       Make("c", 9, "", Operation::kDelete)},
                                      9)
                  .ok());
  auto a = bucket_->GetEntry("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->revision, 3u);
  EXPECT_EQ(a->value, "x");
  EXPECT_EQ(a->created_ns, Make("a", 3).created_ns);
  auto c = bucket_->Get("c");
  EXPECT_TRUE(c.status().IsNotFound());
  EXPECT_EQ(c.status().revision(), 9u);
  EXPECT_EQ(bucket_->LastRevision(), 9u);
  auto changes = bucket_->ChangesSince(0, 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[1].revision, 7u);
}

TEST_F(ApplyTest, RedeliveriesAreSkippedAndOrderIsEnforced) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 1, "one"), Make("a", 2, "two")}, 2).ok());
  // A redelivery of 1..2 plus a new 3 applies only 3.
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 1, "stale"), Make("a", 2, "stale"),
                                       Make("a", 3, "three")},
                                      3)
                  .ok());
  EXPECT_EQ(*bucket_->Get("a"), "three");
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  EXPECT_TRUE(bucket_->ApplyCommitted({Make("b", 6, "x"), Make("b", 5, "y")}, 6)
                  .IsInvalidArgument());
  EXPECT_TRUE(bucket_->ApplyCommitted({Make("bad..key", 7, "x")}, 7).IsInvalidArgument());
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  EXPECT_TRUE(bucket_->Get("b").status().IsNotFound());
}

TEST_F(ApplyTest, AppliedRevisionCanPassTheLastEntryAndSurvivesReopen) {
  Open();
  // Revisions 2..10 were removed from the stream (history, purges): a gap.
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 1, "x")}, 10).ok());
  EXPECT_EQ(bucket_->LastRevision(), 10u);
  Open();
  EXPECT_EQ(bucket_->LastRevision(), 10u);
  EXPECT_EQ(*bucket_->Get("a"), "x");
  // A local write after an apply continues above the applied revision.
  auto r = bucket_->Put("b", "y");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 11u);
}

TEST_F(ApplyTest, HistoryAndPurgeWithinOneBatch) {
  Open(/*history=*/3);
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 1, "1"), Make("k", 2, "2"), Make("k", 4, "4"),
                                       Make("k", 5, "5"), Make("other", 6, "o")},
                                      6)
                  .ok());
  auto h = bucket_->History("k");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->size(), 3u);
  EXPECT_EQ((*h)[0].revision, 2u);
  EXPECT_EQ((*h)[0].value, "2");
  EXPECT_EQ((*h)[2].revision, 5u);
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 7, "", Operation::kPurge), Make("k", 8, "8")}, 8)
                  .ok());
  h = bucket_->History("k");
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].operation, Operation::kPurge);
  EXPECT_EQ((*h)[1].value, "8");
  auto changes = bucket_->ChangesSince(0, 100);
  ASSERT_TRUE(changes.ok());
  std::vector<uint64_t> revs;
  for (const auto& e : *changes) revs.push_back(e.revision);
  EXPECT_EQ(revs, (std::vector<uint64_t>{6, 7, 8}));
}

TEST_F(ApplyTest, WatchersSeeAppliedEntriesInOrder) {
  Open();
  auto w = bucket_->Watch(">", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 4, "x"), Make("b", 9, "y")}, 9).ok());
  auto first = (*w)->Next(2s);
  auto second = (*w)->Next(2s);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->revision, 4u);
  EXPECT_EQ(second->key, "b");
  EXPECT_EQ(second->revision, 9u);
  EXPECT_TRUE((*w)->Next(50ms).status().IsTimeout());
}

TEST_F(ApplyTest, CasAgainstAppliedRevisions) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 5, "v")}, 5).ok());
  EXPECT_TRUE(bucket_->Update("k", "w", 4).status().IsConflict());
  auto r = bucket_->Update("k", "w", 5);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 6u);
}

}  // namespace
}  // namespace revkv
