// Fenced writes that the server enforces (nats-server 2.11+): with the lock
// kept in the data's own bucket (Options::locks_bucket), a fenced Put,
// Delete or Purge is one publish that the server stores only if the lock's
// record is still the one the writer's token names. Current tokens write,
// stale and released ones are LockLost with nothing written, renewals racing
// the writes never make them fail, and what cannot be fenced is refused.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "engine/record_codec.h"
#include "replication/replicated_bucket.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

bool ServerHasFence() { return NatsServer::VersionAtLeast(2, 11); }

WriteOptions Fenced(const Lock& lock) {
  return WriteOptions{.fence = Fence{lock.name(), lock.fencing_token()}};
}

class replicated_fence : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }

  // An engine whose locks live in the data bucket "jobs".
  std::unique_ptr<Engine> OpenEngine(const TempDir& dir, const std::string& locks = "jobs") {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.locks_bucket = locks;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  NatsServer server_;
};

TEST_F(replicated_fence, CurrentTokenWritesAndAHolderThatLostTheLockWritesNothing) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto ja = a->OpenBucket("jobs");
  auto jb = b->OpenBucket("jobs");
  ASSERT_TRUE(ja.ok() && jb.ok()) << ja.status().ToString() << jb.status().ToString();
  auto held = a->Acquire("lock.L", 1s, 5s, {.auto_renew = false});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  const WriteOptions mine = Fenced(**held);
  ASSERT_TRUE((*ja)->Put("job.1", "a", mine).ok());
  ASSERT_TRUE((*ja)->Put("job.2", "a", mine).ok());
  auto del = (*ja)->Delete("job.2", std::nullopt, mine);
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  auto purge = (*ja)->Purge("job.3", std::nullopt, mine);
  ASSERT_TRUE(purge.ok()) << purge.status().ToString();

  // A stops renewing; B takes the lock over after its lease and writes.
  auto taken = b->Acquire("lock.L", 10s, 10s);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_GT((*taken)->fencing_token(), (*held)->fencing_token());
  ASSERT_TRUE((*jb)->Put("job.1", "b", Fenced(**taken)).ok());
  const uint64_t last = (*jb)->LastRevision();

  auto stale_put = (*ja)->Put("job.1", "stale", mine);
  EXPECT_TRUE(stale_put.status().IsLockLost()) << stale_put.status().ToString();
  auto stale_del = (*ja)->Delete("job.1", std::nullopt, mine);
  EXPECT_TRUE(stale_del.status().IsLockLost()) << stale_del.status().ToString();
  for (auto* bucket : {&*ja, &*jb}) {
    ASSERT_TRUE((*bucket)->Sync(5s).ok());
    EXPECT_EQ(*(*bucket)->Get("job.1"), "b");
    EXPECT_EQ((*bucket)->LastRevision(), last) << "a refused fenced write was stored";
  }
}

TEST_F(replicated_fence, ReleasedLocksTokenIsLockLost) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto jobs = a->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok());
  auto held = a->Acquire("lock.L", 5s, 5s);
  ASSERT_TRUE(held.ok());
  const WriteOptions fence = Fenced(**held);
  ASSERT_TRUE((*held)->Release().ok());
  auto late = (*jobs)->Put("job.1", "late", fence);
  EXPECT_TRUE(late.status().IsLockLost()) << late.status().ToString();
  EXPECT_TRUE((*jobs)->Get("job.1").status().IsNotFound());
}

