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
#include "revkv/validation.h"
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
  EXPECT_TRUE(
      bucket_->ApplyCommitted({Make("b", 6, "x"), Make("b", 5, "y")}, 6).IsInvalidArgument());
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  EXPECT_TRUE(bucket_->Get("b").status().IsNotFound());
}

// Another client's keys need not follow revkv's write rules: any key a NATS
// subject can hold is applied and readable.
TEST_F(ApplyTest, KeysBeyondTheWriteRulesAreAppliedAndReadable) {
  Open();
  const std::vector<std::string> keys = {"long." + std::string(1995, 'k'),
                                         "caf\xc3\xa9.\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
                                         "star.*",
                                         "gt.>",
                                         "ctl\x01x",
                                         "q\"uote"};
  std::vector<Entry> entries;
  for (size_t i = 0; i < keys.size(); ++i) entries.push_back(Make(keys[i], i + 1, "v" + keys[i]));
  std::vector<engine::LocalBucket::SkippedMessage> skipped;
  ASSERT_TRUE(bucket_->ApplyCommitted(entries, keys.size(), {}, &skipped).ok());
  EXPECT_TRUE(skipped.empty());
  for (const std::string& key : keys) {
    auto e = bucket_->GetEntry(key);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->key, key);
    EXPECT_EQ(e->value, "v" + key);
    ASSERT_TRUE(bucket_->History(key).ok());
    EXPECT_TRUE(ValidateKey(key).IsInvalidArgument()) << "revkv itself could write it";
    EXPECT_TRUE(bucket_->Put(key, "mine").status().IsInvalidArgument());
  }
  EXPECT_EQ(bucket_->Keys(">")->size(), keys.size());
  EXPECT_EQ(*bucket_->Keys("caf\xc3\xa9.*"), std::vector<std::string>{keys[1]});
  EXPECT_EQ(bucket_->GetStatus().skipped, 0u);
}

// What can never be applied (a key the store cannot hold, a message the
// caller could not read) is skipped: counted in the same batch, with the
// first one named, and the applied revision moves past it. Redeliveries are
// not counted again, the count survives a reopen, and a reset clears it.
TEST_F(ApplyTest, UnapplicableMessagesAreSkippedAndCounted) {
  Open();
  std::vector<engine::LocalBucket::SkippedMessage> skipped;
  const std::vector<Entry> entries = {Make("ok", 1, "1"), Make(std::string("nul\0key", 7), 2, "x"),
                                      Make("bad..key", 3, "x"), Make("ok2", 5, "5")};
  ASSERT_TRUE(
      bucket_->ApplyCommitted(entries, 5, {{4, "its headers cannot be parsed"}}, &skipped).ok());
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_EQ(skipped[0].revision, 2u);
  EXPECT_EQ(skipped[1].revision, 3u);
  EXPECT_EQ(skipped[2].revision, 4u);
  EXPECT_NE(skipped[0].reason.find("its key cannot be stored"), std::string::npos)
      << skipped[0].reason;
  EXPECT_EQ(bucket_->LastRevision(), 5u);
  EXPECT_EQ(*bucket_->Get("ok2"), "5");
  EXPECT_TRUE(bucket_->Get("nul").status().IsNotFound());
  auto changes = bucket_->ChangesSince(0, 10);
  ASSERT_TRUE(changes.ok());
  EXPECT_EQ(changes->size(), 2u) << "only what was applied is in the revision log";

  BucketStatus st = bucket_->GetStatus();
  EXPECT_EQ(st.skipped, 3u);
  EXPECT_EQ(st.first_skipped, 2u);
  EXPECT_EQ(st.skipped_reason, skipped[0].reason);

  // Redelivered: nothing new.
  skipped.clear();
  ASSERT_TRUE(bucket_->ApplyCommitted(entries, 5, {{4, "again"}}, &skipped).ok());
  EXPECT_TRUE(skipped.empty());
  EXPECT_EQ(bucket_->GetStatus().skipped, 3u);

  Open();
  st = bucket_->GetStatus();
  EXPECT_EQ(st.skipped, 3u);
  EXPECT_EQ(st.first_skipped, 2u);
  ASSERT_TRUE(bucket_->ApplyCommitted({}, 7, {{7, "later"}}, &skipped).ok());
  st = bucket_->GetStatus();
  EXPECT_EQ(st.skipped, 4u);
  EXPECT_EQ(st.first_skipped, 2u);
  EXPECT_EQ(bucket_->LastRevision(), 7u);

  ASSERT_TRUE(bucket_->ResetReplica(42).ok());
  st = bucket_->GetStatus();
  EXPECT_EQ(st.skipped, 0u);
  EXPECT_EQ(st.first_skipped, 0u);
  EXPECT_EQ(st.skipped_reason, "");
}

// A failure of the store is not a reason to skip: ApplyCommitted reports it
// and neither applies nor counts anything, so a retry loses nothing.
TEST_F(ApplyTest, StoreFailureIsAnErrorNotASkip) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 1, "x")}, 1).ok());
  // Writes to a dropped column family fail, as writes to a full disk do.
  ASSERT_TRUE(bucket_->db()->DropColumnFamily(bucket_->TEST_family()).ok());
  std::vector<engine::LocalBucket::SkippedMessage> skipped;
  Status s = bucket_->ApplyCommitted({Make("b", 2, "y"), Make("bad..key", 3, "z")}, 3,
                                     {{4, "damaged"}}, &skipped);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(skipped.empty());
  EXPECT_EQ(bucket_->LastRevision(), 1u);
  EXPECT_EQ(bucket_->GetStatus().skipped, 0u);
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

