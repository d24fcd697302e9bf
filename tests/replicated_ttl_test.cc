// Expiry on replicated buckets against a real nats-server: per-key TTL
// written by revkv (Nats-TTL) and by another client, limit markers applied
// as tombstones on every replica and in watches, max_age without markers
// enforced by the replica itself, and the refusals (no per-message TTL on the
// stream, a bucket's settings, servers before 2.11).

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::NatsServer;
using testing::TempDir;

bool ServerHasTtl() { return NatsServer::VersionAtLeast(2, 11); }

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

WriteOptions Ttl(std::chrono::seconds ttl) {
  WriteOptions o;
  o.ttl = ttl;
  return o;
}

class replicated_ttl : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    ASSERT_EQ(testing::ConnectClient(server_.url(), &nc_, &js_), NATS_OK);
  }
  void TearDown() override {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  std::unique_ptr<Engine> OpenEngine(TempDir& dir) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.nats.max_clock_skew = 200ms;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // A raw JetStream API request; returns the reply's JSON.
  std::string Api(const std::string& subject, const std::string& body) {
    natsMsg* reply = nullptr;
    EXPECT_EQ(natsConnection_RequestString(&reply, nc_, subject.c_str(), body.c_str(), 5000),
              NATS_OK);
    if (reply == nullptr) return "";
    std::string out(natsMsg_GetData(reply), static_cast<size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    return out;
  }

  // The bucket's stream with per-message TTL but no limit markers, as
  // another client may create it.
  void CreateTtlStreamWithoutMarkers(const std::string& bucket) {
    const std::string answer = Api(
        "$JS.API.STREAM.CREATE.KV_" + bucket,
        "{\"name\":\"KV_" + bucket + "\",\"subjects\":[\"$KV." + bucket +
            ".>\"],\"max_msgs_per_subject\":1,\"discard\":\"new\",\"allow_rollup_hdrs\":true,"
            "\"deny_delete\":true,\"allow_direct\":true,\"storage\":\"file\",\"num_replicas\":1,"
            "\"allow_msg_ttl\":true}");
    ASSERT_EQ(answer.find("\"error\""), std::string::npos) << answer;
  }

  // Publishes with raw nats.c, with a Nats-TTL header.
  uint64_t PublishWithTtl(const std::string& bucket, const std::string& key,
                          const std::string& value, const char* ttl) {
    natsMsg* msg = nullptr;
    const std::string subject = "$KV." + bucket + "." + key;
    EXPECT_EQ(natsMsg_Create(&msg, subject.c_str(), nullptr, value.data(),
                             static_cast<int>(value.size())),
              NATS_OK);
    EXPECT_EQ(natsMsgHeader_Set(msg, "Nats-TTL", ttl), NATS_OK);
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    EXPECT_EQ(js_PublishMsg(&ack, js_, msg, nullptr, &jerr), NATS_OK) << jerr;
    const uint64_t seq = ack != nullptr ? ack->Sequence : 0;
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(msg);
    return seq;
  }

  // The key's last message on the server: its sequence and Nats-TTL, or 0.
  uint64_t ServerLast(const std::string& bucket, const std::string& key, std::string* ttl) {
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = "KV_" + bucket, subject = "$KV." + bucket + "." + key;
    if (js_GetLastMsg(&msg, js_, stream.c_str(), subject.c_str(), nullptr, &jerr) != NATS_OK) {
      return 0;
    }
    const char* v = nullptr;
    if (ttl != nullptr) *ttl = natsMsgHeader_Get(msg, "Nats-TTL", &v) == NATS_OK ? v : "";
    const uint64_t seq = natsMsg_GetSequence(msg);
    natsMsg_Destroy(msg);
    return seq;
  }

  NatsServer server_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

TEST_F(replicated_ttl, KeyTtlWrittenByRevkvExpiresForNatsC) {
  TempDir dir;
  auto engine = OpenEngine(dir);
  ASSERT_TRUE(engine);
  auto b = engine->OpenBucket("ttl", {.limit_marker_ttl = 1s});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto rev = (*b)->Put("k", "v", Ttl(2s));
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  const auto written = Clock::now();
  std::string ttl;
  ASSERT_EQ(ServerLast("ttl", "k", &ttl), *rev);
  EXPECT_EQ(ttl, "2s");
  EXPECT_EQ(*(*b)->Get("k"), "v");

  // nats.c's own kvStore_Get finds nothing once the entry and then its
  // marker (1 s) are gone.
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, js_, "ttl"), NATS_OK);
  ASSERT_TRUE(WaitFor(
      [&] {
        kvEntry* e = nullptr;
        const natsStatus s = kvStore_Get(&e, kv, "k");
        kvEntry_Destroy(e);
        return s == NATS_NOT_FOUND;
      },
      10s))
      << "nats.c still reads the key";
  EXPECT_GE(Clock::now() - written, 1900ms) << "gone before its TTL";
  kvStore_Destroy(kv);
  EXPECT_TRUE((*b)->Get("k").status().IsNotFound());
}

