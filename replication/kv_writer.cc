#include "replication/kv_writer.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "engine/expiry.h"
#include "engine/record_codec.h"
#include "engine/txn_rules.h"
#include "replication/capabilities.h"
#include "replication/jetstream_api.h"
#include "replication/kv_stream.h"
#include "replication/nats_status.h"
#include "replication/nats_ttl.h"
#include "revkv/validation.h"

namespace revkv::replication {
namespace {

// The subject's current sequence named in a "wrong last sequence: N" error.
uint64_t SequenceInError() {
  const char* text = nats_GetLastError(nullptr);
  if (text == nullptr) return 0;
  const char* at = std::strstr(text, "wrong last sequence: ");
  if (at == nullptr) return 0;
  return std::strtoull(at + std::strlen("wrong last sequence: "), nullptr, 10);
}

}  // namespace

natsStatus BuildKvMessage(natsMsg** out, const std::string& subject, Operation op,
                          std::string_view value, std::chrono::seconds ttl, const char* reply) {
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), reply, value.data(),
                                static_cast<int>(value.size()));
  if (s == NATS_OK && op == Operation::kDelete) s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
  if (s == NATS_OK && op == Operation::kPurge) {
    s = natsMsgHeader_Set(msg, "KV-Operation", "PURGE");
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Rollup", "sub");
  }
  if (s == NATS_OK && ttl.count() > 0) {
    s = natsMsgHeader_Set(msg, kNatsTtlHeader, FormatNatsTtl(ttl).c_str());
  }
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    return s;
  }
  *out = msg;
  return NATS_OK;
}

namespace {

// A batch id no other batch in flight has (the server allows 64 characters).
std::string NewBatchId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  char id[40];
  std::snprintf(id, sizeof(id), "revkv-%016llx%016llx",
                static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random()));
  return id;
}

}  // namespace

KvWriter::KvWriter(jsCtx* js, std::string bucket, ApplyLoop* loop,
                   std::shared_ptr<Bucket> replica,
                   std::chrono::milliseconds write_timeout, const NatsConnection* conn)
    : js_(js),
      bucket_(std::move(bucket)),
      prefix_(KvSubjectPrefix(bucket_)),
      loop_(loop),
      replica_(std::move(replica)),
      write_timeout_(write_timeout),
      conn_(conn) {}

Status KvWriter::CheckKeyAndValue(std::string_view key, std::string_view value) const {
  if (Status s = ValidateKey(key); !s.ok()) return s;
  return engine::CheckValueSize(Describe(key), value.size(), replica_->max_value_size());
}

Status KvWriter::WrongRevision(std::string_view key, uint64_t expected, uint64_t current) const {
  return engine::WrongRevisionConflict(Describe(key), expected, current);
}

Status KvWriter::InFlightConflict(std::string_view key) const {
  // Nothing was stored, and which revision wins is not known yet.
  return Status::ConflictRevisionUnknown(
      "another compare-and-swap on key '" + std::string(key) + "' of bucket '" + bucket_ +
      "' was in flight, so the clustered stream refused this one (JetStream error 10164) "
      "without naming the current revision; sync the replica, re-read the key and retry");
}

Entry OwnEntry(Operation op, std::string_view key, std::string_view value,
               std::chrono::seconds ttl, uint64_t revision, int64_t created_ns) {
  Entry e;
  e.key.assign(key);
  e.operation = op;
  if (op == Operation::kPut) e.value.assign(value);
  e.revision = revision;
  e.created_ns = created_ns;
  e.ttl_ns = std::chrono::nanoseconds(ttl).count();
  return e;
}

Status KvWriter::CheckFence(std::string_view key, const Fence& fence) {
  if (Status s = ValidateKey(fence.lock); !s.ok()) {
    return Status::InvalidArgument("fence names a bad lock: " + std::string(s.message()));
  }
  if (key == fence.lock) {
    return Status::InvalidArgument("a fenced write cannot target its own lock's record '" +
                                   fence.lock + "'; locks change only through Acquire and Release");
  }
  return Status::OK();
}

Status KvWriter::PreCheck(std::string_view key, uint64_t expected) {
  // Only a replica that already holds a newer revision of the key proves the
  // CAS cannot succeed; one that is behind proves nothing.
  auto entry = replica_->GetEntry(key);
  uint64_t seen = entry.ok() ? entry->revision : entry.status().revision();
  if (seen > expected) {
    return engine::WrongRevisionConflict(Describe(key), expected, seen, /*at_least=*/true);
  }
  return Status::OK();
}

