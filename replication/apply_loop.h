// ApplyLoop: feeds a replica from its JetStream KV stream.
//
// An ordered push consumer on $KV.<bucket>.> starts at the replica's applied
// revision + 1 (a new replica starts from the last message of each key,
// unless it loaded a snapshot first: snapshot_bootstrap.h) and
// hands every message to LocalBucket::ApplyCommitted, which writes it with
// its stream sequence as revision and records the applied revision in the
// same WriteBatch. Messages are batched while the consumer reports more
// pending, so a catch-up writes few large batches. Writers waiting for their
// revision (read-your-writes) wait on WaitApplied.
//
// The replica mirrors whatever the server stores (ReadStreamMessage). A
// message that can never be applied (damaged) is skipped: counted in the
// replica's store, named in GetStatus, logged once per loop, and the
// applied revision moves past it. A failure of the local store is another
// matter: the loop stops there, so that no message is lost (see StopLocked).

#ifndef REVKV_REPLICATION_APPLY_LOOP_H_
#define REVKV_REPLICATION_APPLY_LOOP_H_

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/log.h"
#include "engine/replica_sink.h"
#include "engine/stats.h"
#include "replication/gap_hold.h"
#include "revkv/entry.h"
#include "revkv/result.h"

namespace revkv::replication {

class NatsConnection;

// What one stream message is to a replica.
struct StreamMessage {
  // The KV entry it carries: the key from the subject $KV.<bucket>.<key>,
  // the operation, the value of a Put, and the stream sequence (revision)
  // and timestamp (0 when the metadata is unreadable).
  Entry entry;
  // The consumer's count of messages still to deliver.
  uint64_t pending = 0;
  // Why the message can never be applied (it is damaged: its subject is not
  // under the bucket's prefix, or its metadata or headers cannot be read);
  // empty when it can.
  std::string damage;
  // The atomic batch it belongs to (Nats-Batch-Id; empty: none), and whether
  // it is that batch's last message (Nats-Batch-Commit).
  std::string batch_id;
  bool batch_commit = false;
};

// Reads a stream message as nats.go reads a KV entry. KV-Operation DEL and
// PURGE are tombstones and any other value is a Put. Without KV-Operation, a
// limit marker's Nats-Marker-Reason (written by nats-server 2.11+ when
// max_age, a TTL or a purge removes a key) makes a tombstone: MaxAge and
// Purge a Purge, Remove a Delete, and a reason this version does not know a
// Delete, since a marker is never a value. Anything else is a Put.
// A damaged message is not an error (see `damage`). Errors are local
// failures only (nats.c out of memory), after which nothing may be skipped.
Result<StreamMessage> ReadStreamMessage(natsMsg* msg, std::string_view subject_prefix);

// The same reading, for a message whose stream metadata the caller has read
// elsewhere (a direct get reply carries it in headers, not in its reply
// subject): `out` holds the entry's revision and time and the pending
// count, `subject` is the message's stream subject. A snapshot bootstrap
// and the consumer thus turn a message into the same Entry.
Result<StreamMessage> ReadStreamEntry(natsMsg* msg, std::string_view subject,
                                      std::string_view subject_prefix, StreamMessage out);

class ApplyLoop {
 public:
  // `js` and its connection must outlive the loop; its Wait bounds the
  // consumer deletion when the loop is destroyed.
  // PermissionDenied: given `conn` (the connection `js` belongs to), the
  // server denied creating the consumer or subscribing to its deliver
  // subject; without it the first is a Timeout and the second goes unseen.
  // Unavailable, Timeout: as the server answers.
  // `log` takes the loop's warnings (a skipped message, a stop); `stats`
  // (may be null, else outlives the loop) counts its applies.
  static Result<std::unique_ptr<ApplyLoop>> Start(jsCtx* js, const std::string& bucket,
                                                  std::shared_ptr<engine::ReplicaSink> replica,
                                                  const NatsConnection* conn = nullptr,
                                                  engine::Log log = engine::Log(),
                                                  engine::Stats* stats = nullptr);
  ~ApplyLoop();
  ApplyLoop(const ApplyLoop&) = delete;
  ApplyLoop& operator=(const ApplyLoop&) = delete;

  // The highest stream sequence the replica has applied.
  uint64_t applied() const { return replica_->LastRevision(); }

  // Waits until the replica has applied `revision` (or skipped it).
  // Timeout: not applied by `deadline`. The error that stopped the loop, if
  // one did (e.g. IOError or Corruption from the store).
  Status WaitApplied(uint64_t revision, std::chrono::steady_clock::time_point deadline);

  // Waits until the replica reflects every message of the stream up to
  // `last` (the stream's last sequence, read by the caller). The message at
  // `last` may no longer exist (purged, or removed by max_age): then, once the
  // consumer reports nothing pending, the applied revision moves to `last`.
  // Own writes applied ahead of the consumer (OfferOwnWrites) may still
  // show their provisional time: waiting for their delivery too cost lock
  // renewals, which catch up this way, their lease under load.
  // Timeout: not caught up by `deadline`. As WaitApplied otherwise.
  Status CatchUpTo(uint64_t last, std::chrono::steady_clock::time_point deadline);

