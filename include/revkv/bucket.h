// Bucket: a named keyspace with per-key revisions, NATS KV semantics.
//
// Keys that revkv writes follow the NATS KV rules (ValidateKey): characters
// [A-Za-z0-9_=/\\.-] (backslash included, as nats.c allows), not empty, at
// most kMaxKeyLength bytes, no leading or trailing '.', no "..". A write
// whose key breaks them gets InvalidArgument and nothing is written.
//
// A replicated bucket also holds whatever other NATS clients stored: keys of
// any length and any bytes a NATS subject may hold, such as non-ASCII UTF-8.
// So reads (Get, GetEntry, History, and the filters of Keys and Watch) check
// keys with the lenient ValidateReadKey / ValidateReadFilter
// (revkv/validation.h), which accept every key a replica can hold.
//
// Revisions are bucket-wide and strictly increasing; every committed write
// (Put, Create, Update, Delete, Purge) takes the next one.
//
// Thread safety: every method may be called from any number of threads at
// once. Writes to one bucket are linearizable: compare-and-swap (Create,
// Update, Delete/Purge with an expected revision) is atomic however many
// callers race.
//
// A Bucket keeps its Engine's store open: the store closes when the Engine
// and every Bucket from it are destroyed.

#ifndef REVKV_BUCKET_H_
#define REVKV_BUCKET_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/entry.h"
#include "revkv/options.h"
#include "revkv/result.h"
#include "revkv/txn.h"
#include "revkv/watch.h"

namespace revkv {

// The longest key revkv writes. Keys that other clients stored may be longer.
inline constexpr size_t kMaxKeyLength = 1024;

// What UpdateWithRetry returns on success.
struct UpdateOutcome {
  uint64_t revision = 0;  // the revision written (or read, if mutate declined)
  int attempts = 0;       // read-and-write attempts used, >= 1
  bool written = false;   // false if mutate returned std::nullopt
};

// Computes a key's new value from its current one (std::nullopt when the key
// is absent or tombstoned). Returning std::nullopt leaves the key unchanged.
// May run several times for one update: it must not have side effects that
// cannot be repeated.
using Mutator =
    std::function<std::optional<std::string>(const std::optional<std::string>& current)>;

// One key in a snapshot read (Bucket::GetMany).
struct KeyRead {
  std::string key;
  std::optional<Entry> entry;  // the live entry; nullopt: absent, tombstoned or expired
  uint64_t revision = 0;       // the entry's, or the tombstone's, else 0
};

// A consistent view of several keys, as of one revision of the bucket (a
// replica: of what it has applied).
struct KeysSnapshot {
  uint64_t revision = 0;
  std::vector<KeyRead> keys;  // in the order asked
};
struct EntriesSnapshot {
  uint64_t revision = 0;
  std::vector<Entry> entries;  // the live entries, in key order
};

// What UpdateManyWithRetry's mutate returns for one key.
struct KeyChange {
  enum class Kind { kKeep, kPut, kDelete };
  Kind kind = Kind::kKeep;
  std::string value;  // kPut

