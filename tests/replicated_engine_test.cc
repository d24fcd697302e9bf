// Replication through the public API: engines opened with NatsOptions, each
// with its own store and connection, sharing buckets through one real
// nats-server.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/local_bucket.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

class ReplicatedEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }

  std::unique_ptr<Engine> OpenEngine(TempDir& dir, std::chrono::milliseconds write_timeout = 5s) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.nats.write_timeout = write_timeout;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  NatsServer server_;
  TempDir dir_a_, dir_b_;
};

// What nats.c's kvStore_PurgeDeletes does with DeleteMarkersOlderThan = -1,
// done as that client does it on the wire: a stream purge of each deleted
// key's subject. (nats.c 3.4.1's own function leaks every entry it does not
// purge, which the leak checker of the sanitizer build reports.)
natsStatus PurgeDeletedKeys(jsCtx* js, const std::string& bucket,
                            const std::vector<std::string>& keys) {
  natsStatus s = NATS_OK;
  for (const auto& key : keys) {
    const std::string subject = "$KV." + bucket + "." + key;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject.c_str();
    s = js_PurgeStream(js, ("KV_" + bucket).c_str(), &o, nullptr);
    if (s != NATS_OK) break;
  }
  return s;
}

TEST_F(ReplicatedEngineTest, TwoEnginesConvergeAndSyncMakesReadsCurrent) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("jobs", {.history = 3});
  auto bb = *b->OpenBucket("jobs");
  EXPECT_EQ(bb->history(), 3);  // bound to the stream A created
  auto rev = ba->Put("job.1", "queued");
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  EXPECT_EQ(*ba->Get("job.1"), "queued");  // read-your-writes
  ASSERT_TRUE(bb->Sync(5s).ok());
  auto seen = bb->GetEntry("job.1");
  ASSERT_TRUE(seen.ok()) << seen.status().ToString();
  EXPECT_EQ(seen->revision, *rev);
  EXPECT_EQ(seen->value, "queued");
}

// A Put retried with the same idempotency key (as after a Timeout) is stored
// once: the server deduplicates the Nats-Msg-Id within the stream's
// duplicate window and answers with the first revision, also to another
// engine sending the same id. A new id writes again; other writes refuse one.
TEST_F(ReplicatedEngineTest, PutsWithOneIdempotencyKeyAreStoredOnce) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("orders");
  auto bb = *b->OpenBucket("orders");
  auto first = ba->Put("order.1", "placed", {.idempotency_key = "req-7f3a"});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto again = ba->Put("order.1", "placed", {.idempotency_key = "req-7f3a"});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *first);
  auto elsewhere = bb->Put("order.1", "placed", {.idempotency_key = "req-7f3a"});
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status().ToString();
  EXPECT_EQ(*elsewhere, *first);
  ASSERT_TRUE(ba->Sync(5s).ok());
  EXPECT_EQ(ba->GetStatus().stream_last, *first) << "a repeat was stored";
  auto next = ba->Put("order.1", "shipped", {.idempotency_key = "req-80b1"});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, *first + 1);
  auto plain = ba->Put("order.1", "shipped");  // no key: every Put is stored
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, *next + 1);
  EXPECT_TRUE(ba->Update("order.1", "x", *plain, {.idempotency_key = "req-1"})
                  .status()
                  .IsInvalidArgument());
  EXPECT_TRUE(ba->Create("order.2", "x", {.idempotency_key = "req-2"}).status().IsInvalidArgument());
  EXPECT_TRUE(ba->Put("order.1", "x", {.idempotency_key = "has space"}).status().IsInvalidArgument());
  EXPECT_TRUE(
      ba->Put("order.1", "x", {.idempotency_key = std::string(257, 'k')}).status().IsInvalidArgument());
  // A local bucket checks the id and ignores it: its writes are never unknown.
  auto local = *a->OpenBucket("scratch", {.local_only = true});
  EXPECT_EQ(*local->Put("k", "v", {.idempotency_key = "req-9"}), 1u);
  EXPECT_EQ(*local->Put("k", "v", {.idempotency_key = "req-9"}), 2u);
  EXPECT_TRUE(local->Delete("k", std::nullopt, {.idempotency_key = "req-9"})
                  .status()
                  .IsInvalidArgument());
}

