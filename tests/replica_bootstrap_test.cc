// A new replica's bootstrap (DESIGN §5). On nats-server 2.11+ a new replica
// of a history-1 bucket loads the latest entry of every key with batched
// direct gets up to the stream's last sequence at start, then resumes the
// ordered consumer after it; on older servers (and for history > 1) it
// replays through the ordered consumer. Either way it must hold exactly what
// the replay gives: every entry (value, revision, time, operation, TTL), the
// tombstones, and the writes made while it bootstrapped.
//
// The bucket is written by another client (raw nats.c) with Puts, Nats-TTL
// headers, DEL and PURGE tombstones and overwrites, and by revkv itself.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "replication/snapshot_bootstrap.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/raw_publish.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

bool SnapshotExpected() { return NatsServer::VersionAtLeast(2, 11); }

// The direct get's Nats-Time-Stamp (Go's RFC3339Nano) read to the
// nanosecond, as the consumer's metadata gives it.
TEST(snapshot_bootstrap, ReadsTheServersTimestampsToTheNanosecond) {
  using replication::ParseRfc3339Nano;
  EXPECT_EQ(ParseRfc3339Nano("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseRfc3339Nano("2026-12-01T00:10:47.123456789Z"), 1796083847123456789LL);
  EXPECT_EQ(ParseRfc3339Nano("2026-12-01T00:10:47.1Z"), 1796083847100000000LL);
  EXPECT_EQ(ParseRfc3339Nano("2024-02-29T12:00:00.5+01:00"), 1709204400500000000LL);
  EXPECT_EQ(ParseRfc3339Nano("2026-12-01T00:10:47"), std::nullopt);
  EXPECT_EQ(ParseRfc3339Nano("2026-13-01T00:10:47Z"), std::nullopt);
  EXPECT_EQ(ParseRfc3339Nano("2026-12-01T00:10:47.Z"), std::nullopt);
  EXPECT_EQ(ParseRfc3339Nano(""), std::nullopt);
}

class ReplicaBootstrapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    ASSERT_EQ(testing::ConnectClient(server_.url(), &nc_, &js_), NATS_OK);
  }
  void TearDown() override {
    replication::TEST_SetSnapshotBootstrap(true);
    replication::TEST_SetSnapshotPageMessages(0);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  struct Replica {
    std::unique_ptr<TempDir> dir = std::make_unique<TempDir>();
    std::unique_ptr<Engine> engine;
    std::shared_ptr<Bucket> bucket;
    std::vector<BootstrapProgress> progress;
  };
  // A new replica of `bucket` through the public API, caught up with Sync.
  // `snapshot` false forces today's replay through the ordered consumer.
  std::unique_ptr<Replica> OpenReplica(const std::string& bucket, bool snapshot,
                                       BucketOptions options = {},
                                       std::function<void()> during = nullptr) {
    auto r = std::make_unique<Replica>();
    Options o;
    o.path = r->dir->path();
    o.nats.servers = {server_.url()};
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok()) return r;
    r->engine = std::move(*e);
    Replica* raw = r.get();
    bool ran = false;
    options.bootstrap_progress = [raw, during, &ran](const BootstrapProgress& p) {
      raw->progress.push_back(p);
      if (during && !ran) {
        ran = true;
        during();
      }
    };
    replication::TEST_SetSnapshotBootstrap(snapshot);
    auto b = r->engine->OpenBucket(bucket, options);
    replication::TEST_SetSnapshotBootstrap(true);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (!b.ok()) return r;
    r->bucket = std::move(*b);
    Status s = r->bucket->Sync(30s);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return r;
  }

  // Publishes a KV message as another client would, synchronously.
  uint64_t Publish(const std::string& bucket, const std::string& key, const std::string& value,
                   const char* op = nullptr, const char* ttl = nullptr) {
    natsMsg* m = nullptr;
    const std::string subject = "$KV." + bucket + "." + key;
    EXPECT_EQ(natsMsg_Create(&m, subject.c_str(), nullptr, value.data(),
                             static_cast<int>(value.size())),
              NATS_OK);
    if (op != nullptr) natsMsgHeader_Set(m, "KV-Operation", op);
    if (op != nullptr && std::strcmp(op, "PURGE") == 0) natsMsgHeader_Set(m, "Nats-Rollup", "sub");
    if (ttl != nullptr) natsMsgHeader_Set(m, "Nats-TTL", ttl);
    natsMsgHeader_Set(m, "X-Other-Client", "yes");
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_PublishMsg(&ack, js_, m, nullptr, &jerr);
    EXPECT_EQ(s, NATS_OK) << natsStatus_GetText(s) << " " << jerr;
    uint64_t seq = ack != nullptr ? ack->Sequence : 0;
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(m);
    return seq;
  }

  // Many keys with every kind of message, as a raw client writes them:
  // `keys` Puts (some multi-token, some with a TTL), then overwrites of a
  // third, DEL of a tenth, PURGE of a tenth; pipelined with js_PublishMsgAsync.
  void Fill(const std::string& bucket, int keys) {
    const bool ttl = SnapshotExpected();
    auto publish = [&](const std::string& key, const std::string& value, const char* op,
                       const char* ttl_value) {
      natsMsg* m = nullptr;
      const std::string subject = "$KV." + bucket + "." + key;
      ASSERT_EQ(natsMsg_Create(&m, subject.c_str(), nullptr, value.data(),
                               static_cast<int>(value.size())),
                NATS_OK);
      if (op != nullptr) natsMsgHeader_Set(m, "KV-Operation", op);
      if (op != nullptr && std::strcmp(op, "PURGE") == 0) {
        natsMsgHeader_Set(m, "Nats-Rollup", "sub");
      }
      if (ttl_value != nullptr) natsMsgHeader_Set(m, "Nats-TTL", ttl_value);
      ASSERT_EQ(js_PublishMsgAsync(js_, &m, nullptr), NATS_OK);
    };
    for (int i = 0; i < keys; ++i) {
      const std::string key = i % 7 == 0 ? "multi.k" + std::to_string(i) + ".x"
                                         : "k" + std::to_string(i);
      publish(key, "v" + std::to_string(i), nullptr, ttl && i % 11 == 0 ? "1h" : nullptr);
    }
    for (int i = 0; i < keys; ++i) {
      const std::string key = i % 7 == 0 ? "multi.k" + std::to_string(i) + ".x"
                                         : "k" + std::to_string(i);
      if (i % 3 == 1) publish(key, "w" + std::to_string(i), nullptr, nullptr);
      if (i % 10 == 2) publish(key, "", "DEL", nullptr);
      if (i % 10 == 5) publish(key, "", "PURGE", nullptr);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    ASSERT_EQ(js_PublishAsyncComplete(js_, &po), NATS_OK);
  }

  // Every entry the replica holds, in revision order, tombstones included.
  static std::vector<Entry> AllEntries(Bucket& b) {
    auto all = b.ChangesSince(0, 1 << 30);
    EXPECT_TRUE(all.ok()) << all.status().ToString();
    return all.ok() ? *all : std::vector<Entry>{};
  }

  static void ExpectSameEntries(Bucket& got, Bucket& want) {
    ASSERT_EQ(got.LastRevision(), want.LastRevision());
    const auto g = AllEntries(got);
    const auto w = AllEntries(want);
    ASSERT_EQ(g.size(), w.size());
    for (size_t i = 0; i < g.size(); ++i) {
      SCOPED_TRACE("entry " + std::to_string(i) + " key '" + w[i].key + "'");
      EXPECT_EQ(g[i].key, w[i].key);
      EXPECT_EQ(g[i].value, w[i].value);
      EXPECT_EQ(g[i].revision, w[i].revision);
      EXPECT_EQ(g[i].created_ns, w[i].created_ns);
      EXPECT_EQ(g[i].operation, w[i].operation);
      EXPECT_EQ(g[i].ttl_ns, w[i].ttl_ns);
      if (HasFailure()) return;
    }
  }

  // Creates the bucket through revkv, with per-key TTLs allowed where the
  // server has them.
  std::unique_ptr<Replica> CreateBucket(const std::string& bucket, int history = 1) {
    BucketOptions o;
    o.history = history;
    if (SnapshotExpected()) o.limit_marker_ttl = 60s;
    return OpenReplica(bucket, /*snapshot=*/true, o);
  }

  NatsServer server_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

TEST_F(ReplicaBootstrapTest, SnapshotHoldsWhatTheReplayHolds) {
  auto writer = CreateBucket("snap");
  ASSERT_TRUE(writer->bucket);
  Fill("snap", 6000);
  // revkv's own writes too.
  ASSERT_TRUE(writer->bucket->Put("own.put", "p").ok());
  ASSERT_TRUE(writer->bucket->Put("own.del", "d").ok());
  ASSERT_TRUE(writer->bucket->Delete("own.del").ok());
  ASSERT_TRUE(writer->bucket->Put("own.purge", "d").ok());
  ASSERT_TRUE(writer->bucket->Purge("own.purge").ok());
  if (SnapshotExpected()) {
    ASSERT_TRUE(writer->bucket->Put("own.ttl", "t", {.ttl = 3600s}).ok());
  }
  const uint64_t last = writer->bucket->LastRevision();

  // Small pages: many page boundaries, each a WriteBatch of its own.
  replication::TEST_SetSnapshotPageMessages(700);
  auto snap = OpenReplica("snap", /*snapshot=*/true);
  replication::TEST_SetSnapshotPageMessages(0);
  auto replay = OpenReplica("snap", /*snapshot=*/false);
  ASSERT_TRUE(snap->bucket && replay->bucket);
  EXPECT_EQ(snap->bucket->LastRevision(), last);
  ExpectSameEntries(*snap->bucket, *replay->bucket);
  EXPECT_TRUE(replay->progress.empty());
  if (SnapshotExpected()) {
    ASSERT_FALSE(snap->progress.empty()) << "the snapshot path was not taken";
    EXPECT_EQ(snap->progress.back().target, last);
    EXPECT_EQ(snap->progress.back().revision, last);
    EXPECT_GT(snap->progress.back().loaded, 5000u);
    EXPECT_GT(snap->progress.size(), 1u) << "one page only; the test covers no paging";
  } else {
    EXPECT_TRUE(snap->progress.empty()) << "a 2.10 server has no batched direct get";
  }
  // Tombstones are mirrored, as the replay leaves them.
  auto del = snap->bucket->GetEntry("k2");
  EXPECT_TRUE(del.status().IsNotFound()) << del.status().ToString();
  auto h = snap->bucket->History("k5");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->back().operation, Operation::kPurge);
  // And the replica goes on applying writes after the snapshot.
  ASSERT_TRUE(writer->bucket->Put("after", "a").ok());
  ASSERT_TRUE(snap->bucket->Sync(10s).ok());
  auto after = snap->bucket->Get("after");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*after, "a");
}