  static KeyChange Keep() { return {}; }
  static KeyChange Put(std::string value) { return {Kind::kPut, std::move(value)}; }
  static KeyChange Delete() { return {Kind::kDelete, {}}; }
};

// Computes new values for several keys from their current ones (std::nullopt
// when a key is absent or tombstoned), given in the order of the keys; it
// returns one change per key, in that order, or std::nullopt to leave every
// key unchanged. May run several times for one update: it must not have
// side effects that cannot be repeated.
using ManyMutator = std::function<std::optional<std::vector<KeyChange>>(
    const std::vector<std::optional<std::string>>& current)>;

// What UpdateManyWithRetry returns on success.
struct ManyUpdateOutcome {
  // Per key: the revision written, or the one read for a key kept or
  // deleted while already absent.
  std::vector<uint64_t> revisions;
  uint64_t revision = 0;  // the transaction's last revision (or the read's)
  int attempts = 0;       // read-and-commit attempts used, >= 1
  bool written = false;   // false if mutate returned std::nullopt, or only kept keys
};

// How current a bucket's local copy is (Bucket::GetStatus).
struct BucketStatus {
  // The bucket is mirrored to a NATS KV bucket (false: a local bucket,
  // which is its own source of truth).
  bool replicated = false;
  // The engine's NATS connection is up and the server answered just now.
  bool connected = false;
  // The highest revision applied locally.
  uint64_t applied = 0;
  // The stream's last revision, and how far the replica is behind it, in
  // revisions and in server time (the stream's last message time minus the
  // time of the last applied entry). Unknown (nullopt) when the server could
  // not be asked. A local bucket reports itself: lag 0.
  std::optional<uint64_t> stream_last;
  std::optional<uint64_t> lag;
  std::optional<std::chrono::nanoseconds> lag_time;
  // Why the server could not be asked, when it could not.
  std::string error;
  // The version of the nats-server the engine's connection is on now (e.g.
  // "2.15.1"), read from that server; empty for a local bucket or when it
  // could not be read.
  std::string server_version;
  // Messages of the stream that the replica could never apply (a damaged
  // message, e.g. one whose headers cannot be parsed) and skipped: the
  // applied revision moved past them, and one warning line was logged. The
  // count is kept in the store, across restarts, since the replica was
  // created or last resynced from scratch. 0 for a bucket that never was a
  // replica.
  uint64_t skipped = 0;
  // The revision (stream sequence) of the first skipped message, and why it
  // was skipped; 0 and empty when none was.
  uint64_t first_skipped = 0;
  std::string skipped_reason;
  // A replicated bucket's expiry settings, as its stream had them when the
  // bucket was opened: whether entries may carry a TTL (WriteOptions::ttl),
  // the limit marker TTL (0: no markers) and max_age (0: none).
  bool allows_ttl = false;
  std::chrono::nanoseconds limit_marker_ttl{0};
  std::chrono::nanoseconds max_age{0};
};

class Bucket {
 public:
  virtual ~Bucket() = default;

  // The bucket's name.
  virtual const std::string& name() const = 0;
  // The bucket's effective history setting (1..64).
  virtual int history() const = 0;
  // The bucket's effective maximum value size, in bytes.
  virtual uint32_t max_value_size() const = 0;

  // Returns the value of `key`: the last write wins.
  // NotFound: the key has no entry, or its last operation is a Delete or
  //   Purge (status.revision() is then the tombstone's revision).
  // InvalidArgument: a key no bucket can hold (ValidateReadKey). Corruption:
  //   the stored record is damaged.
  virtual Result<std::string> Get(std::string_view key) = 0;

  // Returns the key's latest entry: value, revision, created, operation.
  // NotFound: as Get (tombstones read as NotFound, with their revision).
  // InvalidArgument, Corruption: as Get.
  virtual Result<Entry> GetEntry(std::string_view key) = 0;

  // Writes `value` whatever the key's state; returns the new revision.
  // InvalidArgument: bad key, or value larger than max_value_size().
  // IOError: the store could not write. Nothing is written on error. A full
  // disk is IOError too; once space is freed, writes succeed again with no
  // reopen.
  //
  // Every write method takes WriteOptions. With options.fence, the write
  // commits only if the fence's token is the lock's current fencing token;
  // otherwise it returns LockLost and writes nothing. A fenced write to the
  // lock's own record is InvalidArgument. On a replicated bucket the lock
  // must live in this bucket (LockOptions::locks_bucket or
  // Options::locks_bucket) and the server must be 2.11+ for a fenced Put,
  // Delete or Purge, 2.12+ for a fenced compare-and-swap (Create, Update,
  // UpdateWithRetry, or an expected revision: one atomic batch with the
  // lock's record); otherwise InvalidArgument.
  virtual Result<uint64_t> Put(std::string_view key, std::string_view value,
                               const WriteOptions& options = {}) = 0;

  // Writes `value` only if the key is absent or its last operation is a
  // tombstone; returns the new revision. After a tombstone, Create is a
  // compare-and-swap on the tombstone's revision, never a blind write.
  // Exists: the key is live; status.revision() is its revision.
  // InvalidArgument, IOError: as Put.
  virtual Result<uint64_t> Create(std::string_view key, std::string_view value,
                                  const WriteOptions& options = {}) = 0;

