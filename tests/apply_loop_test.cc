// The apply loop against a real nats-server: entries written with nats.c's
// own kvStore_* API appear in the replica with the same revision, value and
// operation; a new replica bootstraps from the last message per key; a
// restarted loop resumes after the applied revision and re-reads nothing.

#include "replication/apply_loop.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "engine/local_bucket.h"
#include "replication/kv_stream.h"
#include "replication/kv_writer.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv::replication {
namespace {

using namespace std::chrono_literals;
using revkv::testing::NatsServer;
using revkv::testing::TempDir;

class ApplyLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    ASSERT_EQ(revkv::testing::ConnectClient(server_.url(), &nc_, &js_), NATS_OK);
    KvStreamRequest req;
    req.bucket = "mirror";
    req.history = 5;
    ASSERT_TRUE(BindKvStream(js_, req).ok());
    ASSERT_EQ(js_KeyValue(&kv_, js_, "mirror"), NATS_OK);
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto bucket = engine_->OpenBucket("mirror", {.history = 5});
    ASSERT_TRUE(bucket.ok());
    replica_ = std::dynamic_pointer_cast<engine::LocalBucket>(*bucket);
    ASSERT_NE(replica_, nullptr);
  }
  void TearDown() override {
    loop_.reset();
    kvStore_Destroy(kv_);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  void StartLoop() {
    auto loop = ApplyLoop::Start(js_, "mirror", replica_);
    ASSERT_TRUE(loop.ok()) << loop.status().ToString();
    loop_ = std::move(*loop);
  }
  uint64_t StreamLast() {
    auto s = ReadKvStream(js_, "mirror");
    EXPECT_TRUE(s.ok());
    return s.ok() ? s->last_sequence : 0;
  }
  uint64_t Put(const std::string& key, const std::string& value) {
    uint64_t rev = 0;
    EXPECT_EQ(kvStore_PutString(&rev, kv_, key.c_str(), value.c_str()), NATS_OK);
    return rev;
  }
  // Every key of the stream compared with the replica: value, revision and
  // operation, as nats.c reads them.
  void ExpectReplicaMatches(const std::vector<std::string>& keys) {
    for (const std::string& key : keys) {
      kvEntry* latest = nullptr;
      natsStatus s = kvStore_Get(&latest, kv_, key.c_str());
      auto mine = replica_->GetEntry(key);
      if (s == NATS_OK) {
        ASSERT_TRUE(mine.ok()) << key << ": " << mine.status().ToString();
        EXPECT_EQ(mine->revision, kvEntry_Revision(latest)) << key;
        EXPECT_EQ(mine->value, std::string(kvEntry_ValueString(latest))) << key;
        EXPECT_EQ(mine->created_ns, kvEntry_Created(latest)) << key;
        kvEntry_Destroy(latest);
      } else {
        ASSERT_EQ(s, NATS_NOT_FOUND) << key;
        EXPECT_TRUE(mine.status().IsNotFound()) << key << ": " << mine.status().ToString();
        // The tombstone's revision is the one nats.c's history ends with.
        kvEntryList list;
        ASSERT_EQ(kvStore_History(&list, kv_, key.c_str(), nullptr), NATS_OK);
        ASSERT_GT(list.Count, 0);
        kvEntry* last = list.Entries[list.Count - 1];
        EXPECT_EQ(mine.status().revision(), kvEntry_Revision(last)) << key;
        const kvOperation op = kvEntry_Operation(last);
        auto hist = replica_->History(key);
        ASSERT_TRUE(hist.ok());
        EXPECT_EQ(hist->back().operation,
                  op == kvOp_Purge ? Operation::kPurge : Operation::kDelete)
            << key;
        kvEntryList_Destroy(&list);
      }
    }
  }

  NatsServer server_;
  TempDir dir_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  kvStore* kv_ = nullptr;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<engine::LocalBucket> replica_;
  std::unique_ptr<ApplyLoop> loop_;
};

