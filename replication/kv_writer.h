// KvWriter: the write path of a replicated bucket.
//
//  1. validate; 2. a local pre-check that rejects only what the replica
//  proves (it already holds a newer revision of the key than expected);
//  3. js_PublishMsg to $KV.<bucket>.<key> with the expected-sequence options
//  and a jsErrCode, so a CAS conflict (10071) is told from other failures;
//  4. the ack's sequence is the new revision; 5. wait until the replica has
//  applied it (read-your-writes). A write the server acknowledged is never
//  reported as failed: if the replica is slow, the revision is returned all
//  the same. Concurrent writers share the connection, so their publishes
//  pipeline.

#ifndef REVKV_REPLICATION_KV_WRITER_H_
#define REVKV_REPLICATION_KV_WRITER_H_

#include <nats/nats.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/key_gate.h"
#include "replication/apply_loop.h"
#include "replication/nats_connection.h"
#include "revkv/result.h"

namespace revkv::replication {

// The message of `op` on `subject` (a KV-Operation header for a Delete or
// Purge, Nats-Rollup for a Purge), with Nats-TTL when `ttl` is not 0.
// `reply`: the reply subject (nullptr: none).
natsStatus BuildKvMessage(natsMsg** out, const std::string& subject, Operation op,
                          std::string_view value, std::chrono::seconds ttl,
                          const char* reply = nullptr);

// The entry a replica reads from the message BuildKvMessage builds, once
// the stream stored it at `revision`; `created_ns` stands in for the
// server's time, which the acknowledgement does not carry
// (ApplyLoop::OfferOwnWrites).
Entry OwnEntry(Operation op, std::string_view key, std::string_view value,
               std::chrono::seconds ttl, uint64_t revision, int64_t created_ns);

class KvWriter {
 public:
  // `js`, `loop`, `replica` and `conn` (if given) must outlive the writer.
  // With `conn`, a write that times out because the server denied the
  // publish is reported as PermissionDenied.
  KvWriter(jsCtx* js, std::string bucket, ApplyLoop* loop,
           std::shared_ptr<Bucket> replica, std::chrono::milliseconds write_timeout,
           const NatsConnection* conn = nullptr);

  // As Bucket::Put/Create/Update/Delete/Purge, plus Unavailable or Timeout
  // when the server cannot be reached within the write timeout (nothing is
  // written then), and PermissionDenied.
  // `timeout` bounds the wait for the server and the replica; 0 means the
  // writer's write timeout. `ttl`, when not 0, goes out as Nats-TTL; the
  // caller checks that the stream allows it.
  using ms = std::chrono::milliseconds;
  using sec = std::chrono::seconds;
  // `msg_id` (may be empty): the message's Nats-Msg-Id; a duplicate within
  // the stream's duplicate window returns the first one's revision.
  Result<uint64_t> Put(std::string_view key, std::string_view value, ms timeout = ms(0),
                       sec ttl = sec(0), const std::string& msg_id = {});
  Result<uint64_t> Create(std::string_view key, std::string_view value, ms timeout = ms(0),
                          sec ttl = sec(0));
  Result<uint64_t> Update(std::string_view key, std::string_view value, uint64_t expected,
                          ms timeout = ms(0), sec ttl = sec(0));
  Result<uint64_t> Delete(std::string_view key, std::optional<uint64_t> expected,
                          ms timeout = ms(0));
  Result<uint64_t> Purge(std::string_view key, std::optional<uint64_t> expected,
                         ms timeout = ms(0), sec ttl = sec(0));

  // A Put, Delete or Purge (op) fenced by the server (nats-server 2.11+):
  // one publish that the server stores only if the last message of the
  // fence's lock record, in this same bucket, is still the revision the
  // replica shows for the fence's token
  // (Nats-Expected-Last-Subject-Sequence-Subject). A renewal that moved the
  // record meanwhile is caught up with and the publish retried; a record
  // with another token, or none, is LockLost with nothing written.
  Result<uint64_t> FencedWrite(Operation op, std::string_view key, std::string_view value,
                               const Fence& fence, ms timeout = ms(0), sec ttl = sec(0));