  // Writes `value` only if the key's latest revision (live or tombstone) is
  // `expected_revision`; 0 expects that the key has no entry at all. Returns
  // the new revision.
  // Conflict: the revision differs; status.revision() is the current one
  //   (0 if the key has no entry). On a replicated bucket the server
  //   judges: a key whose message its max_age, a TTL or a purge removed has
  //   no entry there, even while the replica still shows one it has not yet
  //   seen removed. On a clustered bucket (nats-server 2.11+)
  //   a CAS refused while another one on the key was in flight is a Conflict
  //   with status.revision_known() false: Sync, re-read, retry.
  // InvalidArgument, IOError: as Put.
  virtual Result<uint64_t> Update(std::string_view key, std::string_view value,
                                  uint64_t expected_revision,
                                  const WriteOptions& options = {}) = 0;

  // Writes a Delete tombstone; earlier revisions stay in History(). With
  // `expected_revision`, only if the key's latest revision is that one.
  // Deleting an absent key still writes a tombstone, as NATS KV does.
  // Returns the tombstone's revision.
  // Conflict: as Update. InvalidArgument: bad key. IOError: as Put.
  virtual Result<uint64_t> Delete(std::string_view key,
                                  std::optional<uint64_t> expected_revision = std::nullopt,
                                  const WriteOptions& options = {}) = 0;

  // Writes a Purge tombstone and drops every earlier revision of the key.
  // With `expected_revision`, only if the key's latest revision is that one.
  // Returns the tombstone's revision.
  // Conflict, InvalidArgument, IOError: as Delete.
  virtual Result<uint64_t> Purge(std::string_view key,
                                 std::optional<uint64_t> expected_revision = std::nullopt,
                                 const WriteOptions& options = {}) = 0;

  // Returns the live keys (last operation Put) matching `filter`, sorted.
  // The filter is a NATS subject pattern over the key's '.'-separated
  // tokens: "*" matches one token, ">" (last token only) one or more.
  // ">" or an empty filter matches every key.
  // InvalidArgument: malformed filter (ValidateReadFilter). Corruption: a
  //   damaged record.
  virtual Result<std::vector<std::string>> Keys(std::string_view filter = ">") = 0;

  // One page of Keys: at most `limit` live keys matching `filter` that sort
  // after `after` (empty: from the first), sorted. Page through a large
  // bucket by passing the last key of each page as the next `after`; a page
  // shorter than `limit` is the last. Each page reads only as far as it
  // needs, so a page costs the same in a bucket of any size.
  // InvalidArgument: malformed filter, or `limit` 0. Corruption: as Keys.
  virtual Result<std::vector<std::string>> KeysAfter(std::string_view filter,
                                                     std::string_view after, size_t limit) = 0;

  // Returns the retained revisions of `key`, oldest first, tombstones
  // included: at most history() of them; after a Purge only the Purge.
  // NotFound: the key has no entry at all.
  // InvalidArgument, Corruption: as Get.
  virtual Result<std::vector<Entry>> History(std::string_view key) = 0;

  // Returns up to `limit` retained entries with revision > `after_revision`,
  // in revision order, tombstones included. Revisions that history limits or
  // purges removed are skipped. Used to follow a bucket's changes.
  // InvalidArgument: limit is 0. Corruption: a damaged record.
  virtual Result<std::vector<Entry>> ChangesSince(uint64_t after_revision, size_t limit) = 0;

  // The bucket's latest revision, 0 when empty. On a local bucket: the
  // highest ever committed. On a replica: the highest the replica has
  // applied from its stream (Sync waits for the stream's last one), which
  // may pass revisions the stream no longer holds.
  virtual uint64_t LastRevision() = 0;

  // Waits until this process sees every write the bucket's server had
  // acknowledged when Sync was called, so that reads after it are
  // linearizable. A local bucket is always current: OK at once.
  // Timeout: the replica did not catch up in time. Unavailable: the server
  // cannot be reached.
  virtual Status Sync(std::chrono::milliseconds timeout) = 0;

