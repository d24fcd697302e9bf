// Binding a replicated bucket to its JetStream stream, against a real
// nats-server: the standard KV layout when created, interop with nats.c's own
// KV API in both directions, and mismatches listed.

#include "replication/kv_stream.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <string>

#include "replication/nats_status.h"
#include "tests/nats_server.h"

namespace revkv::replication {
namespace {

using revkv::testing::NatsServer;

class KvStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    ASSERT_EQ(revkv::testing::ConnectClient(server_.url(), &nc_, &js_), NATS_OK);
  }
  void TearDown() override {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  jsStreamConfig* Config(const std::string& stream) {
    jsStreamInfo_Destroy(info_);
    info_ = nullptr;
    EXPECT_EQ(js_GetStreamInfo(&info_, js_, stream.c_str(), nullptr, nullptr), NATS_OK);
    return info_ != nullptr ? info_->Config : nullptr;
  }
  ~KvStreamTest() override { jsStreamInfo_Destroy(info_); }

  NatsServer server_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  jsStreamInfo* info_ = nullptr;
};

TEST_F(KvStreamTest, CreatesTheStandardKvLayout) {
  KvStreamRequest req;
  req.bucket = "jobs";
  req.history = 5;
  auto bound = BindKvStream(js_, req);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->name, "KV_jobs");
  EXPECT_EQ(bound->history, 5);
  EXPECT_GT(bound->created_ns, 0);
  jsStreamConfig* c = Config("KV_jobs");
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->SubjectsLen, 1);
  EXPECT_STREQ(c->Subjects[0], "$KV.jobs.>");
  EXPECT_EQ(c->MaxMsgsPerSubject, 5);
  EXPECT_EQ(c->Discard, js_DiscardNew);
  EXPECT_TRUE(c->AllowRollup);
  EXPECT_TRUE(c->DenyDelete);
  EXPECT_TRUE(c->AllowDirect);
  EXPECT_EQ(c->Storage, js_FileStorage);
  EXPECT_EQ(c->Replicas, 1);

  // nats.c's own KV API accepts it as a bucket.
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, js_, "jobs"), NATS_OK);
  uint64_t rev = 0;
  EXPECT_EQ(kvStore_PutString(&rev, kv, "job.1", "queued"), NATS_OK);
  EXPECT_EQ(rev, 1u);
  kvStore_Destroy(kv);
  auto again = ReadKvStream(js_, "jobs");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->last_sequence, 1u);
  EXPECT_EQ(again->created_ns, bound->created_ns);
}

TEST_F(KvStreamTest, BindsToABucketMadeByNatsCAndListsMismatches) {
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = "made";
  cfg.History = 3;
  kvStore* kv = nullptr;
  ASSERT_EQ(js_CreateKeyValue(&kv, js_, &cfg), NATS_OK);
  kvStore_Destroy(kv);

  KvStreamRequest unset;
  unset.bucket = "made";
  auto bound = BindKvStream(js_, unset);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  EXPECT_EQ(bound->history, 3);

  KvStreamRequest asked;
  asked.bucket = "made";
  asked.history = 7;
  asked.memory_storage = true;
  auto bad = BindKvStream(js_, asked);
  ASSERT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
  const std::string msg(bad.status().message());
  EXPECT_NE(msg.find("history 3 (asked 7)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("storage file (asked memory)"), std::string::npos) << msg;
}

TEST_F(KvStreamTest, RecreatedBucketHasANewIdentity) {
  KvStreamRequest req;
  req.bucket = "again";
  auto first = BindKvStream(js_, req);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(js_DeleteKeyValue(js_, "again"), NATS_OK);
  EXPECT_TRUE(ReadKvStream(js_, "again").status().IsNotFound());
  auto second = BindKvStream(js_, req);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->created_ns, first->created_ns);
}

TEST_F(KvStreamTest, RejectsBadRequestsAndNonKvStreams) {
  KvStreamRequest bad;
  bad.bucket = "a.b";
  EXPECT_TRUE(BindKvStream(js_, bad).status().IsInvalidArgument());
  bad.bucket = "ok";
  bad.history = 65;
  EXPECT_TRUE(BindKvStream(js_, bad).status().IsInvalidArgument());

  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = "KV_plain";
  const char* subjects[] = {"plain.>"};
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_AddStream(&si, js_, &sc, nullptr, nullptr), NATS_OK);
  jsStreamInfo_Destroy(si);
  KvStreamRequest plain;
  plain.bucket = "plain";
  auto r = BindKvStream(js_, plain);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
}

TEST(nats_status, WrongLastSequenceIsConflictAndNoServerIsUnavailable) {
  EXPECT_TRUE(FromNats(NATS_ERR, "publishing", JSStreamWrongLastSequenceErr).IsConflict());
  EXPECT_TRUE(FromNats(NATS_NO_SERVER, "connecting").IsUnavailable());
  EXPECT_TRUE(FromNats(NATS_TIMEOUT, "publishing").IsTimeout());
  EXPECT_TRUE(FromNats(NATS_CONNECTION_AUTH_FAILED, "connecting").IsPermissionDenied());
  EXPECT_TRUE(FromNats(NATS_OK, "x").ok());
}

}  // namespace
}  // namespace revkv::replication