// Renewals move the lock record every lease/3; each fenced write that meets
// one catches up and retries instead of failing. Four writer threads keep
// writes in flight at every moment, so renewals land between a write's read
// of the record and its publish.
TEST_F(replicated_fence, FencedWritesRacingRenewalsNeverFailSpuriously) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto jobs = a->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok());
  auto held = a->Acquire("lock.L", 300ms, 5s);
  ASSERT_TRUE(held.ok());
  const WriteOptions fence = Fenced(**held);
  // Counts the renewals: each rewrites the lock's record.
  auto renewals = (*jobs)->Watch("lock.L", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(renewals.ok());
  // The first Next() switches the watch to the live feed, which keeps every
  // revision (a catch-up from the log would see only the latest).
  ASSERT_TRUE((*renewals)->Next(0ms).status().IsTimeout());
  std::atomic<int> failed{0}, writes{0};
  std::mutex mu;
  std::string first_failure;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      // At least 1,000 writes in all, and a second: ten renewals or more.
      for (int i = 0; writes.load() < 1000 || std::chrono::steady_clock::now() < start + 1s; ++i) {
        auto r = (*jobs)->Put("job." + std::to_string(t) + "." + std::to_string(i % 10),
                              std::to_string(i), fence);
        ++writes;
        if (!r.ok() && failed++ == 0) {
          std::lock_guard<std::mutex> lock(mu);
          first_failure = r.status().ToString();
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failed.load(), 0) << first_failure << " (" << failed.load() << " of "
                              << writes.load() << " failed)";
  EXPECT_FALSE((*held)->lost());
  int renewed = 0;
  while ((*renewals)->Next(0ms).ok()) ++renewed;
  EXPECT_GE(renewed, 5) << "too few renewals to race with";
}

// The retry itself, made to happen: another client rewrites the lock's
// record (as a renewal does) while the holder's replica is held from
// applying anything, so the holder's fenced write expects the old record
// and the server refuses it. Once the replica catches up, the write is
// retried: with the same token in the record it succeeds, with another it
// is LockLost.
TEST_F(replicated_fence, RecordRewrittenUnderTheWriterIsRetriedOrLockLostByToken) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto jobs = a->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok());
  auto* replicated = dynamic_cast<replication::ReplicatedBucket*>(jobs->get());
  ASSERT_NE(replicated, nullptr);
  auto held = a->Acquire("lock.L", 60s, 5s, {.auto_renew = false});
  ASSERT_TRUE(held.ok());
  const uint64_t token = (*held)->fencing_token();
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  // Rewrites the record on the server (stored once the flush returns) while
  // the replica applies nothing, then writes through the holder.
  auto write_under_rewrite = [&](uint64_t record_token, const std::string& value) {
    Result<uint64_t> out = Status::Unavailable("not run");
    std::thread writer;
    replicated->replica()->RunWithWritesHeld([&](uint64_t) {
      const std::string record =
          engine::EncodeLockRecord({"other/client", 60'000'000'000, 0, record_token});
      EXPECT_EQ(natsConnection_Publish(nc, "$KV.jobs.lock.L", record.data(),
                                       static_cast<int>(record.size())),
                NATS_OK);
      EXPECT_EQ(natsConnection_Flush(nc), NATS_OK);
      writer = std::thread([&] { out = (*jobs)->Put("job.1", value, Fenced(**held)); });
      std::this_thread::sleep_for(100ms);  // its first attempt meets the stale record
    });
    writer.join();
    return out;
  };
  for (int i = 0; i < 10; ++i) {
    auto w = write_under_rewrite(token, std::to_string(i));
    ASSERT_TRUE(w.ok()) << "round " << i << ": " << w.status().ToString();
  }
  auto lost = write_under_rewrite(token + 1'000'000, "stale");
  EXPECT_TRUE(lost.status().IsLockLost()) << lost.status().ToString();
  ASSERT_TRUE((*jobs)->Sync(5s).ok());
  EXPECT_EQ(*(*jobs)->Get("job.1"), "9");
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

// A writer whose replica has not yet seen the acquisition (another process
// took the lock and passed the token on) is not told LockLost: it catches up
// with the lock's record on the server first, then writes.
TEST_F(replicated_fence, ReplicaThatHasNotSeenTheAcquisitionYetCatchesUpAndWrites) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto ja = a->OpenBucket("jobs");
  auto jb = b->OpenBucket("jobs");
  ASSERT_TRUE(ja.ok() && jb.ok());
  auto* replicated = dynamic_cast<replication::ReplicatedBucket*>(jb->get());
  ASSERT_NE(replicated, nullptr);
  Result<std::unique_ptr<Lock>> held = Status::Unavailable("not run");
  Result<uint64_t> written = Status::Unavailable("not run");
  std::thread writer;
  replicated->replica()->RunWithWritesHeld([&](uint64_t) {
    held = a->Acquire("lock.L", 10s, 5s);
    ASSERT_TRUE(held.ok()) << held.status().ToString();
    writer = std::thread([&] { written = (*jb)->Put("job.1", "b", Fenced(**held)); });
    std::this_thread::sleep_for(100ms);  // B's replica cannot apply the lock's record yet
  });
  if (writer.joinable()) writer.join();
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  ASSERT_TRUE((*ja)->Sync(5s).ok());
  EXPECT_EQ(*(*ja)->Get("job.1"), "b");
}

// A lock kept in its data's bucket through LockOptions, on an engine whose
// other locks live in the default bucket: its fence() writes, is refused
// for another bucket, and excludes another engine's holder.
TEST_F(replicated_fence, LockOptionsPutOneLockInTheBucketOfItsData) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da, db;
  auto a = OpenEngine(da, "locks");
  auto b = OpenEngine(db, "locks");
  ASSERT_TRUE(a && b);
  auto jobs = a->OpenBucket("jobs");
  auto other = a->OpenBucket("other");
  ASSERT_TRUE(jobs.ok() && other.ok());
  auto held = a->Acquire("lock.L", 5s, 5s, {.locks_bucket = "jobs"});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ((*held)->fence().locks_bucket, "jobs");
  auto put = (*jobs)->Put("job.1", "a", {.fence = (*held)->fence()});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  auto elsewhere = (*other)->Put("job.1", "a", {.fence = (*held)->fence()});
  EXPECT_TRUE(elsewhere.status().IsInvalidArgument()) << elsewhere.status().ToString();
  EXPECT_NE(elsewhere.status().ToString().find("'jobs'"), std::string::npos);
  EXPECT_EQ(b->TryAcquire("lock.L", 5s, {.locks_bucket = "jobs"}).status().code(), Code::kBusy);
  auto default_bucket = b->TryAcquire("lock.L", 5s);  // a different lock: bucket "locks"
  EXPECT_TRUE(default_bucket.ok()) << default_bucket.status().ToString();
}