  // Snapshot reads: every key from one consistent view of the bucket (a
  // replica: of what it has applied; Sync first for the server's latest),
  // with the bucket revision that view is at. A transaction is never seen
  // in part. Entries: the latest live entry of every key matching `filter`.
  // GetMany: each of `keys`, found or not (KeyRead). InvalidArgument: a bad
  // key or filter; Corruption, IOError: as Get.
  virtual Result<EntriesSnapshot> Entries(std::string_view filter = ">") = 0;
  virtual Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys) = 0;

  // Commits a transaction (revkv/txn.h): its compares and its operations'
  // own conditions are checked against the state before it, and then every
  // operation is written at once with consecutive revisions, or none is.
  // options.fence fences the whole transaction; options.ttl applies to each
  // Put, Create and Update under the single-key rules.
  // Conflict: a compare, an Update's or an expected-revision Delete/Purge's
  //   revision failed; the message names the key, status.revision() is its
  //   current revision. Exists: a Create found its key.
  // InvalidArgument: no operation, more than kMaxTxnOps, a key twice, a bad
  //   key or value, an Update without its expected revision.
  // LockLost (fenced), Corruption, IOError: as single-key writes.
  // Replicated buckets: one atomic batch (nats-server 2.12+; older servers:
  // InvalidArgument naming the version). A Create, an Absent or a Present
  // compare is checked as "the revision the replica shows"; a compare on a
  // key the transaction does not write needs an operation without a
  // condition of its own (Put, or Delete/Purge without an expected
  // revision) to carry it, else InvalidArgument. A fenced transaction holds
  // at most kMaxTxnOps - 1 operations (the lock's record is one message).
  virtual Result<TxnResult> Commit(const Txn& txn, const WriteOptions& options = {}) = 0;