TEST_F(ReplicatedEngineTest, CasAndUpdateWithRetryAcrossEnginesLoseNothing) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("ctr");
  auto bb = *b->OpenBucket("ctr");
  auto r1 = ba->Put("k", "x");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(bb->Update("k", "y", *r1).ok());
  auto stale = ba->Update("k", "z", *r1);
  EXPECT_TRUE(stale.status().IsConflict()) << stale.status().ToString();

  constexpr int kPer = 50;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (Bucket* bucket : {ba.get(), bb.get()}) {
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, bucket] {
        for (int i = 0; i < kPer; ++i) {
          auto r = bucket->UpdateWithRetry("n", [](const std::optional<std::string>& cur) {
            return std::to_string(cur ? std::stol(*cur) + 1 : 1);
          });
          if (!r.ok()) ++errors;
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  ASSERT_TRUE(ba->Sync(5s).ok());
  ASSERT_TRUE(bb->Sync(5s).ok());
  EXPECT_EQ(std::stol(*ba->Get("n")), 4 * kPer);
  EXPECT_EQ(std::stol(*bb->Get("n")), 4 * kPer);
}

TEST_F(ReplicatedEngineTest, WatchSeesChangesFromOtherEngines) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("w");
  auto bb = *b->OpenBucket("w");
  auto watch = bb->Watch(">", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(watch.ok());
  auto rev = ba->Put("from.a", "hello");
  ASSERT_TRUE(rev.ok());
  auto e = (*watch)->Next(5s);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->key, "from.a");
  EXPECT_EQ(e->revision, *rev);
}

TEST_F(ReplicatedEngineTest, LocalOnlyBucketsStayLocal) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto la = *a->OpenBucket("private", {.local_only = true});
  ASSERT_TRUE(la->Put("k", "secret").ok());
  auto rb = *b->OpenBucket("private");
  ASSERT_TRUE(rb->Sync(5s).ok());
  EXPECT_TRUE(rb->Get("k").status().IsNotFound());
}

TEST_F(ReplicatedEngineTest, MismatchedSettingsAreListed) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->OpenBucket("cfg", {.history = 3}).ok());
  auto bad = b->OpenBucket("cfg", {.history = 5});
  ASSERT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_NE(bad.status().message().find("history 3 (asked 5)"), std::string_view::npos)
      << bad.status().message();
}

TEST_F(ReplicatedEngineTest, ServerDownWritesFailInTimeReadsWork) {
  auto a = OpenEngine(dir_a_, 500ms);
  ASSERT_TRUE(a);
  auto ba = *a->OpenBucket("down");
  ASSERT_TRUE(ba->Put("k", "v").ok());
  server_.Stop();
  const auto start = std::chrono::steady_clock::now();
  auto w = ba->Put("k", "w");
  EXPECT_TRUE(w.status().IsUnavailable() || w.status().IsTimeout()) << w.status().ToString();
  EXPECT_LT(testing::MsSince(start), 3000);
  EXPECT_EQ(*ba->Get("k"), "v");
}