  // A compare-and-swap fenced by the server (nats-server 2.12+, a stream
  // with allow_atomic): one atomic batch of two messages, the fence's lock
  // record rewritten unchanged with a CAS on its revision (the token stays),
  // and the write of `op` on `key` with a CAS on `expected` (0: the server
  // holds no message of the key). Both land or neither does. A renewal that
  // moved the record meanwhile is caught up with and the batch retried; a
  // record with another token, or none, is LockLost. The data's CAS failing
  // is Conflict as for Update.
  Result<uint64_t> FencedUpdate(Operation op, std::string_view key, std::string_view value,
                                uint64_t expected, const Fence& fence, ms timeout = ms(0),
                                sec ttl = sec(0));
  // One message of a transaction: `op` on `key` (with Nats-TTL `ttl` when
  // not 0), stored only if the last message of `check_key` (its own key
  // when empty) is `expected` (0: none) before the batch; no check when
  // `expected` is unset.
  struct TxnMessage {
    Operation op = Operation::kPut;
    std::string key;
    std::string value;
    std::optional<uint64_t> expected;
    std::string check_key;
    sec ttl{0};
  };
  // Publishes `messages` as one atomic batch (nats-server 2.12+), after a
  // rewrite of the fence's lock record when `fence` is given (as
  // FencedUpdate), and returns each message's revision. A failed check is
  // Conflict naming the key and its current revision when the replica,
  // caught up, shows which one moved (else without a revision); a failed
  // fence is LockLost. Nothing is written then.
  Result<std::vector<uint64_t>> CommitBatch(const std::vector<TxnMessage>& messages,
                                            const Fence* fence, ms timeout = ms(0));

  // Create, fenced as FencedUpdate.
  Result<uint64_t> FencedCreate(std::string_view key, std::string_view value, const Fence& fence,
                                ms timeout = ms(0), sec ttl = sec(0));

  // Told of each record rewrite a fenced compare-and-swap made: the lock,
  // its token, the record's new revision, and when the batch was sent. For
  // the lock's holder in this process, that rewrite renews the lock as a
  // renewal sent then would (a waiter times the lease from the new
  // revision), so its own renewal need not race the writes.
  using RewriteObserver = std::function<void(const std::string& lock, uint64_t token,
                                             uint64_t revision,
                                             std::chrono::steady_clock::time_point sent)>;
  void SetRewriteObserver(RewriteObserver observer);

  // InvalidArgument unless `key` and `value` may be written.
  Status CheckKeyAndValue(std::string_view key, std::string_view value) const;
  // Conflict at once if the replica proves `expected` stale for `key`.
  Status PreCheck(std::string_view key, uint64_t expected);
  // The Conflict of a compare-and-swap on `key` that expected `expected`
  // while the server holds `current` (JetStream error 10071).
  Status WrongRevision(std::string_view key, uint64_t expected, uint64_t current) const;
  // The Conflict of one refused while another was in flight (10164).
  Status InFlightConflict(std::string_view key) const;
  ms Effective(ms timeout) const { return timeout.count() > 0 ? timeout : write_timeout_; }
  const std::string& subject_prefix() const { return prefix_; }
  // "key '<key>' of bucket '<bucket>'", as errors name a key.
  std::string Describe(std::string_view key) const {
    return "key '" + std::string(key) + "' of bucket '" + bucket_ + "'";
  }
  // The key's revision in the replica (a tombstone's included; 0: none).
  uint64_t ReplicaRevision(std::string_view key);
  // Read-your-writes for a write of `key` acknowledged at `revision`: waits
  // until `deadline` for the replica to apply it and show the key at that
  // revision or a later one.
  void WaitOwnWrite(std::string_view key, uint64_t revision,
                    std::chrono::steady_clock::time_point deadline);

