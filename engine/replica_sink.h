// The narrow interfaces between a local bucket and the layers above it.
// Neither names RocksDB: replication and locks depend on these and on the
// public API only.
//
// CommitFeed: committed entries, in revision order, as they commit.
// ReplicaSink: how replication applies what the stream committed to the
// local bucket that mirrors it.

#ifndef REVKV_ENGINE_REPLICA_SINK_H_
#define REVKV_ENGINE_REPLICA_SINK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/expiry.h"
#include "revkv/bucket.h"
#include "revkv/entry.h"
#include "revkv/status.h"

namespace revkv::engine {

class CommitFeed {
 public:
  virtual ~CommitFeed() = default;

  // Called with every committed entry, in revision order, while the
  // bucket's write lock is held: a listener must not call back into the
  // bucket's writes, and should only queue or signal.
  using CommitListener = std::function<void(const Entry&)>;
  virtual uint64_t AddCommitListener(CommitListener listener) = 0;
  virtual void RemoveCommitListener(uint64_t id) = 0;

  // The latest revision committed (or applied, on a replica).
  virtual uint64_t LastRevision() = 0;

  // Runs `fn` with commits held off, with the latest revision.
  virtual void RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn) = 0;
};

class ReplicaSink : public CommitFeed {
 public:
  // A message of the replicated stream that can never be applied, e.g. a
  // damaged message or a key no bucket can hold: it is skipped and counted.
  struct SkippedMessage {
    uint64_t revision = 0;  // its stream sequence; 0 if even that was unreadable
    std::string reason;     // why it cannot be applied
  };
  // The messages a replica skipped since it was created or last reset.
  struct SkipSummary {
    uint64_t count = 0;
    uint64_t first_revision = 0;
    std::string first_reason;
  };

  // Applies entries committed elsewhere (the replication stream) with their
  // own revisions, times and operations, in revision order, and records
  // `applied_revision` (the stream position reached, >= the last entry's)
  // in the same commit; LastRevision() then returns it. Entries at or below
  // the last applied revision are redeliveries and are skipped; gaps
  // (revisions removed by history limits or purges) are normal. History
  // trimming and purges work as for local writes; listeners and watchers
  // see the applied entries. The entries of one call commit together:
  // readers never see part of them.
  //
  // Keys are checked with ValidateReadKey, not the write rules: any key
  // another client stored is applied. An entry whose key even that refuses,
  // and the messages in `skipped` (which the caller could not turn into
  // entries), are never applicable: they are counted in the same commit
  // (see Skipped()) and the applied revision moves past them. The ones newly
  // counted (not redeliveries) are appended to `newly_skipped`, if given.
  // InvalidArgument: entries out of order. IOError, Corruption: as writes;
  // nothing is applied or counted then, so a retry loses nothing.
  virtual Status ApplyCommitted(const std::vector<Entry>& entries, uint64_t applied_revision,
                                const std::vector<SkippedMessage>& skipped = {},
                                std::vector<SkippedMessage>* newly_skipped = nullptr) = 0;

  // This process's own writes, acknowledged by the stream but not yet
  // delivered by its consumer, applied ahead of it: `entries` must follow
  // LastRevision() without a gap (the first is LastRevision() + 1, each
  // next one + 1), so that nothing the stream holds between them is
  // passed. Their created_ns is provisional (the server's acknowledgement
  // carries no time): when ApplyCommitted later receives the same revision,
  // it rewrites the record with the stream's time instead of skipping it as
  // a redelivery, without a second event for listeners. A revision the
  // consumer never delivers (removed meanwhile) keeps its provisional time.
  // InvalidArgument: entries that do not follow LastRevision(). Otherwise
  // as ApplyCommitted.
  virtual Status ApplyOwnWrites(const std::vector<Entry>& entries) = 0;
  // Where the stream's consumer resumes after: LastRevision(), or the
  // position it reached while own writes applied ahead of it still wait
  // for their delivery (kept across a restart, so that their times are
  // still corrected; ApplyCommitted rewrites them as they come again).
  virtual uint64_t ResumeRevision() = 0;

  // A replica filling from a snapshot: it was empty when the fill began
  // (just created or reset) and each key comes at most once across the
  // fill, so no key can have a stored record yet and none is read (the
  // per-key head read is most of an apply's cost). The caller guarantees
  // both; a key that came twice would leave its older record behind as
  // history. A page is encoded by PrepareSnapshotFill, on any thread and
  // without the write lock (so the next page is encoded while one commits),
  // from entries in revision order; CommitSnapshotFill then commits it as
  // ApplyCommitted would, with `applied_revision`, in page order.
  // InvalidArgument: entries out of order, or a page at or below
  // LastRevision(). IOError, Corruption: as ApplyCommitted.
  class PreparedFill {
   public:
    virtual ~PreparedFill() = default;
  };
  virtual std::unique_ptr<PreparedFill> PrepareSnapshotFill(
      std::vector<Entry> entries, std::vector<SkippedMessage> skipped) = 0;
  virtual Status CommitSnapshotFill(std::unique_ptr<PreparedFill> page,
                                    uint64_t applied_revision) = 0;

  // What ApplyCommitted skipped, as kept in the store (so a read-only
  // follower sees it too). Corruption: the stored summary is damaged.
  virtual Result<SkipSummary> Skipped() = 0;
  // Fills the skip fields of `out` from Skipped(), or notes in out->error
  // why it could not be read.
  virtual void ReportSkips(BucketStatus* out) = 0;

  // The identity of the stream this bucket replicates (its creation time),
  // 0 when none was recorded.
  virtual Result<int64_t> ReplicaSource() = 0;
  // Drops every entry, the applied revision and the skip count, and records
  // `source` as the stream now replicated, in one commit. Used when the
  // stream the replica mirrored was deleted and recreated, or fell behind
  // the replica.
  virtual Status ResetReplica(int64_t source) = 0;

  // How reads judge expiry: the stream's max_age and the grace for clock
  // skew.
  virtual void SetExpiry(const ExpiryRules& rules) = 0;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_REPLICA_SINK_H_