  // This process's own writes, acknowledged at their revisions (entries as
  // the consumer would read them, with a provisional created_ns): each is
  // applied as soon as it is the replica's next revision, ahead of the
  // consumer (ReplicaSink::ApplyOwnWrites), together with any own writes
  // that follow it. One that is not yet next waits here until the consumer
  // brings the replica up to it; one the consumer delivers first is simply
  // dropped. Never while an atomic batch is open or a catch-up is held, so
  // that no state the stream never had is shown. Callers must not hold a
  // lock that the SetOnApplied hook takes. Returns true when this call
  // applied the last of `entries` (the replica then shows its key at its
  // revision).
  bool OfferOwnWrites(std::vector<Entry> entries);
  // Own writes applied ahead of the consumer so far, for tests.
  uint64_t own_writes_applied() const;

  // `fn` runs after each batch the replica applied (on the thread that
  // applied it; it must not call back into the loop); nullptr removes it.
  // Once this returns, the previous one no longer runs.
  void SetOnApplied(std::function<void()> fn);

  // Messages handed to the replica so far (redeliveries included), for tests
  // that count what a resume re-reads.
  uint64_t messages_received() const;

  natsSubscription* TEST_subscription() const { return sub_; }

 private:
  ApplyLoop(std::string bucket, std::shared_ptr<engine::ReplicaSink> replica, engine::Log log);
  static void OnMessage(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* closure);
  static void OnComplete(void* closure);
  void Handle(natsMsg* msg);
  void FlushLocked();  // callers hold batch_mu_
  // Applies the own writes that now follow the applied revision; callers
  // hold batch_mu_. Returns the last revision applied (0: none).
  uint64_t ApplyOwnLocked();
  bool BatchEmptyLocked() const { return batch_.empty() && batch_skipped_.empty(); }
  void StopLocked(const Status& why);  // callers hold batch_mu_
  // Logs the first message skipped, once per loop; callers hold batch_mu_.
  void WarnSkippedLocked(const std::vector<engine::ReplicaSink::SkippedMessage>& skipped);
  void FlushTimer();
  // The stream's last sequence, read from the server (a gap's bound);
  // nullopt when it does not answer.
  std::optional<uint64_t> StreamLastSequence() const;

  const std::string bucket_;
  const std::string prefix_;  // "$KV.<bucket>."
  const std::shared_ptr<engine::ReplicaSink> replica_;
  const engine::Log log_;
  engine::Stats* stats_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;

  // Filled on nats.c's delivery thread. A batch held because the consumer
  // reported more pending is flushed by the timer thread if those messages
  // do not come (the server may have removed them since, e.g. by max_age).
  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::vector<Entry> batch_;                          // GUARDED_BY(batch_mu_)
  // Damaged messages of the batch, to be skipped with it.
  std::vector<engine::ReplicaSink::SkippedMessage> batch_skipped_;  // GUARDED_BY(batch_mu_)
  uint64_t batch_last_ = 0;                           // GUARDED_BY(batch_mu_)
  bool warned_skip_ = false;                          // GUARDED_BY(batch_mu_)
  std::chrono::steady_clock::time_point flush_due_;   // GUARDED_BY(batch_mu_)
  // An atomic batch (a transaction) whose commit message has not arrived:
  // nothing is applied until it does, so that a reader never sees part of
  // it. Another batch's message, or kMaxOpenBatch without one (the server
  // removed the rest), ends it.
  std::string open_batch_;                             // GUARDED_BY(batch_mu_)
  std::chrono::steady_clock::time_point open_since_;   // GUARDED_BY(batch_mu_)
  // When a catch-up across a gap in the stream's sequences may be applied
  // (gap_hold.h), and since when one is held: past kMaxGapHold, or
  // kMaxGapHeld messages, or kGapQuiet without a message, the replica
  // applies what it has.
  GapHold gap_;                                        // GUARDED_BY(batch_mu_)
  std::chrono::steady_clock::time_point hold_since_;   // GUARDED_BY(batch_mu_)
  bool stopping_ = false;                             // GUARDED_BY(batch_mu_)
  bool stopped_ = false;  // GUARDED_BY(batch_mu_): applying failed; nothing more is applied
  std::thread timer_;
  // Own writes acknowledged but not yet applied (OfferOwnWrites), by
  // revision; bounded by the writes in flight.
  std::map<uint64_t, Entry> own_;                     // GUARDED_BY(batch_mu_)
  std::atomic<uint64_t> own_applied_{0};

  std::mutex on_applied_mu_;
  std::function<void()> on_applied_;  // GUARDED_BY(on_applied_mu_)
  // Runs on_applied_; callers hold no lock of the loop's but batch_mu_.
  void NotifyApplied();

  mutable std::mutex mu_;
  std::condition_variable applied_cv_;
  Status error_;            // GUARDED_BY(mu_): set when applying failed
  uint64_t received_ = 0;   // GUARDED_BY(mu_)
  bool completed_ = false;  // GUARDED_BY(mu_): nats.c will call back no more
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_APPLY_LOOP_H_