TEST_F(replicated_ttl, ForeignWriteWithNatsTtlExpiresOnTheReplicaWithoutAMarker) {
  CreateTtlStreamWithoutMarkers("fttl");
  TempDir dir;
  auto engine = OpenEngine(dir);
  ASSERT_TRUE(engine);
  auto b = engine->OpenBucket("fttl");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const auto written = Clock::now();
  const uint64_t seq = PublishWithTtl("fttl", "k", "v", "2s");
  ASSERT_GT(seq, 0u);
  ASSERT_TRUE((*b)->Sync(5s).ok());
  auto entry = (*b)->GetEntry("k");
  ASSERT_TRUE(entry.ok()) << entry.status().ToString();
  EXPECT_EQ(entry->ttl_ns, 2'000'000'000);
  ASSERT_LT(Clock::now() - written, 1500ms) << "too slow to check before expiry";
  // No marker will come: the replica expires the entry on its own, 2 s
  // after the server's timestamp plus the 200 ms skew allowance.
  ASSERT_TRUE(WaitFor([&] { return (*b)->Get("k").status().IsNotFound(); }, 5s));
  EXPECT_GE(Clock::now() - written, 2s);
  EXPECT_TRUE((*b)->Keys()->empty());
  EXPECT_TRUE((*b)->History("k").status().IsNotFound());
  EXPECT_EQ(ServerLast("fttl", "k", nullptr), 0u) << "the server still holds it";
  // And a Create may write the key again, as on the server.
  EXPECT_TRUE((*b)->Create("k", "again").ok());
}

TEST_F(replicated_ttl, MaxAgeWithoutMarkersHidesTheEntryOnTime) {
  TempDir dir;
  auto engine = OpenEngine(dir);
  ASSERT_TRUE(engine);
  auto b = engine->OpenBucket("aged", {.max_age = 2s});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const auto written = Clock::now();
  ASSERT_TRUE((*b)->Put("k", "v").ok());
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(*(*b)->Get("k"), "v");
  auto watch = (*b)->Watch(">", {.start = WatchStart::kLatest});
  ASSERT_TRUE(watch.ok());
  auto first = (*watch)->Next(1s);
  ASSERT_TRUE(first.ok()) << "the live entry is in a new watch's initial state";
  ASSERT_TRUE(WaitFor([&] { return (*b)->Get("k").status().IsNotFound(); }, 5s));
  EXPECT_GE(Clock::now() - written, 2s);
  EXPECT_EQ((*b)->GetStatus().max_age, 2s);
  EXPECT_TRUE((*b)->Keys()->empty());
  EXPECT_TRUE((*b)->GetEntry("k").status().IsNotFound());
  auto late = (*b)->Watch(">", {.start = WatchStart::kLatest});
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE((*late)->Next(300ms).status().IsTimeout()) << "an expired entry in a watch";
}

TEST_F(replicated_ttl, MarkersBecomeTombstonesOnTwoReplicasAndInAWatch) {
  TempDir da, db;
  auto a = OpenEngine(da);
  auto c = OpenEngine(db);
  ASSERT_TRUE(a && c);
  auto ba = a->OpenBucket("mk", {.limit_marker_ttl = 5s});
  ASSERT_TRUE(ba.ok()) << ba.status().ToString();
  auto bc = c->OpenBucket("mk");
  ASSERT_TRUE(bc.ok()) << bc.status().ToString();
  auto watch = (*bc)->Watch(">", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(watch.ok());
  auto rev = (*ba)->Put("k", "v", Ttl(1s));
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  auto put = (*watch)->Next(5s);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->revision, *rev);
  auto marker = (*watch)->Next(10s);
  ASSERT_TRUE(marker.ok()) << marker.status().ToString();
  EXPECT_EQ(marker->key, "k");
  EXPECT_EQ(marker->operation, Operation::kPurge);
  EXPECT_GT(marker->revision, *rev);
  for (auto* b : {&*ba, &*bc}) {
    ASSERT_TRUE((*b)->Sync(5s).ok());
    auto got = (*b)->Get("k");
    EXPECT_TRUE(got.status().IsNotFound());
    EXPECT_EQ(got.status().revision(), marker->revision) << "the marker is the key's tombstone";
  }
  // Create over the marker is a CAS on it, and succeeds.
  auto created = (*bc)->Create("k", "new");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_GT(*created, marker->revision);
}

TEST_F(replicated_ttl, TtlTheBucketOrTheServerCannotTakeIsInvalidArgument) {
  TempDir dir;
  auto engine = OpenEngine(dir);
  ASSERT_TRUE(engine);
  auto plain = engine->OpenBucket("plain");
  ASSERT_TRUE(plain.ok());
  auto put = (*plain)->Put("k", "v", Ttl(5s));
  ASSERT_TRUE(put.status().IsInvalidArgument()) << put.status().ToString();
  auto marked = engine->OpenBucket("marked", {.limit_marker_ttl = 5s});
  auto rebind = engine->OpenBucket("plain2", {});
  ASSERT_TRUE(rebind.ok());
  if (!ServerHasTtl()) {
    const std::string version = NatsServer::Version().substr(NatsServer::Version().find(" v") + 2);
    for (const Status& s : {put.status(), marked.status()}) {
      EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
      EXPECT_NE(s.ToString().find("2.11.0"), std::string::npos) << s.ToString();
      EXPECT_NE(s.ToString().find(version), std::string::npos) << s.ToString();
    }
    return;
  }
  EXPECT_NE(put.status().ToString().find("limit_marker_ttl"), std::string::npos)
      << put.status().ToString();
  ASSERT_TRUE(marked.ok()) << marked.status().ToString();
  const BucketStatus with = (*marked)->GetStatus();
  EXPECT_TRUE(with.allows_ttl);
  EXPECT_EQ(with.limit_marker_ttl, 5s);
  const BucketStatus without = (*plain)->GetStatus();
  EXPECT_FALSE(without.allows_ttl);
  EXPECT_EQ(without.limit_marker_ttl, 0s);
  // An existing bucket without markers is never given them.
  TempDir dir2;
  auto other = OpenEngine(dir2);
  ASSERT_TRUE(other);
  auto asked = other->OpenBucket("plain", {.limit_marker_ttl = 5s});
  EXPECT_TRUE(asked.status().IsInvalidArgument()) << asked.status().ToString();
  EXPECT_NE(asked.status().ToString().find("limit_marker_ttl 0 s (asked 5 s"), std::string::npos)
      << asked.status().ToString();
  // History above 1: only Create takes a TTL.
  auto h5 = engine->OpenBucket("h5", {.history = 5, .limit_marker_ttl = 5s});
  ASSERT_TRUE(h5.ok()) << h5.status().ToString();
  EXPECT_TRUE((*h5)->Put("k", "v", Ttl(5s)).status().IsInvalidArgument());
  EXPECT_TRUE((*h5)->Create("k", "v", Ttl(5s)).ok());
  EXPECT_TRUE((*h5)->Delete("k", std::nullopt, Ttl(5s)).status().IsInvalidArgument());
  // There, a TTL below the marker TTL would be raised to it by the server
  // (2.11.2+): refused, and one at the marker TTL is stored as asked.
  auto shorter = (*h5)->Create("k2", "v", Ttl(2s));
  EXPECT_TRUE(shorter.status().IsInvalidArgument()) << shorter.status().ToString();
  EXPECT_NE(shorter.status().ToString().find("raise it to 5 s"), std::string::npos)
      << shorter.status().ToString();
  EXPECT_TRUE((*h5)->Get("k2").status().IsNotFound());
  ASSERT_TRUE((*h5)->Create("k2", "v", Ttl(5s)).ok());
  EXPECT_EQ((*h5)->GetEntry("k2")->ttl_ns, 5'000'000'000);
  // With history 1 the server keeps a shorter TTL as it is.
  ASSERT_TRUE((*marked)->Create("k", "v", Ttl(2s)).ok());
  EXPECT_EQ((*marked)->GetEntry("k")->ttl_ns, 2'000'000'000);
}

}  // namespace
}  // namespace revkv
