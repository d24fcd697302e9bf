// The replicated write path against a real nats-server, with several
// replicas (each its own store, connection and apply loop): server-arbitrated
// CAS, Create after a tombstone, read-your-writes, no lost update under
// concurrent increments, and writes that any NATS client reads back.

#include "replication/kv_writer.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/local_bucket.h"
#include "replication/apply_loop.h"
#include "replication/kv_stream.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv::replication {
namespace {

using namespace std::chrono_literals;
using revkv::testing::NatsServer;
using revkv::testing::TempDir;

// One process's worth of replication: a store, a connection, an apply loop
// and a writer for bucket "shared".
struct Replica {
  TempDir dir;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::unique_ptr<Engine> engine;
  std::shared_ptr<engine::LocalBucket> bucket;
  std::unique_ptr<ApplyLoop> loop;
  std::unique_ptr<KvWriter> writer;

  Status Open(const std::string& url) {
    natsOptions* opts = nullptr;
    natsOptions_Create(&opts);
    natsOptions_SetURL(opts, url.c_str());
    natsStatus s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) return Status::Unavailable("connect");
    // Requests (consumer deletion included) give up after 1 s, so a test
    // that stops the server does not wait out the default 5 s per replica.
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 1000;
    natsConnection_JetStream(&js, nc, &jo);
    KvStreamRequest req;
    req.bucket = "shared";
    req.history = 5;
    auto bound = BindKvStream(js, req);
    if (!bound.ok()) return bound.status();
    auto e = Engine::Open({.path = dir.path()});
    if (!e.ok()) return e.status();
    engine = std::move(*e);
    auto b = engine->OpenBucket("shared", {.history = 5});
    if (!b.ok()) return b.status();
    bucket = std::dynamic_pointer_cast<engine::LocalBucket>(*b);
    auto l = ApplyLoop::Start(js, "shared", bucket);
    if (!l.ok()) return l.status();
    loop = std::move(*l);
    writer = std::make_unique<KvWriter>(js, "shared", loop.get(), bucket, 5000ms);
    return Status::OK();
  }
  ~Replica() {
    writer.reset();
    loop.reset();
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
};

class KvWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start()) << server_.error();
    for (auto& r : replicas_) {
      r = std::make_unique<Replica>();
      Status s = r->Open(server_.url());
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
  Status Converge(uint64_t revision) {
    for (auto& r : replicas_) {
      Status s = r->loop->WaitApplied(revision, std::chrono::steady_clock::now() + 5s);
      if (!s.ok()) return s;
    }
    return Status::OK();
  }

  NatsServer server_;
  std::unique_ptr<Replica> replicas_[3];
};

TEST_F(KvWriterTest, WritesAreReadableAtOnceLocallyAndConvergeEverywhere) {
  auto rev = replicas_[0]->writer->Put("job.1", "queued");
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  // Read-your-writes: the writer's replica has it when Put returns.
  auto mine = replicas_[0]->bucket->GetEntry("job.1");
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->revision, *rev);
  ASSERT_TRUE(Converge(*rev).ok());
  for (auto& r : replicas_) EXPECT_EQ(*r->bucket->Get("job.1"), "queued");

  // Any NATS client reads the same value and revision.
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, replicas_[1]->js, "shared"), NATS_OK);
  kvEntry* e = nullptr;
  ASSERT_EQ(kvStore_Get(&e, kv, "job.1"), NATS_OK);
  EXPECT_STREQ(kvEntry_ValueString(e), "queued");
  EXPECT_EQ(kvEntry_Revision(e), *rev);
  kvEntry_Destroy(e);
  kvStore_Destroy(kv);
}

TEST_F(KvWriterTest, CasConflictsAcrossReplicasNameTheCurrentRevision) {
  auto r1 = replicas_[0]->writer->Put("k", "a");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(Converge(*r1).ok());
  auto r2 = replicas_[1]->writer->Update("k", "b", *r1);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  // Replica 2 has not necessarily seen r2: the server arbitrates.
  auto stale = replicas_[2]->writer->Update("k", "c", *r1);
  ASSERT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_EQ(stale.status().revision(), *r2);
  ASSERT_TRUE(Converge(*r2).ok());
  for (auto& r : replicas_) EXPECT_EQ(*r->bucket->Get("k"), "b");
  // The local pre-check refuses what the replica already proves stale.
  auto pre = replicas_[2]->writer->Update("k", "d", *r1);
  EXPECT_TRUE(pre.status().IsConflict());
}

