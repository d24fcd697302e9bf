// Binding a replicated bucket to its JetStream stream, against a real
// nats-server: the standard KV layout when created, interop with nats.c's own
// KV API in both directions, and mismatches listed.

#include "replication/kv_stream.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <nlohmann/json.hpp>
#include <string>

#include "replication/jetstream_api.h"
#include "replication/nats_connection.h"
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

// The raw JetStream API module: a stream created with the settings nats.c
// 3.4.1 cannot send, read back, and updated without losing any field.
TEST_F(KvStreamTest, JetStreamApiCreatesReadsAndUpdatesKeepingEveryField) {
  if (!NatsServer::VersionAtLeast(2, 12)) GTEST_FAIL() << "runs on 2.12+ only";
  NatsOptions o;
  o.servers = {server_.url()};
  auto conn = NatsConnection::Connect(o);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  const NatsConnection& c = **conn;

  KvStreamSpec spec;
  spec.name = "KV_api";
  spec.subject = "$KV.api.>";
  spec.history = 4;
  spec.max_age = std::chrono::hours(1);
  spec.max_msg_size = 2048;
  spec.marker_ttl = std::chrono::seconds(3);
  ASSERT_TRUE(CreateKvStreamRaw(c, spec, "creating KV_api").ok());
  // The same again is no change; a different layout is Exists.
  EXPECT_TRUE(CreateKvStreamRaw(c, spec, "creating KV_api").ok());
  spec.history = 5;
  Status exists = CreateKvStreamRaw(c, spec, "creating KV_api");
  EXPECT_TRUE(exists.IsExists()) << exists.ToString();
  EXPECT_EQ(exists.message(), "creating KV_api: it exists");

  auto settings = ReadNewerStreamSettings(c, "KV_api", "reading KV_api");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_TRUE(settings->allow_msg_ttl);
  EXPECT_EQ(settings->subject_delete_marker_ttl, std::chrono::seconds(3));
  EXPECT_FALSE(settings->allow_atomic);

  auto before = ReadStreamInfoJson(c, "KV_api", "reading KV_api");
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  const auto before_config = nlohmann::json::parse(before->config);
  EXPECT_EQ(before_config.value("max_msgs_per_subject", 0), 4);
  EXPECT_EQ(nlohmann::json::parse(before->state).value("messages", -1), 0);

  std::string held;
  Status updated =
      UpdateStreamConfig(c, "KV_api", R"({"description":"orders","metadata":{"team":"billing"}})",
                         "describing KV_api", &held);
  ASSERT_TRUE(updated.ok()) << updated.ToString();
  EXPECT_EQ(nlohmann::json::parse(held).value("description", ""), "orders");
  ASSERT_TRUE(EnableAllowAtomic(c, "KV_api", "turning on batches").ok());

  auto after = ReadStreamInfoJson(c, "KV_api", "reading KV_api");
  ASSERT_TRUE(after.ok());
  auto after_config = nlohmann::json::parse(after->config);
  EXPECT_EQ(after_config.value("description", ""), "orders");
  EXPECT_EQ(after_config["metadata"].value("team", ""), "billing");
  EXPECT_TRUE(after_config.value("allow_atomic", false));
  // Everything else as it was (the server's own _nats.* metadata aside).
  auto comparable = [](nlohmann::json config) {
    config.erase("description");
    config.erase("allow_atomic");
    config.erase("metadata");
    return config;
  };
  EXPECT_EQ(comparable(after_config), comparable(before_config))
      << before->config << "\n" << after->config;
  auto settings_after = ReadNewerStreamSettings(c, "KV_api", "reading KV_api");
  ASSERT_TRUE(settings_after.ok());
  EXPECT_TRUE(settings_after->allow_msg_ttl);
  EXPECT_EQ(settings_after->subject_delete_marker_ttl, std::chrono::seconds(3));
  EXPECT_TRUE(settings_after->allow_atomic);

  // Errors: a refused change (storage is fixed), a missing stream, a change
  // that is not a JSON object.
  Status refused = UpdateStreamConfig(c, "KV_api", R"({"storage":"memory"})", "moving KV_api");
  EXPECT_TRUE(refused.IsInvalidArgument()) << refused.ToString();
  EXPECT_NE(refused.ToString().find("moving KV_api: the server said '"), std::string::npos)
      << refused.ToString();
  EXPECT_NE(refused.ToString().find("(error 10"), std::string::npos) << refused.ToString();
  auto missing = ReadStreamInfoJson(c, "KV_none", "reading KV_none");
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_TRUE(UpdateStreamConfig(c, "KV_none", "{}", "x").IsNotFound());
  EXPECT_TRUE(UpdateStreamConfig(c, "KV_api", "[1]", "x").IsInvalidArgument());
  EXPECT_TRUE(UpdateStreamConfig(c, "KV_api", "{", "x").IsInvalidArgument());
}

TEST(jetstream_api, ParsesPublishAcknowledgementsAndErrors) {
  auto ack = ParsePubAck(R"({"stream":"KV_a","seq":42,"batch":"b1","count":3})");
  ASSERT_TRUE(ack.has_value());
  EXPECT_FALSE(ack->is_error);
  EXPECT_EQ(ack->seq, 42u);
  EXPECT_EQ(ack->count, 3u);
  auto error = ParsePubAck(
      R"({"error":{"code":400,"err_code":10174,"description":"atomic publish is disabled"},)"
      R"("stream":"KV_a","seq":0})");
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(error->is_error);
  EXPECT_EQ(error->error_code, 10174);
  EXPECT_EQ(error->description, "atomic publish is disabled");
  // Wrong types are absent fields, never exceptions.
  auto odd = ParsePubAck(R"({"seq":"42","count":-1})");
  ASSERT_TRUE(odd.has_value());
  EXPECT_FALSE(odd->seq.has_value());
  EXPECT_FALSE(odd->count.has_value());
  EXPECT_FALSE(ParsePubAck("not json").has_value());
  EXPECT_FALSE(ParsePubAck("[1,2]").has_value());
  EXPECT_FALSE(ParsePubAck("").has_value());
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