TEST_F(ApplyLoopTest, WritesByNatsCAppearWithTheSameRevisionValueAndOperation) {
  StartLoop();
  Put("a", "1");
  Put("b", "2");
  Put("a", "3");
  ASSERT_EQ(kvStore_Delete(kv_, "a"), NATS_OK);
  Put("c", "4");
  ASSERT_EQ(kvStore_Purge(kv_, "b", nullptr), NATS_OK);
  const uint64_t last = StreamLast();
  ASSERT_EQ(last, 6u);
  ASSERT_TRUE(loop_->WaitApplied(last, std::chrono::steady_clock::now() + 5s).ok());
  EXPECT_EQ(replica_->LastRevision(), last);
  ExpectReplicaMatches({"a", "b", "c"});
  auto hist = replica_->History("a");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 3u);  // 1, 3, DEL@4, as nats.c keeps them
  EXPECT_EQ((*hist)[0].revision, 1u);
  EXPECT_EQ((*hist)[1].value, "3");
  auto purged = replica_->History("b");
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(purged->size(), 1u);  // the purge dropped "2"
}

TEST_F(ApplyLoopTest, NewReplicaBootstrapsFromTheLastMessagePerKey) {
  std::map<std::string, std::string> want;
  for (int i = 0; i < 100; ++i) {
    std::string key = "k." + std::to_string(i % 10);
    want[key] = "v" + std::to_string(i);
    Put(key, want[key]);
  }
  StartLoop();
  ASSERT_TRUE(loop_->WaitApplied(100, std::chrono::steady_clock::now() + 5s).ok());
  EXPECT_EQ(loop_->messages_received(), 10u) << "only the last message of each key is replayed";
  for (const auto& [key, value] : want) {
    auto got = replica_->Get(key);
    ASSERT_TRUE(got.ok()) << key;
    EXPECT_EQ(*got, value);
  }
  ExpectReplicaMatches({"k.0", "k.5", "k.9"});
}

TEST_F(ApplyLoopTest, RestartResumesAfterTheAppliedRevisionAndReReadsNothing) {
  StartLoop();
  for (int i = 0; i < 20; ++i) Put("r." + std::to_string(i), "x");
  ASSERT_TRUE(loop_->WaitApplied(20, std::chrono::steady_clock::now() + 5s).ok());
  loop_.reset();
  for (int i = 0; i < 5; ++i) Put("r.new." + std::to_string(i), "y");
  StartLoop();
  ASSERT_TRUE(loop_->WaitApplied(25, std::chrono::steady_clock::now() + 5s).ok());
  EXPECT_EQ(loop_->messages_received(), 5u) << "a resumed loop re-read applied messages";
  ExpectReplicaMatches({"r.0", "r.19", "r.new.4"});
}

// A replica that catches up across a gap (messages the history limit
// removed while it was away) must not show a state the stream never had. Here
// "a" and "b" were written as a pair, then "a" was rewritten until the history
// limit (5) dropped its half of the pair. Catching up, the loop sees b's half,
// then 600 other messages, then a's rewrites. Applied in batches of 512, the
// replica would show the new b with the old a at every point in between.
TEST_F(ApplyLoopTest, CatchUpAcrossAGapShowsNoStateTheStreamNeverHad) {
  StartLoop();
  Put("a", "0");
  const uint64_t synced = Put("b", "0");
  ASSERT_TRUE(loop_->WaitApplied(synced, std::chrono::steady_clock::now() + 5s).ok());
  loop_.reset();
  const uint64_t pair_a = Put("a", "1");
  const uint64_t pair_b = Put("b", "1");
  for (int i = 0; i < 600; ++i) Put("z." + std::to_string(i), "filler");
  uint64_t rewrite = 0;
  for (int i = 2; i <= 6; ++i) {
    const uint64_t r = Put("a", std::to_string(i));
    if (rewrite == 0) rewrite = r;
  }
  kvEntry* gone = nullptr;
  ASSERT_EQ(kvStore_GetRevision(&gone, kv_, "a", pair_a), NATS_NOT_FOUND)
      << "the history limit should have removed a's half of the pair";
  // Each applied entry with the revision its WriteBatch ended at: a state
  // readers could see.
  std::mutex mu;
  std::map<uint64_t, uint64_t> batch_end;
  const uint64_t id = replica_->AddCommitListener([&](const Entry& e) {
    std::lock_guard<std::mutex> lock(mu);
    batch_end[e.revision] = replica_->LastRevision();
  });
  StartLoop();
  ASSERT_TRUE(loop_->WaitApplied(rewrite + 4, std::chrono::steady_clock::now() + 10s).ok());
  replica_->RemoveCommitListener(id);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(batch_end.count(pair_b), 1u);
  EXPECT_GE(batch_end[pair_b], rewrite)
      << "the replica showed b at revision " << pair_b << " with a still at its old value, "
      << "at revision " << batch_end[pair_b] << "; a's next message is " << rewrite;
  EXPECT_EQ(*replica_->Get("a"), "6");
  EXPECT_EQ(*replica_->Get("b"), "1");
}