TEST_F(ReplicatedEngineTest, StatusReportsLagWhileTheReplicaIsBehindAndConnection) {
  auto a = OpenEngine(dir_a_, 500ms);
  auto b = OpenEngine(dir_b_, 500ms);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("st");
  auto bb = *b->OpenBucket("st");
  auto first = ba->Put("k", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(bb->Sync(5s).ok());
  BucketStatus caught_up = bb->GetStatus();
  EXPECT_TRUE(caught_up.replicated);
  EXPECT_TRUE(caught_up.connected) << caught_up.error;
  EXPECT_EQ(caught_up.applied, *first);
  EXPECT_EQ(caught_up.stream_last, *first);
  EXPECT_EQ(caught_up.lag, 0u);
  EXPECT_EQ(caught_up.lag_time, 0ns);

  // Hold B's replica so that its apply loop cannot apply A's next writes:
  // B must then report exactly how far behind it is. (A local-only open of
  // the same name is the replica itself.)
  auto replica = std::dynamic_pointer_cast<engine::LocalBucket>(
      *b->OpenBucket("st", {.local_only = true}));
  ASSERT_TRUE(replica);
  uint64_t last = 0;
  BucketStatus behind;
  replica->RunWithWritesHeld([&](uint64_t) {
    std::this_thread::sleep_for(20ms);  // A's entries get later timestamps
    for (int i = 2; i <= 4; ++i) last = *ba->Put("k", std::to_string(i));
    behind = bb->GetStatus();
  });
  EXPECT_TRUE(behind.connected) << behind.error;
  EXPECT_EQ(behind.applied, *first);
  EXPECT_EQ(behind.stream_last, last);
  EXPECT_EQ(behind.lag, last - *first);
  ASSERT_TRUE(behind.lag_time.has_value());
  EXPECT_GE(*behind.lag_time, 20ms);
  EXPECT_LT(*behind.lag_time, 10s);

  ASSERT_TRUE(bb->Sync(5s).ok());
  EXPECT_EQ(bb->GetStatus().lag, 0u);

  server_.Stop();
  BucketStatus down = bb->GetStatus();
  EXPECT_FALSE(down.connected);
  EXPECT_EQ(down.applied, last);
  EXPECT_FALSE(down.stream_last.has_value());
  EXPECT_FALSE(down.lag.has_value());
  EXPECT_FALSE(down.error.empty());

  // A local bucket is its own source: no lag, not replicated.
  auto local = *a->OpenBucket("only_here", {.local_only = true});
  ASSERT_TRUE(local->Put("x", "y").ok());
  BucketStatus own = local->GetStatus();
  EXPECT_FALSE(own.replicated);
  EXPECT_EQ(own.applied, 1u);
  EXPECT_EQ(own.lag, 0u);
}

// The stream's last sequence can name a message that no longer exists: here
// the newest message was a delete marker that a purge of deletes removed.
// Sync must still complete, and the status show no lag.
TEST_F(ReplicatedEngineTest, SyncCompletesWhenTheStreamsLastMessageIsGone) {
  auto a = OpenEngine(dir_a_);
  ASSERT_TRUE(a);
  auto ba = *a->OpenBucket("gone");
  ASSERT_TRUE(ba->Put("x", "1").ok());
  ASSERT_TRUE(ba->Put("k", "2").ok());
  auto marker = ba->Delete("k");
  ASSERT_TRUE(marker.ok());

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  ASSERT_EQ(PurgeDeletedKeys(js, "gone", {"k"}), NATS_OK);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  // A new replica sees only "x"; the stream's last sequence is past it.
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(b);
  auto bb = *b->OpenBucket("gone");
  Status synced = bb->Sync(5s);
  ASSERT_TRUE(synced.ok()) << synced.ToString();
  EXPECT_EQ(*bb->Get("x"), "1");
  EXPECT_TRUE(bb->Get("k").status().IsNotFound());
  BucketStatus st = bb->GetStatus();
  ASSERT_TRUE(st.stream_last.has_value()) << st.error;
  EXPECT_GE(*st.stream_last, *marker);
  EXPECT_EQ(st.applied, *st.stream_last);
  EXPECT_EQ(st.lag, 0u);
  // And it keeps replicating after the jump.
  auto next = ba->Put("x", "3");
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(bb->Sync(5s).ok());
  EXPECT_EQ(bb->GetEntry("x")->revision, *next);
}

// Create tries the tombstone the replica holds first. If the server no
// longer holds any message of the key (its delete marker was purged), that
// CAS fails with "no message", and Create must still succeed; if another
// engine re-created the key, Create must say Exists.
TEST_F(ReplicatedEngineTest, CreateAfterATombstoneTheServerNoLongerHolds) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("tomb");
  auto bb = *b->OpenBucket("tomb");
  ASSERT_TRUE(ba->Put("k", "1").ok());
  ASSERT_TRUE(ba->Put("j", "1").ok());
  auto del_k = ba->Delete("k");
  auto del_j = ba->Delete("j");
  ASSERT_TRUE(del_k.ok() && del_j.ok());
  ASSERT_TRUE(bb->Sync(5s).ok());

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, js, "tomb"), NATS_OK);
  // "k" and "j" are gone from the server.
  ASSERT_EQ(PurgeDeletedKeys(js, "tomb", {"k", "j"}), NATS_OK);
  // B re-creates "j"; A's replica may still hold only the old tombstone.
  auto recreated = bb->Create("j", "b");
  ASSERT_TRUE(recreated.ok()) << recreated.status().ToString();

  auto created = ba->Create("k", "2");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(*ba->Get("k"), "2");
  kvEntry* e = nullptr;
  ASSERT_EQ(kvStore_Get(&e, kv, "k"), NATS_OK);
  EXPECT_EQ(kvEntry_Revision(e), *created);
  kvEntry_Destroy(e);

  auto lost = ba->Create("j", "a");
  EXPECT_TRUE(lost.status().IsExists()) << lost.status().ToString();
  EXPECT_EQ(lost.status().revision(), *recreated);
  EXPECT_EQ(*ba->Get("j"), "b");
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

