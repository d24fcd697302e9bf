// When a catch-up across a gap may be applied (replication/gap_hold.h).
// The real-server path is covered by replicated_bank (the snapshot reader
// on an R3 cluster) and apply_loop_test.

#include "replication/gap_hold.h"

#include <gtest/gtest.h>

namespace revkv::replication {
namespace {

TEST(GapHoldTest, ConsecutiveMessagesNeverHoldOrAskForABound) {
  GapHold g(10);
  for (uint64_t seq = 11; seq <= 20; ++seq) {
    EXPECT_FALSE(g.NeedsBound(seq)) << seq;
    g.Seen(seq, 20 - seq, std::nullopt);
    EXPECT_FALSE(g.holding()) << seq;
  }
}

// The failing run of replicated_bank on nats-server 2.15.1 (R3): the
// consumer delivered 5462, then 5465 (5463-5464 removed by newer writes of
// their keys), ... and 5477 with pending 0, although 5478, the newer write
// of a removed account, was stored already. Applying at 5477 showed half a
// transfer. Held until the stream's last sequence (5481), it does not.
TEST(GapHoldTest, PendingZeroDoesNotEndAHoldBeforeTheBound) {
  GapHold g(5462);
  ASSERT_TRUE(g.NeedsBound(5465));
  g.Seen(5465, 7, 5481);
  EXPECT_TRUE(g.holding());
  for (uint64_t seq : {5469, 5470, 5473, 5474, 5475, 5476}) {
    EXPECT_FALSE(g.NeedsBound(seq)) << "a later gap before the bound waits for it: " << seq;
    g.Seen(seq, 3, std::nullopt);
    EXPECT_TRUE(g.holding()) << seq;
  }
  g.Seen(5477, 0, std::nullopt);
  EXPECT_TRUE(g.holding()) << "pending 0 below the bound";
  g.Seen(5478, 0, std::nullopt);
  g.Seen(5479, 2, std::nullopt);
  g.Seen(5480, 1, std::nullopt);
  EXPECT_TRUE(g.holding());
  // The later gaps (5466-5468, 5471-5472) came after the bound was read:
  // reaching it asks for a fresh one.
  ASSERT_TRUE(g.NeedsBound(5481));
  g.Seen(5481, 0, 5481);
  EXPECT_FALSE(g.holding());
}

TEST(GapHoldTest, AGapAtTheStreamsLastMessageDoesNotHold) {
  GapHold g(7);
  ASSERT_TRUE(g.NeedsBound(9));
  g.Seen(9, 0, 9);
  EXPECT_FALSE(g.holding());
  EXPECT_FALSE(g.NeedsBound(10));
}

TEST(GapHoldTest, WithoutLaterGapsTheBoundEndsTheHold) {
  GapHold g(0);  // a new replica: the consumer starts at each key's last message
  ASSERT_TRUE(g.NeedsBound(3));
  g.Seen(3, 5, 12);
  for (uint64_t seq = 4; seq < 12; ++seq) {
    g.Seen(seq, 12 - seq, std::nullopt);
    EXPECT_TRUE(g.holding()) << seq;
  }
  EXPECT_FALSE(g.NeedsBound(12));
  g.Seen(12, 0, std::nullopt);
  EXPECT_FALSE(g.holding());
}

TEST(GapHoldTest, AFreshBoundPastTheMessageKeepsHolding) {
  GapHold g(100);
  g.Seen(105, 1, 110);
  g.Seen(108, 1, std::nullopt);  // a gap below the bound
  g.Seen(109, 1, std::nullopt);
  ASSERT_TRUE(g.NeedsBound(110));
  g.Seen(110, 0, 120);  // more was written since
  EXPECT_TRUE(g.holding());
  ASSERT_FALSE(g.NeedsBound(111));
  g.Seen(111, 0, std::nullopt);
  EXPECT_TRUE(g.holding());
  ASSERT_TRUE(g.NeedsBound(125)) << "a gap past the bound";
  g.Seen(125, 0, 125);
  EXPECT_FALSE(g.holding());
}

TEST(GapHoldTest, AnUnreadableBoundFallsBackToThePendingCount) {
  GapHold g(1);
  ASSERT_TRUE(g.NeedsBound(4));
  g.Seen(4, 2, std::nullopt);
  EXPECT_TRUE(g.holding());
  EXPECT_FALSE(g.NeedsBound(6)) << "no new read while the count decides";
  g.Seen(6, 1, std::nullopt);
  EXPECT_TRUE(g.holding());
  g.Seen(7, 0, std::nullopt);
  EXPECT_FALSE(g.holding());

  GapHold idle(1);
  idle.Seen(4, 0, std::nullopt);  // at the tip, as far as the consumer counts
  EXPECT_FALSE(idle.holding());
}

TEST(GapHoldTest, ReleaseEndsAHoldAndRedeliveriesChangeNothing) {
  GapHold g(10);
  g.Seen(15, 4, 30);
  ASSERT_TRUE(g.holding());
  g.Seen(12, 4, std::nullopt);  // below what was seen: a redelivery
  EXPECT_TRUE(g.holding());
  EXPECT_FALSE(g.NeedsBound(15));
  g.Release();
  EXPECT_FALSE(g.holding());
  EXPECT_FALSE(g.NeedsBound(16));
  EXPECT_TRUE(g.NeedsBound(18));
}

}  // namespace
}  // namespace revkv::replication