// nats.c drops messages past a subscription's pending limits, and its
// ordered consumer does not notice a dropped message (it counts it as
// delivered first): the loop's subscription must have no limit.
TEST_F(ApplyLoopTest, TheSubscriptionHasNoPendingLimit) {
  StartLoop();
  int msgs = 0, bytes = 0;
  ASSERT_EQ(natsSubscription_GetPendingLimits(loop_->TEST_subscription(), &msgs, &bytes), NATS_OK);
  EXPECT_LT(msgs, 0);
  EXPECT_LT(bytes, 0);
}

TEST_F(ApplyLoopTest, WaitAppliedTimesOut) {
  StartLoop();
  auto s = loop_->WaitApplied(1000, std::chrono::steady_clock::now() + 100ms);
  EXPECT_TRUE(s.IsTimeout()) << s.ToString();
}


// The consumer says how many messages are still pending, and the loop holds
// its batch for them. If the server removes them before they are delivered
// (here a stream purge; max_age does the same), the held batch must still be
// applied, not wait for the next write.
TEST_F(ApplyLoopTest, BatchHeldForMessagesThatNeverComeIsStillApplied) {
  constexpr int kMessages = 30000;
  uint64_t received = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // A fresh replica each attempt: start from scratch.
    ASSERT_TRUE(replica_->ResetReplica(0).ok());
    for (int i = 0; i < kMessages; ++i) {
      const std::string subject = "$KV.mirror.k" + std::to_string(attempt) + "_" + std::to_string(i);
      ASSERT_EQ(js_PublishAsync(js_, subject.c_str(), "v", 1, nullptr), NATS_OK);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 20000;
    ASSERT_EQ(js_PublishAsyncComplete(js_, &po), NATS_OK);
    StartLoop();
    // Purge while the consumer is still delivering.
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_PurgeStream(js_, "KV_mirror", nullptr, &jerr), NATS_OK) << jerr;
    // Wait until deliveries stop.
    uint64_t last = ~0ull;
    while (loop_->messages_received() != last) {
      last = loop_->messages_received();
      std::this_thread::sleep_for(300ms);
    }
    received = loop_->messages_received();
    auto applied = replica_->ChangesSince(0, kMessages + 1);
    ASSERT_TRUE(applied.ok()) << applied.status().ToString();
    EXPECT_EQ(applied->size(), received) << "messages received but never applied";
    loop_.reset();
    if (received < static_cast<uint64_t>(kMessages)) break;  // the purge cut delivery short
  }
  EXPECT_LT(received, static_cast<uint64_t>(kMessages))
      << "the purge never overtook the delivery, so the held batch was not exercised";
}

// A failure of the local store (here writes to a dropped column family, as
// a full disk would fail them) stops the loop before the message: it is not
// skipped, the applied revision stays before it, and waiting writers get the
// error. A damaged message would be skipped instead (foreign_writes_test).
TEST_F(ApplyLoopTest, StoreFailureStopsTheLoopInsteadOfSkipping) {
  StartLoop();
  const uint64_t first = Put("a", "1");
  ASSERT_TRUE(loop_->WaitApplied(first, std::chrono::steady_clock::now() + 5s).ok());
  ASSERT_TRUE(replica_->db()->DropColumnFamily(replica_->TEST_family()).ok());
  const uint64_t second = Put("b", "2");
  Status s = loop_->WaitApplied(second, std::chrono::steady_clock::now() + 5s);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.IsTimeout()) << s.ToString();
  EXPECT_EQ(replica_->LastRevision(), first);
  EXPECT_EQ(replica_->GetStatus().skipped, 0u);
}