// The server's max_age removes an entry without a message the replica could
// see, so the replica still shows it. UpdateWithRetry must then create the
// key (its mutate sees it absent), not give up on endless conflicts.
TEST_F(ReplicatedEngineTest, UpdateWithRetryCreatesAKeyThatMaxAgeRemovedBehindTheReplica) {
  auto a = OpenEngine(dir_a_);
  ASSERT_TRUE(a);
  auto ba = *a->OpenBucket("aging", {.max_age = 1s});
  ASSERT_TRUE(ba->Put("k", "41").ok());

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, js, "aging"), NATS_OK);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    kvEntry* e = nullptr;
    natsStatus st = kvStore_Get(&e, kv, "k");
    kvEntry_Destroy(e);
    gone = st == NATS_NOT_FOUND;
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  ASSERT_TRUE(gone) << "max_age never removed the entry";
  ASSERT_TRUE(ba->Get("k").ok()) << "the replica was expected to still show it";

  bool saw_absent = false;
  auto out = ba->UpdateWithRetry("k", [&](const std::optional<std::string>& cur) {
    saw_absent = !cur.has_value();
    return std::optional<std::string>(cur ? *cur + "+1" : "fresh");
  }, RetryPolicy{.max_attempts = 5});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(out->written);
  EXPECT_TRUE(saw_absent);
  EXPECT_EQ(*ba->Get("k"), "fresh");
}

// Fenced writes: refused on a replicated bucket whose lock lives in another
// bucket (two streams; replicated_fence_test covers a lock in the data's
// bucket), and on a local-only bucket checked against the replicated locks
// bucket's replica: the current token writes, a stale one does not.
TEST_F(ReplicatedEngineTest, FencedWritesAreForLocalOnlyBucketsAndUseTheReplicatedLock) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto shared = *a->OpenBucket("shared");
  auto mine = *a->OpenBucket("mine", {.local_only = true});
  auto lock = a->Acquire("job", 10s, 2s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const WriteOptions fenced{.fence = Fence{"job", (*lock)->fencing_token()}};

  auto refused = shared->Put("k", "v", fenced);
  EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
  EXPECT_TRUE(shared->Get("k").status().IsNotFound());

  auto ok = mine->Put("k", "v1", fenced);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const uint64_t old_token = (*lock)->fencing_token();
  ASSERT_TRUE((*lock)->Release().ok());
  // Another engine takes the lock: A's replica of the locks bucket sees it,
  // and A's old token no longer writes.
  auto other = b->Acquire("job", 10s, 2s);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto locks = *a->OpenBucket("locks");
  ASSERT_TRUE(locks->Sync(5s).ok());
  auto stale = mine->Put("k", "v2", WriteOptions{.fence = Fence{"job", old_token}});
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  EXPECT_EQ(*mine->Get("k"), "v1");
}

TEST_F(ReplicatedEngineTest, RecreatedBucketMakesTheReplicaResyncInsteadOfMerging) {
  {
    auto a = OpenEngine(dir_a_);
    ASSERT_TRUE(a);
    auto b = *a->OpenBucket("re");
    ASSERT_TRUE(b->Put("old.a", "1").ok());
    ASSERT_TRUE(b->Put("old.b", "2").ok());
  }
  // Another client deletes the bucket and recreates it with other content.
  uint64_t rev = 0;
  ASSERT_EQ(testing::RecreateKvBucket(server_.url(), "re", "new.c", "3", &rev), NATS_OK);

  auto a = OpenEngine(dir_a_);
  ASSERT_TRUE(a);
  auto b = *a->OpenBucket("re");
  ASSERT_TRUE(b->Sync(5s).ok());
  EXPECT_TRUE(b->Get("old.a").status().IsNotFound());
  EXPECT_TRUE(b->Get("old.b").status().IsNotFound());
  auto c = b->GetEntry("new.c");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->value, "3");
  EXPECT_EQ(c->revision, rev);
  EXPECT_EQ(b->LastRevision(), rev);
}

TEST_F(ReplicatedEngineTest, ReopenedReplicaKeepsItsDataAndResumes) {
  uint64_t last = 0;
  {
    auto a = OpenEngine(dir_a_);
    ASSERT_TRUE(a);
    auto b = *a->OpenBucket("keep");
    for (int i = 0; i < 5; ++i) last = *b->Put("k." + std::to_string(i), "v");
  }
  auto other = OpenEngine(dir_b_);
  ASSERT_TRUE(other);
  auto ob = *other->OpenBucket("keep");
  auto more = ob->Put("k.late", "w");
  ASSERT_TRUE(more.ok());
  auto a = OpenEngine(dir_a_);
  ASSERT_TRUE(a);
  auto b = *a->OpenBucket("keep");
  EXPECT_GE(b->LastRevision(), last);  // not wiped on reopen
  ASSERT_TRUE(b->Sync(5s).ok());
  EXPECT_EQ(*b->Get("k.late"), "w");
  EXPECT_EQ(*b->Get("k.0"), "v");
}

