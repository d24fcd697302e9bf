// The one conversion of nats.c statuses and JetStream error codes into revkv
// Status codes, for the answers a cluster gives during elections and
// overload (nats-server's errors.json).

#include "replication/nats_status.h"

#include <gtest/gtest.h>

namespace revkv::replication {
namespace {

jsErrCode Code(int code) { return static_cast<jsErrCode>(code); }

TEST(nats_status, ConflictsWithAndWithoutARevision) {
  Status named = FromNats(NATS_ERR, "writing", JSStreamWrongLastSequenceErr);
  EXPECT_TRUE(named.IsConflict()) << named.ToString();
  EXPECT_TRUE(named.revision_known());
  Status in_flight = FromNats(NATS_ERR, "writing", Code(10164));
  EXPECT_TRUE(in_flight.IsConflict()) << in_flight.ToString();
  EXPECT_FALSE(in_flight.revision_known());
  EXPECT_EQ(in_flight.revision(), 0u);
}

TEST(nats_status, ElectionAndOverloadAnswersAreUnavailableOrBusy) {
  for (int code : {10008, 10009, 10118, 10194, 10023, 10163}) {
    Status s = FromNats(NATS_ERR, "asking", Code(code));
    EXPECT_TRUE(s.IsUnavailable()) << code << ": " << s.ToString();
  }
  Status busy = FromNats(NATS_ERR, "writing", Code(10167));
  EXPECT_TRUE(busy.IsBusy()) << busy.ToString();
  // No responders: nats.c labels it JSNotEnabledErr, which during an
  // election only means "no leader yet".
  Status none = FromNats(NATS_NO_RESPONDERS, "writing", JSNotEnabledErr);
  EXPECT_TRUE(none.IsUnavailable()) << none.ToString();
  EXPECT_NE(none.message().find("electing a leader"), std::string_view::npos) << none.ToString();
}

TEST(nats_status, OnlyAnswersThatStoredNothingAreResent) {
  EXPECT_TRUE(PublishNotStoredAndRetryable(NATS_NO_RESPONDERS, JSNotEnabledErr));
  EXPECT_TRUE(PublishNotStoredAndRetryable(NATS_ERR, Code(10167)));
  EXPECT_TRUE(PublishNotStoredAndRetryable(NATS_ERR, Code(10163)));
  // A timeout may hide a stored write; a conflict is the caller's to handle.
  EXPECT_FALSE(PublishNotStoredAndRetryable(NATS_TIMEOUT, Code(0)));
  EXPECT_FALSE(PublishNotStoredAndRetryable(NATS_ERR, JSStreamWrongLastSequenceErr));
  EXPECT_FALSE(PublishNotStoredAndRetryable(NATS_ERR, Code(10164)));
  EXPECT_FALSE(PublishNotStoredAndRetryable(NATS_ERR, Code(0)));
}

}  // namespace
}  // namespace revkv::replication