  // The key's revision on the server now (its last message's sequence, a
  // tombstone's included), or 0 if the server holds no message of it. One
  // round trip to the stream leader.
  Result<uint64_t> ServerRevision(std::string_view key,
                                  std::chrono::steady_clock::time_point deadline);
  // Waits until the replica has applied the key's revision on the server:
  // after a Conflict that named no revision (10164), a re-read then sees the
  // winner.
  Status CatchUpKey(std::string_view key, std::chrono::steady_clock::time_point deadline);

 private:
  enum class Expect { kNothing, kNoMessage, kLastSequence };
  // With `fence_subject`, `last_sequence` is checked against that subject's
  // last message instead of the key's (`expect` is then kNothing).
  Result<uint64_t> Publish(Operation op, std::string_view key, std::string_view value,
                           Expect expect, uint64_t last_sequence, ms timeout, sec ttl = sec(0),
                           const std::string* fence_subject = nullptr,
                           const std::string* msg_id = nullptr);
  // One message of an atomic batch: `op` on `subject`, stored only if the
  // subject's last message is `expected_last` (0: none) before the batch.
  struct BatchWrite {
    Operation op;
    const std::string& subject;
    std::string_view value;
    std::optional<uint64_t> expected_last;  // unset: no check
    sec ttl;
    // With expected_last: the subject checked, when not `subject` itself
    // (Nats-Expected-Last-Subject-Sequence-Subject).
    const std::string* check_subject = nullptr;
  };
  // Publishes `writes` as one atomic batch and returns the last one's
  // sequence. Conflict (10071) names the current sequence of the first
  // subject whose check failed, without saying which; 10164 is
  // ConflictRevisionUnknown; a stream without allow_atomic is
  // InvalidArgument; otherwise as Publish. `what` names the write in errors.
  Result<uint64_t> PublishAtomic(const std::vector<BatchWrite>& writes, const std::string& what,
                                 ms timeout);
  // FencedUpdate without the replica's pre-check.
  Result<uint64_t> FencedCas(Operation op, std::string_view key, std::string_view value,
                             uint64_t expected, const Fence& fence, ms timeout, sec ttl);
  // After a batch failed a check: the first message whose checked key the
  // replica, caught up with the server, shows at another revision than
  // expected, as Conflict naming it; else Conflict without a revision.
  Status NameConflict(const std::vector<TxnMessage>& messages, const Status& failed,
                      std::chrono::steady_clock::time_point deadline);
  // The record of the fence's lock as the replica has it, checked against
  // the fence. A record without the fence's token is LockLost only once the
  // replica has caught up with the server's (*caught_up), which this may do.
  Result<Entry> FenceRecord(const Fence& fence, std::chrono::steady_clock::time_point deadline,
                            bool* caught_up);
  // Create's rounds (see Create), each a CAS by `attempt` on the tombstone
  // revision it is given, or on "no message" for 0.
  Result<uint64_t> CreateRounds(std::string_view key, ms timeout,
                                const std::function<Result<uint64_t>(uint64_t, ms)>& attempt);
  // InvalidArgument for a fence that names a bad lock or `key` itself.
  static Status CheckFence(std::string_view key, const Fence& fence);

  // Fenced compare-and-swap writes of this process under one lock take
  // turns: each rewrites the lock's record, so together they would only
  // conflict.
  engine::KeyGate fence_gate_;
  std::mutex observer_mu_;
  std::shared_ptr<const RewriteObserver> observer_;  // GUARDED_BY(observer_mu_)

  jsCtx* const js_;
  const std::string bucket_;
  const std::string prefix_;  // "$KV.<bucket>."
  ApplyLoop* const loop_;
  const std::shared_ptr<Bucket> replica_;
  const std::chrono::milliseconds write_timeout_;
  const NatsConnection* const conn_;
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_KV_WRITER_H_