  // The multi-key form of UpdateWithRetry: reads `keys` from one snapshot
  // (GetMany), calls `mutate` with their values, and commits the changes
  // as one transaction: each written key with a compare-and-swap on the
  // revision read (a Put over an absent or tombstoned key included), and
  // each kept key with a compare of that revision, so that the whole read
  // is still current when the transaction commits. A replicated bucket
  // checks kept keys only as far as the transaction can carry compares
  // (see Commit): there the written keys are checked, the kept ones not.
  // On Conflict or Exists it retries with the policy, as UpdateWithRetry
  // does, and threads of this process updating any of the same keys queue
  // up locally. InvalidArgument: no key, a key twice, a bad key, mutate
  // returned another number of changes than keys, max_attempts < 1; else
  // as Commit.
  virtual Result<ManyUpdateOutcome> UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                        const ManyMutator& mutate,
                                                        const RetryPolicy& policy = {},
                                                        const WriteOptions& options = {}) = 0;

  // Optimistic read-modify-write of one key: reads the entry, calls
  // `mutate`, then writes with Create (key absent or tombstoned; never a
  // blind Put) or Update(revision). On Conflict or Exists it backs off
  // (exponential, full jitter) and tries again, within policy's attempts
  // and deadline. Threads of this process updating the same key through
  // UpdateWithRetry are serialized locally, so they do not burn attempts
  // conflicting with each other; conflicts come only from other writers.
  // Conflict: attempts or deadline exhausted; status.revision() is the
  //   current revision (unless status.revision_known() is false).
  // InvalidArgument: bad key, value too large, max_attempts < 1.
  // Corruption, IOError, LockLost (fenced): as the underlying calls.
  virtual Result<UpdateOutcome> UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                                const RetryPolicy& policy = {},
                                                const WriteOptions& options = {}) = 0;

  // Starts watching keys matching `filter` (as for Keys). Entries arrive in
  // revision order with no duplicates; see WatchOptions for where the watch
  // starts and what a slow consumer gets. Writers never wait for watchers.
  // InvalidArgument: bad filter (ValidateReadFilter) or options.
  virtual Result<std::unique_ptr<Watcher>> Watch(std::string_view filter,
                                                 const WatchOptions& options = {}) = 0;

  // As Watch, but delivers each entry to `callback` on a thread the watch
  // owns, until the returned Watcher is cancelled or destroyed. Next() must
  // not be called on a callback watch.
  virtual Result<std::unique_ptr<Watcher>> Watch(std::string_view filter,
                                                 const WatchOptions& options,
                                                 WatchCallback callback) = 0;

  // Asynchronous writes. Each validates its arguments as the synchronous
  // call does and returns a future of the same result; a bad argument gives
  // a future that is ready at once with InvalidArgument.
  //
  // A replicated bucket pipelines Put, Create, Update, Delete and Purge:
  // the message goes out at once with its expectation headers and the call
  // returns without waiting for the server, so many writes are in flight on
  // the one connection. At most NatsOptions::max_writes_in_flight writes of
  // a bucket are in flight; a call beyond that waits until one completes
  // (backpressure). A future completes once its outcome is exact:
  //  - the revision, once the server acknowledged it and the local replica
  //    has applied it (read-your-writes holds when the future completes; if
  //    the replica is slower than the write's timeout, the acknowledged
  //    revision all the same, as the synchronous call does);
  //  - Conflict or Exists, as the synchronous call (nothing written);
  //  - Timeout or Unavailable: the outcome is unknown, as for the
  //    synchronous call (a Put with WriteOptions::idempotency_key may be
  //    retried safely within the stream's duplicate window).
  // Writes still in flight when the Engine or the Bucket is destroyed
  // complete first, each with one of these. Fenced writes and transactions
  // take several dependent round trips: they run on the bucket's own
  // threads (two), so they are in flight alongside the others, but not
  // pipelined within themselves.
  // A local bucket's futures are ready when the call returns.
  virtual std::future<Result<uint64_t>> PutAsync(std::string_view key, std::string_view value,
                                                 const WriteOptions& options = {}) {
    return Ready(Put(key, value, options));
  }
  virtual std::future<Result<uint64_t>> CreateAsync(std::string_view key, std::string_view value,
                                                    const WriteOptions& options = {}) {
    return Ready(Create(key, value, options));
  }
  virtual std::future<Result<uint64_t>> UpdateAsync(std::string_view key, std::string_view value,
                                                    uint64_t expected_revision,
                                                    const WriteOptions& options = {}) {
    return Ready(Update(key, value, expected_revision, options));
  }
  virtual std::future<Result<uint64_t>> DeleteAsync(
      std::string_view key, std::optional<uint64_t> expected_revision = std::nullopt,
      const WriteOptions& options = {}) {
    return Ready(Delete(key, expected_revision, options));
  }
  virtual std::future<Result<uint64_t>> PurgeAsync(
      std::string_view key, std::optional<uint64_t> expected_revision = std::nullopt,
      const WriteOptions& options = {}) {
    return Ready(Purge(key, expected_revision, options));
  }
  virtual std::future<Result<TxnResult>> CommitAsync(const Txn& txn,
                                                     const WriteOptions& options = {}) {
    return Ready(Commit(txn, options));
  }

  // How current the local copy is: the applied revision, the stream's last
  // revision, the lag, whether the server is reachable, and the messages
  // the replica skipped. For a
  // replicated bucket this asks the server (one request, bounded by the
  // write timeout); it never fails: what could not be learned is nullopt,
  // with the reason in `error`.
  virtual BucketStatus GetStatus() = 0;

 protected:
  // A future that is ready with `result`.
  template <class T>
  static std::future<Result<T>> Ready(Result<T> result) {
    std::promise<Result<T>> done;
    done.set_value(std::move(result));
    return done.get_future();
  }
};

// Bucket::UpdateWithRetry as a free function: the same call, the same results.
inline Result<UpdateOutcome> UpdateWithRetry(Bucket& bucket, std::string_view key,
                                             const Mutator& mutate,
                                             const RetryPolicy& policy = {}) {
  return bucket.UpdateWithRetry(key, mutate, policy);
}

}  // namespace revkv

#endif  // REVKV_BUCKET_H_