Result<uint64_t> KvWriter::Publish(Operation op, std::string_view key, std::string_view value,
                                   Expect expect, uint64_t last_sequence, ms timeout, sec ttl,
                                   const std::string* fence_subject, const std::string* msg_id) {
  if (Status s = CheckKeyAndValue(key, value); !s.ok()) return s;
  const std::string subject = prefix_ + std::string(key);
  natsMsg* msg = nullptr;
  natsStatus s = BuildKvMessage(&msg, subject, op, value, ttl);
  if (s == NATS_OK && fence_subject != nullptr) {
    s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence",
                          std::to_string(last_sequence).c_str());
    if (s == NATS_OK) {
      s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence-Subject",
                            fence_subject->c_str());
    }
  }
  if (s != NATS_OK) {
    if (msg != nullptr) natsMsg_Destroy(msg);
    return FromNats(s, "building the message for key '" + std::string(key) + "'");
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout.count();
  if (expect == Expect::kNoMessage) po.ExpectNoMessage = true;
  if (expect == Expect::kLastSequence) po.ExpectLastSubjectSeq = last_sequence;
  // A repeat within the duplicate window is stored once; its ack names the
  // first one's sequence (and says Duplicate), which is the revision.
  if (msg_id != nullptr && !msg_id->empty()) po.MsgId = msg_id->c_str();
  jsPubAck* ack = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const auto start = std::chrono::steady_clock::now();
  const uint64_t denials_before = conn_ != nullptr ? conn_->permission_errors() : 0;
  // A publish that certainly stored nothing (no leader to take it during an
  // election, or one shedding load) goes out again until the deadline.
  auto pause = std::chrono::milliseconds(10);
  int64_t sent_ns = 0;
  while (true) {
    sent_ns = engine::WallClockNs();
    s = js_PublishMsg(&ack, js_, msg, &po, &jerr);
    if (s == NATS_OK || !PublishNotStoredAndRetryable(s, jerr)) break;
    const auto left = std::chrono::ceil<ms>(start + timeout - std::chrono::steady_clock::now());
    if (left <= pause) break;
    jsPubAck_Destroy(ack);
    ack = nullptr;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(250));
    po.MaxWait = (left - pause).count();
    jerr = static_cast<jsErrCode>(0);
  }
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    jsPubAck_Destroy(ack);
    if (jerr == JSStreamWrongLastSequenceErr) {
      return WrongRevision(key, last_sequence, SequenceInError());
    }
    if (static_cast<int>(jerr) == kJsWrongLastSequenceInFlight) return InFlightConflict(key);
    if (s == NATS_TIMEOUT && conn_ != nullptr &&
        conn_->PermissionDeniedSince(denials_before, subject)) {
      return Status::PermissionDenied("the server denied publishing to '" + subject +
                                      "'; grant the user publish rights on bucket '" + bucket_ +
                                      "'");
    }
    const std::string what = "writing key '" + std::string(key) + "' of bucket '" + bucket_ + "'";
    if (s == NATS_ERR && static_cast<int>(jerr) == 0) {
      // The server answered with an error that has no JetStream code: the
      // stream leader could not propose the message (it lost leadership, or
      // its log failed). Like a timeout, the outcome is not known for sure.
      return Status::Unavailable(std::string(FromNats(s, what).message()) +
                                 "; the stream's leader could not take the write (a leader "
                                 "change?); Sync and re-read before retrying a Put");
    }
    return FromNats(s, what, jerr);
  }
  const uint64_t revision = ack->Sequence;
  const bool duplicate = ack->Duplicate;
  jsPubAck_Destroy(ack);
  // Own-write apply: the replica takes the write at once if nothing comes
  // before it, timed halfway through the round trip until the consumer
  // brings the server's time. A duplicate's stored message is the first
  // one's, which may differ: the consumer brings it.
  if (!duplicate) {
    const int64_t acked_ns = engine::WallClockNs();
    if (loop_->OfferOwnWrites(
            {OwnEntry(op, key, value, ttl, revision, sent_ns + (acked_ns - sent_ns) / 2)})) {
      return revision;  // the replica shows it
    }
  }
  // Read-your-writes: wait for the replica, but an acknowledged write is a
  // success even if the replica is slow (the caller can Sync).
  WaitOwnWrite(key, revision, start + timeout);
  return revision;
}