// Publishes to the mirror bucket with raw nats.c and receives the message
// back from the stream as the apply loop would: with its JetStream metadata.
natsMsg* RoundTrip(jsCtx* js, const std::string& key, const std::string& data,
                   const std::vector<std::pair<const char*, const char*>>& headers = {}) {
  const std::string subject = "$KV.mirror." + key;
  natsMsg* m = nullptr;
  EXPECT_EQ(
      natsMsg_Create(&m, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size())),
      NATS_OK);
  for (const auto& [name, value] : headers) EXPECT_EQ(natsMsgHeader_Set(m, name, value), NATS_OK);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  EXPECT_EQ(js_PublishMsg(nullptr, js, m, nullptr, &jerr), NATS_OK) << jerr;
  natsMsg_Destroy(m);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Ordered = true;
  so.Stream = "KV_mirror";
  so.Config.DeliverPolicy = js_DeliverLast;
  natsSubscription* sub = nullptr;
  EXPECT_EQ(js_SubscribeSync(&sub, js, subject.c_str(), nullptr, &so, &jerr), NATS_OK) << jerr;
  natsMsg* got = nullptr;
  EXPECT_EQ(natsSubscription_NextMsg(&got, sub, 5000), NATS_OK);
  natsSubscription_Destroy(sub);
  return got;
}

// The operation, as nats.go reads it: KV-Operation first (DEL, PURGE, any
// other value a Put), then a limit marker's reason (MaxAge and Purge a
// Purge, Remove, or a reason not known yet, a Delete), else a Put. (Not an
// empty KV-Operation: nats.c 3.4.1 parses an empty header value as the
// next header line.)
// Own-write apply: a write this process made is applied when its
// acknowledgement comes, if it is the replica's next revision, with a
// provisional time that the consumer's delivery replaces by the server's.
TEST_F(ApplyLoopTest, OwnWritesApplyAheadOfTheConsumerAndTakeTheServersTime) {
  StartLoop();
  KvWriter writer(js_, "mirror", loop_.get(), replica_, 5s);
  uint64_t rev = 0;
  for (int i = 0; i < 100; ++i) {
    auto r = writer.Update("k", "v" + std::to_string(i), rev);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rev = *r;
    auto mine = replica_->GetEntry("k");  // read-your-writes
    ASSERT_TRUE(mine.ok());
    ASSERT_EQ(mine->revision, rev);
  }
  ASSERT_TRUE(writer.Put("p", "x").ok());
  ASSERT_TRUE(writer.Delete("p", std::nullopt).ok());
  ASSERT_TRUE(writer.Put("q", "y").ok());
  ASSERT_TRUE(writer.Purge("q", std::nullopt).ok());
  // Some acknowledgements came before the consumer brought their message
  // (which comes first is a race inside the server): each was the
  // replica's next revision then, with one writer on an idle stream.
  EXPECT_GT(loop_->own_writes_applied(), 0u);
  const std::vector<std::string> keys = {"k", "p", "q"};
  // Each revision's time as the server stored it, once delivered.
  auto times_match = [&] {
    for (const std::string& key : keys) {
      kvEntryList list;
      if (kvStore_History(&list, kv_, key.c_str(), nullptr) != NATS_OK) return false;
      auto mine = replica_->History(key);
      bool same = mine.ok() && mine->size() == static_cast<size_t>(list.Count);
      for (int i = 0; same && i < list.Count; ++i) {
        same = (*mine)[i].revision == kvEntry_Revision(list.Entries[i]) &&
               (*mine)[i].created_ns == kvEntry_Created(list.Entries[i]);
      }
      kvEntryList_Destroy(&list);
      if (!same) return false;
    }
    return true;
  };
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!times_match() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(times_match());
  ExpectReplicaMatches(keys);
  auto p = replica_->History("p");
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].value, "x");
  EXPECT_EQ((*p)[1].operation, Operation::kDelete);
}