TEST_F(ReplicaBootstrapTest, WritesDuringTheBootstrapAreNotLost) {
  auto writer = CreateBucket("live");
  ASSERT_TRUE(writer->bucket);
  Fill("live", 20000);
  const uint64_t start_last = writer->bucket->LastRevision();

  // A concurrent publisher for the whole bootstrap, and, at the first
  // progress report (the snapshot is under way), overwrites, deletes and
  // purges of keys still to be loaded and of keys already loaded.
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    if (testing::ConnectClient(server_.url(), &nc, &js) != NATS_OK) return;
    for (int i = 0; !stop.load() || i < 200; ++i) {
      const std::string subject = "$KV.live.concurrent." + std::to_string(i % 500);
      const std::string value = "c" + std::to_string(i);
      if (js_Publish(nullptr, js, subject.c_str(), value.data(), static_cast<int>(value.size()),
                     nullptr, nullptr) == NATS_OK) {
        published.fetch_add(1);
      }
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  });
  auto during = [&] {
    for (int i = 0; i < 20000; i += 997) {
      const std::string key = i % 7 == 0 ? "multi.k" + std::to_string(i) + ".x"
                                         : "k" + std::to_string(i);
      Publish("live", key, "during" + std::to_string(i));
      if (i % 3 == 0) Publish("live", key, "", "DEL");
      if (i % 5 == 0) Publish("live", key, "", "PURGE");
    }
  };
  auto snap = OpenReplica("live", /*snapshot=*/true, {}, during);
  // A replay reports no progress: the same writes, while its consumer runs.
  if (snap->progress.empty()) during();
  stop.store(true);
  publisher.join();
  ASSERT_TRUE(snap->bucket);
  EXPECT_GT(published.load(), 0);
  EXPECT_GT(snap->bucket->LastRevision(), start_last);
  if (SnapshotExpected()) {
    ASSERT_FALSE(snap->progress.empty());
    EXPECT_GE(snap->progress.front().target, start_last);
  }
  ASSERT_TRUE(snap->bucket->Sync(30s).ok());
  auto replay = OpenReplica("live", /*snapshot=*/false);
  ASSERT_TRUE(replay->bucket);
  ASSERT_TRUE(snap->bucket->Sync(30s).ok());
  ExpectSameEntries(*snap->bucket, *replay->bucket);
  auto during_entry = snap->bucket->GetEntry("k997");
  ASSERT_TRUE(during_entry.ok()) << during_entry.status().ToString();
  EXPECT_EQ(during_entry->value, "during997");
}