uint64_t KvWriter::ReplicaRevision(std::string_view key) {
  auto entry = replica_->GetEntry(key);
  return entry.ok() ? entry->revision : entry.status().revision();
}

void KvWriter::WaitOwnWrite(std::string_view key, uint64_t revision,
                            std::chrono::steady_clock::time_point deadline) {
  if (!loop_->WaitApplied(revision, deadline).ok()) return;
  // Applied up to the revision, the replica may still not show it: a
  // replica behind a history-1 stream passes messages the server replaced
  // (the key written again) before its consumer delivered them, and shows
  // the key's later message only when that arrives.
  while (ReplicaRevision(key) < revision) {
    if (!loop_->WaitApplied(loop_->applied() + 1, deadline).ok()) return;
  }
}

Result<uint64_t> KvWriter::Put(std::string_view key, std::string_view value, ms timeout,
                               sec ttl, const std::string& msg_id) {
  return Publish(Operation::kPut, key, value, Expect::kNothing, 0, Effective(timeout), ttl,
                 nullptr, &msg_id);
}

Result<uint64_t> KvWriter::Update(std::string_view key, std::string_view value,
                                  uint64_t expected, ms timeout, sec ttl) {
  if (Status s = PreCheck(key, expected); !s.ok()) return s;
  return Publish(Operation::kPut, key, value,
                 expected == 0 ? Expect::kNoMessage : Expect::kLastSequence, expected,
                 Effective(timeout), ttl);
}

Result<uint64_t> KvWriter::Create(std::string_view key, std::string_view value, ms timeout,
                                  sec ttl) {
  return CreateRounds(key, Effective(timeout), [&](uint64_t tombstone, ms left) {
    return Publish(Operation::kPut, key, value,
                   tombstone == 0 ? Expect::kNoMessage : Expect::kLastSequence, tombstone, left,
                   ttl);
  });
}

Result<uint64_t> KvWriter::FencedCreate(std::string_view key, std::string_view value,
                                        const Fence& fence, ms timeout, sec ttl) {
  return CreateRounds(key, Effective(timeout), [&](uint64_t tombstone, ms left) {
    return FencedCas(Operation::kPut, key, value, tombstone, fence, left, ttl);
  });
}

Result<uint64_t> KvWriter::CreateRounds(
    std::string_view key, ms timeout,
    const std::function<Result<uint64_t>(uint64_t, ms)>& attempt) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Create is a CAS: on "no message" for a key the server has never seen
  // (or no longer holds), on the tombstone's revision for a deleted one;
  // never a blind write. A tombstone the replica already holds is tried
  // first (a lock's name after its release, say), which saves the round trip
  // a "no message" attempt would lose. A live key in the replica proves
  // nothing: it may have been deleted since.
  auto seen = replica_->GetEntry(key);
  uint64_t tombstone = !seen.ok() && seen.status().IsNotFound() ? seen.status().revision() : 0;
  uint64_t current = 0;
  // Each round learns the key's newer state; racing creators on a clustered
  // stream may need several (10164 names no revision).
  constexpr int kRounds = 16;
  for (int round = 0; round < kRounds; ++round) {
    const auto left = std::chrono::ceil<ms>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Timeout("creating key '" + std::string(key) + "' of bucket '" + bucket_ +
                             "' took longer than " + std::to_string(timeout.count()) + " ms");
    }
    auto written = attempt(tombstone, left);
    if (written.ok() || !written.status().IsConflict()) return written;
    if (written.status().revision_known()) {
      current = written.status().revision();
    } else {
      // Another CAS on the key was in flight: ask the server where it is now.
      auto last = ServerRevision(key, deadline);
      if (!last.ok()) return last.status();
      current = *last;
    }
    if (current == 0) {  // the server holds no message of the key
      tombstone = 0;
      continue;
    }
    // The key's last message is `current`: live means Exists, a tombstone
    // means one more CAS, on it.
    if (Status s = loop_->WaitApplied(current, deadline); !s.ok()) return s;
    auto entry = replica_->GetEntry(key);
    if (entry.ok()) {
      return Status::Exists("key '" + std::string(key) + "' of bucket '" + bucket_ +
                                "' exists at revision " + std::to_string(entry->revision) +
                                "; use Update with that revision to change it",
                            entry->revision);
    }
    if (!entry.status().IsNotFound()) return entry.status();
    tombstone = entry.status().revision();
  }
  return Status::Exists("key '" + std::string(key) + "' of bucket '" + bucket_ +
                            "' was written by someone else first, at revision " +
                            std::to_string(current),
                        current);
}