// A replica's own writes, applied ahead of the stream's consumer with a
// provisional time (ReplicaSink::ApplyOwnWrites).
Entry Provisional(Entry e) {
  e.created_ns += 5'000'000;  // a time the server did not give
  return e;
}

TEST_F(ApplyTest, OwnWritesMustFollowTheAppliedRevision) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 3, "x")}, 3).ok());
  // A gap would pass what the stream holds between: refused, nothing applied.
  Status s = bucket_->ApplyOwnWrites({Make("b", 5, "y")});
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  s = bucket_->ApplyOwnWrites({Make("b", 4, "y"), Make("c", 6, "z")});
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  EXPECT_TRUE(bucket_->Get("b").status().IsNotFound());
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Make("b", 4, "y"), Make("c", 5, "z")}).ok());
  EXPECT_EQ(bucket_->LastRevision(), 5u);
  auto c = bucket_->GetEntry("c");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->revision, 5u);
  EXPECT_EQ(c->value, "z");
}

TEST_F(ApplyTest, TheConsumersDeliveryCorrectsAnOwnWritesTimeWithoutASecondEvent) {
  Open(/*history=*/5);
  auto w = bucket_->Watch(">", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Provisional(Make("k", 1, "a"))}).ok());
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Provisional(Make("k", 2, "b")),
                                       Provisional(Make("j", 3, "c"))})
                  .ok());
  auto k = bucket_->GetEntry("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->created_ns, Provisional(Make("k", 2)).created_ns);
  // The consumer delivers them (and a foreign write after them).
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 1, "a"), Make("k", 2, "b"), Make("j", 3, "c"),
                                       Make("x", 4, "d")},
                                      4)
                  .ok());
  EXPECT_EQ(bucket_->LastRevision(), 4u);
  k = bucket_->GetEntry("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->created_ns, Make("k", 2).created_ns);
  auto j = bucket_->GetEntry("j");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->created_ns, Make("j", 3).created_ns);
  // The earlier revision, now history, is corrected too.
  auto history = bucket_->History("k");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].revision, 1u);
  EXPECT_EQ((*history)[0].created_ns, Make("k", 1).created_ns);
  EXPECT_EQ((*history)[0].value, "a");
  EXPECT_EQ((*history)[1].created_ns, Make("k", 2).created_ns);
  // One event per revision: the correction is not a change.
  std::vector<uint64_t> seen;
  for (int i = 0; i < 4; ++i) {
    auto e = (*w)->Next(2s);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    seen.push_back(e->revision);
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE((*w)->Next(50ms).status().IsTimeout());
  // A redelivery after the correction is skipped as any other.
  Entry again = Provisional(Make("j", 3, "c"));
  ASSERT_TRUE(bucket_->ApplyCommitted({again}, 4).ok());
  j = bucket_->GetEntry("j");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->created_ns, Make("j", 3).created_ns);
}

TEST_F(ApplyTest, AnOwnWriteTheConsumerPassesKeepsItsProvisionalTime) {
  Open();
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Provisional(Make("k", 1, "a"))}).ok());
  // The consumer moved past revision 1 without it (the server removed it):
  // a later delivery of the same revision is a redelivery, not a correction.
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("y", 2, "b")}, 2).ok());
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 1, "a")}, 2).ok());
  auto k = bucket_->GetEntry("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->created_ns, Provisional(Make("k", 1)).created_ns);
}

TEST_F(ApplyTest, OwnWritesWaitingForTheirDeliveryAreCorrectedAfterARestart) {
  Open();
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("a", 1, "x")}, 1).ok());
  EXPECT_EQ(bucket_->ResumeRevision(), 1u);
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Provisional(Make("b", 2, "y")),
                                       Provisional(Make("c", 3, "z"))})
                  .ok());
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  // The consumer resumes where it was, so that 2 and 3 come again.
  EXPECT_EQ(bucket_->ResumeRevision(), 1u);
  Open();  // a restart
  EXPECT_EQ(bucket_->LastRevision(), 3u);
  EXPECT_EQ(bucket_->ResumeRevision(), 1u);
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("b", 2, "y")}, 2).ok());
  EXPECT_EQ(bucket_->ResumeRevision(), 2u);
  Open();
  EXPECT_EQ(bucket_->ResumeRevision(), 2u);
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("c", 3, "z"), Make("d", 4, "w")}, 4).ok());
  EXPECT_EQ(bucket_->ResumeRevision(), 4u);
  for (const char* key : {"b", "c"}) {
    auto e = bucket_->GetEntry(key);
    ASSERT_TRUE(e.ok()) << key;
    EXPECT_EQ(e->created_ns, Make(key, e->revision).created_ns) << key;
  }
  Open();  // nothing waits any more
  EXPECT_EQ(bucket_->ResumeRevision(), 4u);
  EXPECT_EQ(bucket_->LastRevision(), 4u);
}

TEST_F(ApplyTest, ACorrectionLandsBeforeALaterWriteOfTheSameKeyInOneBatch) {
  Open();
  ASSERT_TRUE(bucket_->ApplyOwnWrites({Provisional(Make("k", 1, "a"))}).ok());
  // Revision 1's delivery and a newer foreign write of k in one batch: the
  // newer one wins, whatever the correction wrote.
  ASSERT_TRUE(bucket_->ApplyCommitted({Make("k", 1, "a"), Make("k", 2, "b")}, 2).ok());
  auto k = bucket_->GetEntry("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->revision, 2u);
  EXPECT_EQ(k->value, "b");
  EXPECT_EQ(k->created_ns, Make("k", 2).created_ns);
  EXPECT_TRUE(bucket_->Update("k", "c", 2).ok());
}

}  // namespace
}  // namespace revkv