// History > 1: a new replica keeps the latest entry of each key either way
// (the replay delivers the last message per key), and both paths agree.
TEST_F(ReplicaBootstrapTest, HistoryBucketHoldsWhatTheReplayHolds) {
  auto writer = CreateBucket("hist", /*history=*/5);
  ASSERT_TRUE(writer->bucket);
  Fill("hist", 3000);
  auto snap = OpenReplica("hist", /*snapshot=*/true);
  auto replay = OpenReplica("hist", /*snapshot=*/false);
  ASSERT_TRUE(snap->bucket && replay->bucket);
  ExpectSameEntries(*snap->bucket, *replay->bucket);
  auto h = snap->bucket->History("k1");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->size(), 1u);
}

// A message whose headers no client can parse (stored by a client with its
// own header encoder) carries its stream metadata in those headers in a
// direct get: the snapshot stops before it, and the consumer goes on from
// there, skipping it with its revision exactly as the replay does.
TEST_F(ReplicaBootstrapTest, DamagedMessageHandsTheRestToTheConsumer) {
  auto writer = CreateBucket("dmg");
  ASSERT_TRUE(writer->bucket);
  Fill("dmg", 2000);
  ASSERT_EQ(testing::RawPublish(server_.port(), "$KV.dmg.damaged",
                                "NATS/1.0\r\nno colon on this line\r\n\r\n", "v"),
            "");
  Fill("dmg", 300);  // overwrites of keys before the damaged message
  ASSERT_TRUE(writer->bucket->Put("last", "l").ok());
  ASSERT_TRUE(writer->bucket->Sync(10s).ok());
  replication::TEST_SetSnapshotPageMessages(500);
  auto snap = OpenReplica("dmg", /*snapshot=*/true);
  replication::TEST_SetSnapshotPageMessages(0);
  auto replay = OpenReplica("dmg", /*snapshot=*/false);
  ASSERT_TRUE(snap->bucket && replay->bucket);
  ExpectSameEntries(*snap->bucket, *replay->bucket);
  const BucketStatus got = snap->bucket->GetStatus();
  const BucketStatus want = replay->bucket->GetStatus();
  EXPECT_EQ(got.skipped, want.skipped);
  EXPECT_EQ(got.first_skipped, want.first_skipped);
  EXPECT_EQ(want.skipped, 1u);
  if (SnapshotExpected()) {
    ASSERT_FALSE(snap->progress.empty());
    EXPECT_LT(snap->progress.back().revision, snap->progress.back().target)
        << "the snapshot should have stopped before the damaged message";
  }
}

// A replica that has entries resumes through the consumer, never reloads.
TEST_F(ReplicaBootstrapTest, ExistingReplicaResumesWithoutASnapshot) {
  auto writer = CreateBucket("resume");
  ASSERT_TRUE(writer->bucket);
  Fill("resume", 500);
  auto r = OpenReplica("resume", /*snapshot=*/true);
  ASSERT_TRUE(r->bucket);
  const bool snapshotted = !r->progress.empty();
  EXPECT_EQ(snapshotted, SnapshotExpected());
  ASSERT_TRUE(writer->bucket->Put("more", "m").ok());
  // Reopen on the same store.
  r->bucket.reset();
  r->engine.reset();
  r->progress.clear();
  Options o;
  o.path = r->dir->path();
  o.nats.servers = {server_.url()};
  auto e = Engine::Open(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  BucketOptions bo;
  bool called = false;
  bo.bootstrap_progress = [&](const BootstrapProgress&) { called = true; };
  auto b = (*e)->OpenBucket("resume", bo);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_TRUE((*b)->Sync(10s).ok());
  EXPECT_FALSE(called);
  auto more = (*b)->Get("more");
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  EXPECT_EQ(*more, "m");
}

}  // namespace
}  // namespace revkv