Result<Entry> KvWriter::FenceRecord(const Fence& fence,
                                    std::chrono::steady_clock::time_point deadline,
                                    bool* caught_up) {
  while (true) {
    auto record = replica_->GetEntry(fence.lock);
    if (!record.ok() && !record.status().IsNotFound()) return record.status();
    Status s = engine::CheckFenceRecord(fence, record.ok(), record.ok() ? record->revision : 0,
                                        record.ok() ? std::string_view(record->value) : "");
    if (s.ok()) return std::move(*record);
    // Only a replica that has caught up with the lock's record as the
    // server had it after the write began proves the lock lost. Before, it
    // may simply not have seen the acquisition yet (a process that just
    // started, say).
    if (!s.IsLockLost() || *caught_up) return s;
    *caught_up = true;
    if (Status c = CatchUpKey(fence.lock, deadline); !c.ok()) return c;
  }
}

Result<uint64_t> KvWriter::FencedWrite(Operation op, std::string_view key, std::string_view value,
                                       const Fence& fence, ms timeout, sec ttl) {
  if (Status s = CheckFence(key, fence); !s.ok()) return s;
  timeout = Effective(timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string lock_subject = prefix_ + fence.lock;
  // Each round sees the lock record one renewal further; a holder renews
  // every lease/3, so a few rounds always suffice unless the lock is lost.
  constexpr int kRounds = 64;
  bool caught_up = false;
  for (int round = 0; round < kRounds; ++round) {
    auto record = FenceRecord(fence, deadline, &caught_up);
    if (!record.ok()) return record.status();
    const auto left = std::chrono::ceil<ms>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto written =
        Publish(op, key, value, Expect::kNothing, record->revision, left, ttl, &lock_subject);
    if (written.ok() || !written.status().IsConflict()) return written;
    // The lock record moved on the server: a renewal of ours, or another
    // holder. Let the replica catch up with it, then look again.
    Status caught = written.status().revision_known()
                        ? loop_->WaitApplied(written.status().revision(), deadline)
                        : CatchUpKey(fence.lock, deadline);
    if (!caught.ok()) return caught;
    caught_up = true;
  }
  return Status::Timeout("fenced write of key '" + std::string(key) + "' of bucket '" + bucket_ +
                         "': the record of lock '" + fence.lock +
                         "' kept moving for " + std::to_string(timeout.count()) +
                         " ms; nothing was written; try again");
}

Result<uint64_t> KvWriter::FencedUpdate(Operation op, std::string_view key,
                                        std::string_view value, uint64_t expected,
                                        const Fence& fence, ms timeout, sec ttl) {
  if (Status s = PreCheck(key, expected); !s.ok()) return s;
  return FencedCas(op, key, value, expected, fence, Effective(timeout), ttl);
}

Result<uint64_t> KvWriter::FencedCas(Operation op, std::string_view key, std::string_view value,
                                     uint64_t expected, const Fence& fence, ms timeout,
                                     sec ttl) {
  if (Status s = CheckFence(key, fence); !s.ok()) return s;
  auto written = CommitBatch({{op, std::string(key), std::string(value), expected, "", ttl}},
                             &fence, timeout);
  if (!written.ok()) return written.status();
  return written->back();
}

Status KvWriter::NameConflict(const std::vector<TxnMessage>& messages, const Status& failed,
                              std::chrono::steady_clock::time_point deadline) {
  size_t checks = 0;
  for (const TxnMessage& m : messages) checks += m.expected.has_value();
  const TxnMessage* only = nullptr;
  for (const TxnMessage& m : messages) {
    if (m.expected) only = &m;
  }
  auto conflict = [&](const TxnMessage& m, uint64_t current) {
    const std::string& key = m.check_key.empty() ? m.key : m.check_key;
    return engine::WrongRevisionConflict(Describe(key), *m.expected, current);
  };
  // One check: the server's number is its key's.
  if (checks == 1 && failed.revision_known()) return conflict(*only, failed.revision());
  // Several: the replica, once caught up with the stream, shows which moved.
  auto stream = ReadKvStream(js_, bucket_, conn_);
  if (stream.ok() && loop_->CatchUpTo(stream->last_sequence, deadline).ok()) {
    for (const TxnMessage& m : messages) {
      if (!m.expected) continue;
      auto entry = replica_->GetEntry(m.check_key.empty() ? m.key : m.check_key);
      const uint64_t current = entry.ok() ? entry->revision : entry.status().revision();
      if (current != *m.expected) return conflict(m, current);
    }
  }
  return Status::ConflictRevisionUnknown(
      "a key of the transaction on bucket '" + bucket_ + "' moved (" +
      std::string(failed.message()) + "); re-read the keys and retry");
}

Result<std::vector<uint64_t>> KvWriter::CommitBatch(const std::vector<TxnMessage>& messages,
                                                    const Fence* fence, ms timeout) {
  for (const TxnMessage& m : messages) {
    if (Status s = CheckKeyAndValue(m.key, m.value); !s.ok()) return s;
    if (fence != nullptr) {
      if (Status s = CheckFence(m.key, *fence); !s.ok()) return s;
    }
  }
  timeout = Effective(timeout);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  std::vector<std::string> subjects, check_subjects;
  for (const TxnMessage& m : messages) {
    subjects.push_back(prefix_ + m.key);
    check_subjects.push_back(m.check_key.empty() ? std::string() : prefix_ + m.check_key);
  }
  std::string what = messages.size() == 1 ? "write of key '" + messages[0].key + "'"
                                          : "transaction of " + std::to_string(messages.size()) +
                                                " writes";
  what += " on bucket '" + bucket_ + "'";
  if (fence != nullptr) what = "fenced " + what + " under lock '" + fence->lock + "'";
  const std::string lock_subject = fence != nullptr ? prefix_ + fence->lock : std::string();
  std::optional<engine::KeyGate::Pass> turn;
  if (fence != nullptr) turn.emplace(&fence_gate_, fence->lock);
  constexpr int kRounds = 64;  // as FencedWrite
  bool caught_up = false;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<BatchWrite> writes;
    std::string lock_value;
    uint64_t lock_revision = 0;
    if (fence != nullptr) {
      auto record = FenceRecord(*fence, deadline, &caught_up);
      if (!record.ok()) return record.status();
      // The record is written back as it is, its token made explicit: a
      // record's token is its own revision until then.
      auto values = engine::DecodeLockRecord(record->value, "lock record '" + fence->lock + "'");
      if (!values.ok()) return values.status();
      values->token = fence->token;
      lock_value = engine::EncodeLockRecord(*values);
      lock_revision = record->revision;
      // It keeps its TTL, so that an abandoned lock still expires.
      const sec lock_ttl =
          record->ttl_ns > 0 ? std::chrono::ceil<sec>(std::chrono::nanoseconds(record->ttl_ns))
                             : sec(0);
      writes.push_back({Operation::kPut, lock_subject, lock_value, lock_revision, lock_ttl});
    }
    for (size_t i = 0; i < messages.size(); ++i) {
      const TxnMessage& m = messages[i];
      writes.push_back({m.op, subjects[i], m.value, m.expected, m.ttl,
                        check_subjects[i].empty() ? nullptr : &check_subjects[i]});
    }
    const auto sent = std::chrono::steady_clock::now();
    const auto left = std::chrono::ceil<ms>(deadline - sent);
    if (left.count() <= 0) break;
    auto written = PublishAtomic(writes, what, left);
    if (written.ok()) {
      const uint64_t first = *written - writes.size() + 1;
      if (fence != nullptr) {
        std::shared_ptr<const RewriteObserver> observer;
        {
          std::lock_guard<std::mutex> lock(observer_mu_);
          observer = observer_;
        }
        if (observer != nullptr) (*observer)(fence->lock, fence->token, first, sent);
      }
      // Read-your-writes, as Publish.
      loop_->WaitApplied(*written, deadline).ok();
      std::vector<uint64_t> revisions;
      for (size_t i = 0; i < messages.size(); ++i) {
        revisions.push_back(*written - messages.size() + 1 + i);
      }
      return revisions;
    }
    if (!written.status().IsConflict()) return written.status();
    if (fence != nullptr) {
      // One of the checks failed, and the error does not say which: the
      // lock's record on the server tells first.
      auto lock_now = ServerRevision(fence->lock, deadline);
      if (!lock_now.ok()) return lock_now.status();
      if (*lock_now == 0) {
        return Status::LockLost("lock '" + fence->lock + "' has no record on the server any " +
                                "more (released, expired or purged); the " + what +
                                " wrote nothing");
      }
      if (*lock_now != lock_revision) {
        // A renewal of ours, or another holder: catch up and look again.
        if (Status c = loop_->WaitApplied(*lock_now, deadline); !c.ok()) return c;
        caught_up = true;
        continue;
      }
    }
    // A key's check failed (or, 10164, a write to one was in flight on a
    // clustered stream: the next round learns how it ended).
    if (!written.status().revision_known() && round + 1 < kRounds) {
      if (Status c = CatchUpKey(messages.front().key, deadline); !c.ok()) return c;
      continue;
    }
    return NameConflict(messages, written.status(), deadline);
  }
  return Status::Timeout(what + ": the keys or the lock's record kept moving for " +
                         std::to_string(timeout.count()) + " ms; nothing was written; try again");
}