TEST_F(ReplicatedEngineTest, ServerRestartIsSurvivedWithoutMissingOrDuplicateEntries) {
  auto a = OpenEngine(dir_a_);
  auto b = OpenEngine(dir_b_);
  ASSERT_TRUE(a && b);
  auto ba = *a->OpenBucket("restart", {.history = 1});
  auto bb = *b->OpenBucket("restart");
  std::vector<uint64_t> acked;
  for (int i = 0; i < 20; ++i) acked.push_back(*ba->Put("before." + std::to_string(i), "x"));
  ASSERT_TRUE(server_.Restart()) << server_.error();
  // Writes resume once the connection is back; retry until it is.
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  for (int i = 0; i < 20; ++i) {
    while (true) {
      auto r = ba->Put("after." + std::to_string(i), "y");
      if (r.ok()) {
        acked.push_back(*r);
        break;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << r.status().ToString();
      std::this_thread::sleep_for(50ms);
    }
  }
  ASSERT_TRUE(bb->Sync(10s).ok());
  // Every acknowledged write is in the other replica, once, at its revision.
  auto changes = bb->ChangesSince(0, 1000);
  ASSERT_TRUE(changes.ok());
  std::vector<uint64_t> seen;
  for (const auto& e : *changes) seen.push_back(e.revision);
  EXPECT_EQ(seen, acked);
}

TEST(ReplicatedAuth, WrongCredentialsArePermissionDeniedAndRightOnesWork) {
  NatsServer server;
  server.AddArgs({"--user", "alice", "--pass", "s3cret"});
  ASSERT_TRUE(server.Start()) << server.error();
  TempDir dir;
  Options o;
  o.path = dir.path();
  o.nats.servers = {server.url()};
  o.nats.user = "alice";
  o.nats.password = "wrong";
  auto bad = Engine::Open(o);
  EXPECT_TRUE(bad.status().IsPermissionDenied()) << bad.status().ToString();
  o.nats.password = "s3cret";
  auto good = Engine::Open(o);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  auto b = (*good)->OpenBucket("auth");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE((*b)->Put("k", "v").ok());
}

TEST(ReplicatedAuth, WrongTokenIsPermissionDeniedAndTheRightOneWorks) {
  NatsServer server;
  server.AddArgs({"--auth", "t0ken-s3cret"});
  ASSERT_TRUE(server.Start()) << server.error();
  TempDir dir;
  Options o;
  o.path = dir.path();
  o.nats.servers = {server.url()};
  o.nats.token = "wrong";
  auto bad = Engine::Open(o);
  EXPECT_TRUE(bad.status().IsPermissionDenied()) << bad.status().ToString();
  o.nats.token = "t0ken-s3cret";
  auto good = Engine::Open(o);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  auto b = (*good)->OpenBucket("auth");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto put = (*b)->Put("k", "v");
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ((*b)->GetEntry("k")->revision, *put);
}

// TLS with a client certificate the server verifies. The certificates are
// made for the test with openssl: a CA, a server certificate for 127.0.0.1
// and a client certificate, all signed by that CA.
TEST(ReplicatedTls, ClientCertificateAndCaAreUsedAndRequired) {
  TempDir certs;
  const std::string d = certs.path();
  const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script =
      "cd '" + d + "' && exec >openssl.log 2>&1 && "
      "openssl req -x509" + key + " -keyout ca.key -out ca.pem -days 2 -subj /CN=revkv-test-ca && "
      "openssl req" + key + " -keyout server.key -out server.csr -subj /CN=127.0.0.1 && "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
      "-days 2 -extfile server.ext && "
      "openssl req" + key + " -keyout client.key -out client.csr -subj /CN=revkv-test-client && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
      "-days 2";
  ASSERT_EQ(std::system(script.c_str()), 0) << "openssl failed; see " << d << "/openssl.log";

  NatsServer server;
  server.AddArgs({"--tls", "--tlscert", d + "/server.pem", "--tlskey", d + "/server.key",
                  "--tlscacert", d + "/ca.pem", "--tlsverify"});
  ASSERT_TRUE(server.Start()) << server.error();
  TempDir dir;
  Options o;
  o.path = dir.path();
  o.nats.servers = {server.url()};
  o.nats.connect_timeout = 2s;

  // No client certificate: the server refuses the connection.
  o.nats.tls_ca = d + "/ca.pem";
  auto no_cert = Engine::Open(o);
  EXPECT_FALSE(no_cert.ok());
  EXPECT_TRUE(no_cert.status().IsPermissionDenied()) << no_cert.status().ToString();
  EXPECT_NE(no_cert.status().message().find("tls_cert"), std::string_view::npos)
      << no_cert.status().ToString();
  // A certificate but no CA to check the server's: refused on our side.
  o.nats.tls_ca.clear();
  o.nats.tls_cert = d + "/client.pem";
  o.nats.tls_key = d + "/client.key";
  auto no_ca = Engine::Open(o);
  EXPECT_FALSE(no_ca.ok());
  EXPECT_TRUE(no_ca.status().IsPermissionDenied()) << no_ca.status().ToString();
  EXPECT_NE(no_ca.status().message().find("tls_ca"), std::string_view::npos)
      << no_ca.status().ToString();
  // A certificate file that does not exist: a clear error, no crash.
  o.nats.tls_ca = d + "/ca.pem";
  o.nats.tls_cert = d + "/missing.pem";
  auto missing = Engine::Open(o);
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsInvalidArgument()) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("missing.pem"), std::string_view::npos)
      << missing.status().ToString();

  o.nats.tls_cert = d + "/client.pem";
  auto good = Engine::Open(o);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  auto b = (*good)->OpenBucket("tls");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto put = (*b)->Put("k", "over tls");
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(*(*b)->Get("k"), "over tls");
}