TEST_F(KvWriterTest, CreateRacingAfterDeleteHasExactlyOneWinner) {
  auto r1 = replicas_[0]->writer->Put("lock.like", "v");
  ASSERT_TRUE(r1.ok());
  auto del = replicas_[0]->writer->Delete("lock.like", std::nullopt);
  ASSERT_TRUE(del.ok());
  ASSERT_TRUE(Converge(*del).ok());
  std::atomic<int> wins{0}, exists{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 9; ++i) {
    threads.emplace_back([&, i] {
      auto r = replicas_[i % 3]->writer->Create("lock.like", "winner-" + std::to_string(i));
      if (r.ok()) {
        ++wins;
      } else if (r.status().IsExists()) {
        ++exists;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(exists.load(), 8);
  EXPECT_EQ(other.load(), 0);
}

TEST_F(KvWriterTest, ConcurrentIncrementsAcrossReplicasLoseNoUpdate) {
  constexpr int kThreadsPerReplica = 2, kPerThread = 40;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (auto& rep : replicas_) {
    for (int t = 0; t < kThreadsPerReplica; ++t) {
      threads.emplace_back([&, r = rep.get()] {
        int done = 0;
        while (done < kPerThread) {
          auto e = r->bucket->GetEntry("counter");
          uint64_t rev = e.ok() ? e->revision : e.status().revision();
          long value = e.ok() ? std::stol(e->value) : 0;
          auto w = rev == 0 && !e.ok() ? r->writer->Create("counter", std::to_string(value + 1))
                                       : r->writer->Update("counter", std::to_string(value + 1), rev);
          if (w.ok()) {
            ++done;
          } else if (!w.status().IsConflict() && !w.status().IsExists()) {
            ++errors;
            return;
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(errors.load(), 0);
  const int total = 3 * kThreadsPerReplica * kPerThread;
  auto last = ReadKvStream(replicas_[0]->js, "shared");
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(Converge(last->last_sequence).ok());
  for (auto& r : replicas_) EXPECT_EQ(std::stol(*r->bucket->Get("counter")), total);
}

TEST_F(KvWriterTest, PurgeAndDeleteCarryTheirOperationToOtherClients) {
  ASSERT_TRUE(replicas_[0]->writer->Put("p", "1").ok());
  auto purge = replicas_[0]->writer->Purge("p", std::nullopt);
  ASSERT_TRUE(purge.ok());
  auto del = replicas_[1]->writer->Delete("q", std::nullopt);
  ASSERT_TRUE(del.ok());
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, replicas_[2]->js, "shared"), NATS_OK);
  kvEntryList list;
  ASSERT_EQ(kvStore_History(&list, kv, "p", nullptr), NATS_OK);
  ASSERT_EQ(list.Count, 1);
  EXPECT_EQ(kvEntry_Operation(list.Entries[0]), kvOp_Purge);
  kvEntryList_Destroy(&list);
  ASSERT_EQ(kvStore_History(&list, kv, "q", nullptr), NATS_OK);
  ASSERT_EQ(list.Count, 1);
  EXPECT_EQ(kvEntry_Operation(list.Entries[0]), kvOp_Delete);
  kvEntryList_Destroy(&list);
  kvStore_Destroy(kv);
  ASSERT_TRUE(Converge(*del).ok());
  auto h = replicas_[2]->bucket->History("p");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->size(), 1u);
  EXPECT_EQ(h->back().operation, Operation::kPurge);
}

TEST_F(KvWriterTest, ServerDownMakesWritesUnavailableOrTimeoutAndReadsStillWork) {
  auto rev = replicas_[0]->writer->Put("k", "v");
  ASSERT_TRUE(rev.ok());
  server_.Stop();
  KvWriter quick(replicas_[0]->js, "shared", replicas_[0]->loop.get(), replicas_[0]->bucket, 500ms);
  auto w = quick.Put("k", "w");
  EXPECT_TRUE(w.status().IsUnavailable() || w.status().IsTimeout()) << w.status().ToString();
  EXPECT_EQ(*replicas_[0]->bucket->Get("k"), "v");
}

}  // namespace
}  // namespace revkv::replication