void KvWriter::SetRewriteObserver(RewriteObserver observer) {
  auto shared = std::make_shared<const RewriteObserver>(std::move(observer));
  std::lock_guard<std::mutex> lock(observer_mu_);
  observer_ = std::move(shared);
}

Result<uint64_t> KvWriter::PublishAtomic(const std::vector<BatchWrite>& writes,
                                         const std::string& what, ms timeout) {
  if (conn_ == nullptr) {
    return Status::InvalidArgument(what + ": an atomic batch needs the bucket's connection");
  }
  const auto start = std::chrono::steady_clock::now();
  const uint64_t denials_before = conn_->permission_errors();
  auto pause = std::chrono::milliseconds(10);
  while (true) {
    // A fresh id per attempt: an attempt that stored nothing may leave an
    // incomplete batch behind on the server, which it abandons by itself.
    const std::string id = NewBatchId();
    std::vector<natsMsg*> msgs;
    struct Destroy {
      std::vector<natsMsg*>& msgs;
      ~Destroy() {
        for (natsMsg* m : msgs) natsMsg_Destroy(m);
      }
    } destroy{msgs};
    natsStatus s = NATS_OK;
    for (size_t i = 0; i < writes.size() && s == NATS_OK; ++i) {
      const BatchWrite& w = writes[i];
      natsMsg* msg = nullptr;
      s = BuildKvMessage(&msg, w.subject, w.op, w.value, w.ttl);
      if (s != NATS_OK) break;
      msgs.push_back(msg);
      s = natsMsgHeader_Set(msg, "Nats-Batch-Id", id.c_str());
      if (s == NATS_OK) {
        s = natsMsgHeader_Set(msg, "Nats-Batch-Sequence", std::to_string(i + 1).c_str());
      }
      if (s == NATS_OK && w.expected_last) {
        s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence",
                              std::to_string(*w.expected_last).c_str());
        if (s == NATS_OK && w.check_subject != nullptr) {
          s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence-Subject",
                                w.check_subject->c_str());
        }
      }
      if (s == NATS_OK && i + 1 == writes.size()) {
        s = natsMsgHeader_Set(msg, "Nats-Batch-Commit", "1");
      }
    }
    if (s != NATS_OK) return FromNats(s, what + ": building the batch");
    // All but the last go out without a reply; the commit's reply answers
    // for the batch (or says why it was refused, nothing stored).
    for (size_t i = 0; i + 1 < msgs.size() && s == NATS_OK; ++i) {
      s = natsConnection_PublishMsg(conn_->nc(), msgs[i]);
    }
    natsMsg* reply = nullptr;
    const auto left = std::chrono::ceil<ms>(start + timeout - std::chrono::steady_clock::now());
    if (s == NATS_OK) {
      s = natsConnection_RequestMsg(&reply, conn_->nc(), msgs.back(),
                                    std::max<int64_t>(1, left.count()));
    }
    if (s == NATS_NO_RESPONDERS && left > pause * 2) {
      // No leader took the batch (an election): nothing was stored.
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(250));
      continue;
    }
    if (s != NATS_OK) {
      if (s == NATS_TIMEOUT &&
          conn_->PermissionDeniedSince(denials_before, writes.back().subject)) {
        return Status::PermissionDenied("the server denied publishing to '" +
                                        writes.back().subject + "'; grant the user publish "
                                        "rights on bucket '" + bucket_ + "'");
      }
      return FromNats(s, what);
    }
    const std::string body(natsMsg_GetData(reply) != nullptr ? natsMsg_GetData(reply) : "",
                           static_cast<size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    const std::optional<PubAckReply> ack = ParsePubAck(body);
    if (!ack || !ack->is_error) {
      if (!ack || !ack->seq || ack->count != writes.size()) {
        return Status::IOError(what + ": the server's acknowledgement of the batch is not one "
                               "revkv understands: " + body);
      }
      return *ack->seq;
    }
    const int code = ack->error_code;
    const std::string& description = ack->description;
    const std::string said = what + ": the server refused the batch: " + description +
                             " (JetStream error " + std::to_string(code) + ")";
    const jsErrCode jerr = static_cast<jsErrCode>(code);
    if (PublishNotStoredAndRetryable(NATS_ERR, jerr) && left > pause * 2) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(250));
      continue;
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
      constexpr std::string_view kWrong = "wrong last sequence: ";
      const size_t at = description.find(kWrong);
      const uint64_t current =
          at == std::string::npos
              ? 0
              : std::strtoull(description.c_str() + at + kWrong.size(), nullptr, 10);
      return Status::Conflict(said, current);
    }
    if (code == kJsAtomicPublishDisabled) {
      return Status::InvalidArgument(
          said + "; stream " + KvStreamName(bucket_) + " does not allow atomic batches (allow_atomic), "
          "which revkv turns on by itself only in buckets it creates on nats-server 2.12+; "
          "open the bucket with BucketOptions::allow_atomic_batches (revkv --allow-atomic) "
          "to turn it on, or write without a fence");
    }
    return FromNats(NATS_ERR, said, jerr);
  }
}