// What the fence rests on, asked of the server with raw nats.c: a publish
// whose lock record has moved past the expected sequence is refused (10071,
// naming the record's sequence), and the stored fenced writes carry the
// headers that asked for the check.
TEST_F(replicated_fence, TheServerRefusesAPublishWhoseLockRecordMoved) {
  if (!ServerHasFence()) GTEST_FAIL() << "runs on 2.11+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto jobs = a->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok());
  auto held = a->Acquire("lock.L", 5s, 5s);
  ASSERT_TRUE(held.ok());
  auto written = (*jobs)->Put("job.1", "v", Fenced(**held));
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  const uint64_t record = (*jobs)->GetEntry("lock.L")->revision;

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(testing::ConnectClient(server_.url(), &nc, &js), NATS_OK);
  natsMsg* stored = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_GetLastMsg(&stored, js, "KV_jobs", "$KV.jobs.job.1", nullptr, &jerr), NATS_OK);
  const char* subject = nullptr;
  const char* expected = nullptr;
  EXPECT_EQ(natsMsgHeader_Get(stored, "Nats-Expected-Last-Subject-Sequence-Subject", &subject),
            NATS_OK);
  EXPECT_EQ(natsMsgHeader_Get(stored, "Nats-Expected-Last-Subject-Sequence", &expected), NATS_OK);
  EXPECT_STREQ(subject, "$KV.jobs.lock.L");
  EXPECT_EQ(std::string(expected != nullptr ? expected : ""), std::to_string(record));
  natsMsg_Destroy(stored);

  natsMsg* msg = nullptr;
  ASSERT_EQ(natsMsg_Create(&msg, "$KV.jobs.job.1", nullptr, "x", 1), NATS_OK);
  ASSERT_EQ(natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence",
                              std::to_string(record - 1).c_str()),
            NATS_OK);
  ASSERT_EQ(natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence-Subject",
                              "$KV.jobs.lock.L"),
            NATS_OK);
  jsPubAck* ack = nullptr;
  jerr = static_cast<jsErrCode>(0);
  EXPECT_NE(js_PublishMsg(&ack, js, msg, nullptr, &jerr), NATS_OK);
  EXPECT_EQ(jerr, JSStreamWrongLastSequenceErr);
  jsPubAck_Destroy(ack);
  natsMsg_Destroy(msg);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  EXPECT_EQ(*(*jobs)->Get("job.1"), "v");
}

TEST_F(replicated_fence, WhatTheServerCannotFenceIsInvalidArgument) {
  TempDir da, dl;
  auto a = OpenEngine(da);
  auto other = OpenEngine(dl, "locks");  // locks in their own bucket
  ASSERT_TRUE(a && other);
  auto jobs = a->OpenBucket("jobs");
  auto jobs_other = other->OpenBucket("jobs");
  ASSERT_TRUE(jobs.ok() && jobs_other.ok());
  auto held = a->Acquire("lock.L", 5s, 5s);
  auto held_other = other->Acquire("L", 5s, 5s);
  ASSERT_TRUE(held.ok() && held_other.ok());
  const WriteOptions fence = Fenced(**held);
  if (!ServerHasFence()) {
    auto put = (*jobs)->Put("job.1", "v", fence);
    EXPECT_TRUE(put.status().IsInvalidArgument()) << put.status().ToString();
    EXPECT_NE(put.status().ToString().find("2.11.0"), std::string::npos) << put.status().ToString();
    return;
  }
  auto elsewhere = (*jobs_other)->Put("job.1", "v", Fenced(**held_other));
  EXPECT_TRUE(elsewhere.status().IsInvalidArgument()) << elsewhere.status().ToString();
  auto cas = (*jobs)->Update("job.1", "v", 0, fence);
  EXPECT_TRUE(cas.status().IsInvalidArgument()) << cas.status().ToString();
  auto create = (*jobs)->Create("job.1", "v", fence);
  EXPECT_TRUE(create.status().IsInvalidArgument()) << create.status().ToString();
  auto own = (*jobs)->Put("lock.L", "v", fence);
  EXPECT_TRUE(own.status().IsInvalidArgument()) << own.status().ToString();
  EXPECT_TRUE((*jobs)->Get("job.1").status().IsNotFound());
  EXPECT_FALSE((*held)->lost());
}

}  // namespace
}  // namespace revkv