TEST(ReplicatedAuth, DeniedPublishIsPermissionDeniedWithinTheWriteTimeout) {
  TempDir conf_dir;
  const std::string conf = conf_dir.Sub("auth.conf");
  {
    std::ofstream out(conf);
    out << "authorization {\n  users = [\n"
           "    { user: bob, password: pw, permissions: { publish: { deny: [\"$KV.secret.>\"] } } }\n"
           "  ]\n}\n";
  }
  NatsServer server;
  server.AddArgs({"-c", conf});
  ASSERT_TRUE(server.Start()) << server.error();
  TempDir dir;
  Options o;
  o.path = dir.path();
  o.nats.servers = {server.url()};
  o.nats.user = "bob";
  o.nats.password = "pw";
  o.nats.write_timeout = 500ms;
  auto e = Engine::Open(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto open = (*e)->OpenBucket("open");
  ASSERT_TRUE(open.ok()) << open.status().ToString();
  EXPECT_TRUE((*open)->Put("k", "v").ok());
  auto secret = (*e)->OpenBucket("secret");
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  const auto start = std::chrono::steady_clock::now();
  auto w = (*secret)->Put("k", "v");
  EXPECT_TRUE(w.status().IsPermissionDenied()) << w.status().ToString();
  EXPECT_LT(testing::MsSince(start), 3000);
}

TEST_F(ReplicatedEngineTest, ServerVersionIsTheConnectedServersAndLocalEnginesHaveNone) {
  const std::string line = NatsServer::Version();  // "nats-server: v2.15.1"
  const std::string expected = line.substr(line.find(" v") + 2);
  auto a = OpenEngine(dir_a_);
  auto version = a->ServerVersion();
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, expected);
  // Once the connection has noticed the server is gone, there is none to name.
  server_.Stop();
  auto down = a->ServerVersion();
  for (const auto until = std::chrono::steady_clock::now() + 5s;
       down.ok() && std::chrono::steady_clock::now() < until; down = a->ServerVersion()) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(down.status().IsUnavailable()) << down.status().ToString();

  Options local;
  local.path = dir_b_.path();
  auto b = Engine::Open(local);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE((*b)->ServerVersion().status().IsInvalidArgument());
}

TEST_F(ReplicatedEngineTest, UnreachableServerIsUnavailableAtOpen) {
  const std::string url = server_.url();
  server_.Stop();
  Options o;
  o.path = dir_a_.path();
  o.nats.servers = {url};
  o.nats.connect_timeout = 500ms;
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.status().IsUnavailable()) << e.status().ToString();
  o.nats.token = "t";
  o.nats.user = "u";
  EXPECT_TRUE(Engine::Open(o).status().IsInvalidArgument());
}

}  // namespace
}  // namespace revkv