Result<uint64_t> KvWriter::ServerRevision(std::string_view key,
                                          std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::ceil<ms>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) {
    return Status::Timeout("no time left to read the revision of key '" + std::string(key) +
                           "' of bucket '" + bucket_ + "' from the server");
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = left.count();
  const std::string stream = KvStreamName(bucket_);
  const std::string subject = prefix_ + std::string(key);
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&msg, js_, stream.c_str(), subject.c_str(), &jo, &jerr);
  if (s == NATS_OK) {
    const uint64_t revision = natsMsg_GetSequence(msg);
    natsMsg_Destroy(msg);
    return revision;
  }
  if (jerr == JSNoMessageFoundErr) return uint64_t{0};
  return FromNats(s, "reading the revision of key '" + std::string(key) + "' of bucket '" +
                         bucket_ + "' from the server", jerr);
}

Status KvWriter::CatchUpKey(std::string_view key, std::chrono::steady_clock::time_point deadline) {
  auto revision = ServerRevision(key, deadline);
  if (!revision.ok()) return revision.status();
  return loop_->WaitApplied(*revision, deadline);
}

Result<uint64_t> KvWriter::Delete(std::string_view key, std::optional<uint64_t> expected,
                                  ms timeout) {
  if (expected) {
    if (Status s = PreCheck(key, *expected); !s.ok()) return s;
  }
  return Publish(Operation::kDelete, key, {},
                 !expected ? Expect::kNothing
                           : (*expected == 0 ? Expect::kNoMessage : Expect::kLastSequence),
                 expected.value_or(0), Effective(timeout));
}

Result<uint64_t> KvWriter::Purge(std::string_view key, std::optional<uint64_t> expected,
                                 ms timeout, sec ttl) {
  if (expected) {
    if (Status s = PreCheck(key, *expected); !s.ok()) return s;
  }
  return Publish(Operation::kPurge, key, {},
                 !expected ? Expect::kNothing
                           : (*expected == 0 ? Expect::kNoMessage : Expect::kLastSequence),
                 expected.value_or(0), Effective(timeout), ttl);
}

}  // namespace revkv::replication