TEST_F(ApplyLoopTest, ReadStreamMessageReadsOperationsAndMarkersAsNatsGoDoes) {
  struct Case {
    std::vector<std::pair<const char*, const char*>> headers;
    Operation want;
  };
  const Case cases[] = {
      {{}, Operation::kPut},
      {{{"KV-Operation", "DEL"}}, Operation::kDelete},
      {{{"KV-Operation", "PURGE"}}, Operation::kPurge},
      {{{"KV-Operation", "FOO"}}, Operation::kPut},
      {{{"KV-Operation", "del"}}, Operation::kPut},
      {{{"Nats-Marker-Reason", "MaxAge"}}, Operation::kPurge},
      {{{"Nats-Marker-Reason", "Purge"}}, Operation::kPurge},
      {{{"Nats-Marker-Reason", "Remove"}}, Operation::kDelete},
      {{{"Nats-Marker-Reason", "SomethingNew"}}, Operation::kDelete},
      {{{"Nats-Marker-Reason", "MaxAge"}, {"KV-Operation", "DEL"}}, Operation::kDelete},
      {{{"Nats-Marker-Reason", "Remove"}, {"KV-Operation", "FOO"}}, Operation::kPut},
      {{{"Nats-Msg-Id", "x"}}, Operation::kPut},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("case " + std::to_string(++n));
    natsMsg* m = RoundTrip(js_, "k", "data", c.headers);
    ASSERT_NE(m, nullptr);
    auto read = ReadStreamMessage(m, "$KV.mirror.");
    natsMsg_Destroy(m);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(read->damage, "");
    EXPECT_EQ(read->entry.operation, c.want);
    EXPECT_EQ(read->entry.value, c.want == Operation::kPut ? "data" : "");
    EXPECT_EQ(read->entry.key, "k");
    EXPECT_EQ(read->entry.revision, StreamLast());
    EXPECT_GT(read->entry.created_ns, 0);
  }
}

TEST_F(ApplyLoopTest, ReadStreamMessageTakesKeysAsTheServerStoredThem) {
  for (const std::string& key :
       {std::string(2000, 'k'), std::string("caf\xc3\xa9.\xd0\xba"), std::string("a.*")}) {
    natsMsg* m = RoundTrip(js_, key, "v");
    ASSERT_NE(m, nullptr);
    auto read = ReadStreamMessage(m, "$KV.mirror.");
    natsMsg_Destroy(m);
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read->damage, "");
    EXPECT_EQ(read->entry.key, key);
  }
}

// A damaged message is not an error but a reason to skip it.
TEST_F(ApplyLoopTest, ReadStreamMessageNamesDamageInsteadOfFailing) {
  natsMsg* m = RoundTrip(js_, "k", "v");
  ASSERT_NE(m, nullptr);
  auto read = ReadStreamMessage(m, "$KV.other.");
  natsMsg_Destroy(m);
  ASSERT_TRUE(read.ok());
  EXPECT_NE(read->damage.find("is not under '$KV.other.'"), std::string::npos) << read->damage;
  EXPECT_EQ(read->entry.revision, StreamLast());

  natsMsg* plain = nullptr;  // not from a JetStream subscription: no metadata
  ASSERT_EQ(natsMsg_Create(&plain, "$KV.mirror.k", "$JS.ACK.KV_mirror.c.1.9.9.1.0", "v", 1),
            NATS_OK);
  read = ReadStreamMessage(plain, "$KV.mirror.");
  natsMsg_Destroy(plain);
  ASSERT_TRUE(read.ok());
  EXPECT_NE(read->damage.find("metadata"), std::string::npos) << read->damage;
  EXPECT_EQ(read->entry.revision, 0u);
}

}  // namespace
}  // namespace revkv::replication
