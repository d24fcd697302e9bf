#include "engine/commit_path.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/txn_rules.h"
#include "revkv/validation.h"

namespace revkv::engine {

CommitPath::CommitPath(BucketStore* store, uint64_t last_revision)
    : store_(store), last_revision_(last_revision) {}

CommitPath::~CommitPath() {
  {
    std::lock_guard<std::mutex> lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

void CommitPath::ResumeReaper() {
  if (store_->is_follower()) return;
  BucketStore::DueExpiry first;
  if (store_->FirstExpiry(&first)) StartReaper();
}

Status CommitPath::ReadHeadLocked(std::string_view key, KeyHead* head) {

  // With history 1 a write needs only the revision and operation of the
  // record it replaces, which the cache usually holds.
  if (auto cached = write_cache_.find(key); cached != write_cache_.end()) {
    head->exists = true;
    head->revision = cached->second.revision;
    head->operation = cached->second.operation;
    head->created_ns = cached->second.created_ns;
    head->ttl_ns = cached->second.ttl_ns;
    return Status::OK();
  }
  return store_->ReadHead(key, head);
}

void CommitPath::RememberLocked(const Entry& entry) {
  if (store_->config().history != 1) return;
  const KeyState state{entry.revision, entry.operation, entry.created_ns, entry.ttl_ns};
  if (auto it = write_cache_.find(entry.key); it != write_cache_.end()) {
    it->second = state;
    return;
  }
  // A full cache is dropped whole: cheaper than tracking recency, and a miss
  // only costs the read the cache saves.
  if (write_cache_.size() >= kWriteCacheEntries) write_cache_.clear();
  write_cache_.emplace(entry.key, state);
}

Status CommitPath::Check(const KeyCompare& compare, const KeyHead& head) const {
  // An expired entry is no entry: reads say NotFound, and the checks agree
  // with them until the reaper writes its tombstone.
  const bool live = head.exists && !store_->ExpiredNow(head.created_ns, head.ttl_ns);
  const uint64_t current = live ? head.revision : 0;
  const bool present = live && head.operation == Operation::kPut;
  switch (compare.kind) {
    case KeyCompare::Kind::kAbsentOrTombstone:
      // After a tombstone this is a compare-and-swap on the tombstone's
      // revision: the check and the write happen under write_mu_.
      if (!present) return Status::OK();
      return Status::Exists(store_->Describe(compare.key) + " exists at revision " +
                                std::to_string(current) +
                                "; use Update with that revision to change it",
                            current);
    case KeyCompare::Kind::kAbsent:
      if (!present) return Status::OK();
      return Status::Conflict(store_->Describe(compare.key) + " is present at revision " +
                                  std::to_string(current) + "; re-read the key and retry",
                              current);
    case KeyCompare::Kind::kPresent:
      if (present) return Status::OK();
      return Status::Conflict(store_->Describe(compare.key) + " is not present (" +
                                  (current == 0 ? std::string("no entry")
                                                : "a tombstone at revision " +
                                                      std::to_string(current)) +
                                  "); re-read the key and retry",
                              current);
    case KeyCompare::Kind::kRevision:
      if (current == compare.revision) return Status::OK();
      return WrongRevisionConflict(store_->Describe(compare.key), compare.revision, current);
  }
  return Status::OK();
}

Status CommitPath::HeadLocked(Staging* staging, std::string_view key, KeyHead* head) {
  if (auto it = staging->heads.find(std::string(key)); it != staging->heads.end()) {
    *head = std::move(it->second);
    return Status::OK();
  }
  return ReadHeadLocked(key, head);
}

Status CommitPath::StageEntryLocked(Staging* staging, Entry entry, bool index_ttl) {
  KeyHead head;
  if (Status s = HeadLocked(staging, entry.key, &head); !s.ok()) return s;
  if (index_ttl && entry.ttl_ns > 0 &&
      (staging->reap_at == 0 || entry.created_ns + entry.ttl_ns < staging->reap_at)) {
    staging->reap_at = entry.created_ns + entry.ttl_ns;
  }
  staging->heads[entry.key] =
      store_->Stage(&staging->batch, entry, std::move(head), index_ttl,
                    staging->defer_trims ? &staging->trims : nullptr);
  staging->entries.push_back(std::move(entry));
  return Status::OK();
}

Status CommitPath::StageRewriteLocked(Staging* staging, const Entry& entry) {
  KeyHead head;
  if (Status s = HeadLocked(staging, entry.key, &head); !s.ok()) return s;
  const bool latest = head.exists && head.revision == entry.revision;
  staging->heads[entry.key] = store_->StageRewrite(&staging->batch, entry, std::move(head));
  if (latest) staging->rewritten.push_back(entry);
  return Status::OK();
}

void CommitPath::StageOnlyEntryLocked(Staging* staging, Entry entry, KeyHead&& head,
                                      bool index_ttl) {
  if (index_ttl && entry.ttl_ns > 0 &&
      (staging->reap_at == 0 || entry.created_ns + entry.ttl_ns < staging->reap_at)) {
    staging->reap_at = entry.created_ns + entry.ttl_ns;
  }
  store_->Stage(&staging->batch, entry, std::move(head), index_ttl,
                staging->defer_trims ? &staging->trims : nullptr);
  staging->entries.push_back(std::move(entry));
}

void CommitPath::StageFloorLocked(rocksdb::WriteBatch* batch, uint64_t last,
                                  std::vector<uint64_t>&& more_trims) {
  std::vector<uint64_t> trims = std::move(more_trims);
  trims.insert(trims.end(), trims_.begin(), trims_.end());
  // In revision order: consecutive deletes land near each other in the
  // log's memtable.
  std::sort(trims.begin(), trims.end());
  store_->StageTrims(batch, trims);
  store_->StageCounter(batch, last);
}

void CommitPath::FlooredLocked() {
  trims_.clear();
  unfloored_commits_ = 0;
}

Status CommitPath::FinishLocked(Staging* staging, uint64_t last, bool floor,
                                const std::function<std::string()>& what) {
  floor = floor || unfloored_commits_ + 1 >= kFloorCommits;
  if (floor) StageFloorLocked(&staging->batch, last, std::move(staging->trims));
  if (Status s = store_->Write(&staging->batch, what); !s.ok()) {
    for (const auto& [key, head] : staging->heads) write_cache_.erase(key);
    for (const Entry& e : staging->entries) write_cache_.erase(e.key);
    return s;
  }
  if (floor) {
    FlooredLocked();
  } else {
    trims_.insert(trims_.end(), staging->trims.begin(), staging->trims.end());
    ++unfloored_commits_;
  }
  // Rewrites first: they are older than any entry the commit adds.
  for (const Entry& e : staging->rewritten) RememberLocked(e);
  if (!staging->fill) {
    for (const Entry& e : staging->entries) RememberLocked(e);
  }
  // After the store has them, so that a read that missed the cache and
  // read the store before this cannot fill it with what they replaced.
  if (EntryCache* cache = store_->cache()) {
    if (staging->clears) cache->Clear();
    for (const Entry& e : staging->rewritten) cache->Commit(e);
    for (const Entry& e : staging->entries) cache->Commit(e);
  }
  // Last: a reader that sees the new revision (a replicated write waiting
  // for its own revision to apply) must find the entries in the cache too.
  last_revision_.store(last, std::memory_order_release);
  if (has_listeners_.load(std::memory_order_relaxed)) {
    for (const Entry& e : staging->entries) {
      for (const auto& [id, listener] : listeners_) listener(e);
    }
  }
  if (staging->reap_at != 0) {
    StartReaper();
    std::lock_guard<std::mutex> lock(reaper_mu_);
    if (reaper_wake_ns_ == 0 || staging->reap_at < reaper_wake_ns_) {
      reaper_wake_ns_ = staging->reap_at;
    }
    reaper_cv_.notify_all();
  }
  return Status::OK();
}

Result<std::vector<uint64_t>> CommitPath::CommitLocked(const std::vector<KeyCompare>& compares,
                                                        const std::vector<WriteOp>& writes,
                                                        const std::string* expired_index) {
  Staging staging;
  staging.defer_trims = true;
  // Every check runs against the state before the commit.
  std::vector<KeyHead> heads(writes.size());
  for (const KeyCompare& compare : compares) {
    KeyHead head;
    if (Status s = ReadHeadLocked(compare.key, &head); !s.ok()) return s;
    if (Status s = Check(compare, head); !s.ok()) return s;
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    const WriteOp& w = writes[i];
    if (Status s = ReadHeadLocked(w.key, &heads[i]); !s.ok()) return s;
    switch (w.pre) {
      case Precondition::kNone: break;
      case Precondition::kAbsentOrTombstone:
        if (Status s = Check({w.key, KeyCompare::Kind::kAbsentOrTombstone, 0}, heads[i]); !s.ok()) {
          return s;
        }
        break;
      case Precondition::kRevision:
        if (Status s = Check({w.key, KeyCompare::Kind::kRevision, w.expected_revision}, heads[i]);
            !s.ok()) {
          return s;
        }
        break;
    }
  }
  const uint64_t first = last_revision_.load(std::memory_order_relaxed) + 1;
  const int64_t now = WallClockNs();
  std::vector<uint64_t> revisions;
  revisions.reserve(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    const WriteOp& w = writes[i];
    Entry entry;
    entry.key.assign(w.key);
    if (w.op == Operation::kPut) entry.value.assign(w.value);
    entry.revision = first + i;
    entry.created_ns = now;
    entry.operation = w.op;
    entry.ttl_ns = w.ttl_ns;
    // The head read for the checks is the one to stage on; the keys are
    // distinct.
    StageOnlyEntryLocked(&staging, std::move(entry), std::move(heads[i]), /*index_ttl=*/true);
    revisions.push_back(first + i);
  }
  if (expired_index != nullptr) store_->StageExpired(&staging.batch, *expired_index, {}, {});
  const uint64_t last = revisions.empty() ? first - 1 : revisions.back();
  if (Status s = FinishLocked(&staging, last, /*floor=*/false,
                              [&] {
                                return writes.size() == 1
                                           ? "writing " + store_->Describe(writes[0].key)
                                           : "committing " + std::to_string(writes.size()) +
                                                 " writes to bucket '" + store_->name() + "'";
                              });
      !s.ok()) {
    return s;
  }
  return revisions;
}

Status CommitPath::Apply(const std::vector<Entry>& entries, uint64_t applied_revision,
                         const std::vector<ReplicaSink::SkippedMessage>& skipped,
                         std::vector<ReplicaSink::SkippedMessage>* newly_skipped) {
  using SkippedMessage = ReplicaSink::SkippedMessage;
  std::lock_guard<std::mutex> lock(write_mu_);
  const uint64_t last = last_revision_.load(std::memory_order_relaxed);
  Staging staging;
  // What can never be applied. A message whose revision was unreadable (0)
  // cannot be told from a redelivery, so it always counts.
  std::vector<SkippedMessage> skips;
  for (const SkippedMessage& m : skipped) {
    if (m.revision == 0 || m.revision > last) skips.push_back(m);
  }
  uint64_t prev = last;
  // The stream position the consumer reached (not applied_revision: a
  // catch-up may move that past own writes not yet delivered).
  uint64_t delivered = 0;
  for (const SkippedMessage& m : skipped) delivered = std::max(delivered, m.revision);
  const bool had_provisional = !provisional_.empty();
  for (const Entry& e : entries) {
    delivered = std::max(delivered, e.revision);
    if (e.revision <= prev) {
      if (e.revision > last) {
        return Status::InvalidArgument("entries to apply to bucket '" + store_->name() +
                                       "' are out of order at revision " +
                                       std::to_string(e.revision));
      }
      // Already applied: a redelivery, or one of our own writes applied
      // ahead of the consumer, whose provisional time this corrects.
      if (provisional_.erase(e.revision) != 0) {
        if (Status s = StageRewriteLocked(&staging, e); !s.ok()) return s;
      }
      continue;
    }
    prev = e.revision;
    // Another client's key need not follow revkv's write rules; only a key
    // that no bucket can hold (one the store's layout cannot take) is left
    // out.
    if (Status s = ValidateReadKey(e.key); !s.ok()) {
      skips.push_back({e.revision, "its key cannot be stored: " + std::string(s.message())});
      continue;
    }
    if (Status s = StageEntryLocked(&staging, e, /*index_ttl=*/false); !s.ok()) return s;
  }
  // Own writes the consumer passed without delivering (removed since) keep
  // their provisional time.
  if (had_provisional) {
    provisional_.erase(provisional_.begin(), provisional_.upper_bound(delivered));
    if (provisional_.empty()) {
      store_->StageOwnDelivered(&staging.batch, std::nullopt);
    } else if (delivered > delivered_) {
      delivered_ = delivered;
      store_->StageOwnDelivered(&staging.batch, delivered_);
    }
  }
  return FinishApplyLocked(&staging, std::max(prev, applied_revision), std::move(skips),
                           newly_skipped);
}

Status CommitPath::ApplyOwn(const std::vector<Entry>& entries) {
  std::lock_guard<std::mutex> lock(write_mu_);
  const uint64_t last = last_revision_.load(std::memory_order_relaxed);
  Staging staging;
  if (provisional_.empty()) {
    // Everything applied so far came through the consumer.
    delivered_ = last;
    store_->StageOwnDelivered(&staging.batch, last);
  }
  uint64_t next = last + 1;
  for (const Entry& e : entries) {
    if (e.revision != next) {
      return Status::InvalidArgument(
          "own writes to apply to bucket '" + store_->name() + "' must follow its applied "
          "revision " + std::to_string(next - 1) + " without a gap; got revision " +
          std::to_string(e.revision));
    }
    ++next;
    if (Status s = ValidateReadKey(e.key); !s.ok()) return s;
    if (Status s = StageEntryLocked(&staging, e, /*index_ttl=*/false); !s.ok()) return s;
  }
  if (entries.empty()) return Status::OK();
  if (Status s = FinishApplyLocked(&staging, next - 1, {}, nullptr); !s.ok()) return s;
  for (const Entry& e : entries) provisional_.insert(provisional_.end(), e.revision);
  while (provisional_.size() > kMaxProvisional) provisional_.erase(provisional_.begin());
  return Status::OK();
}

uint64_t CommitPath::ResumeRevision() {
  std::lock_guard<std::mutex> lock(write_mu_);
  return provisional_.empty() ? last_revision_.load(std::memory_order_relaxed) : delivered_;
}

void CommitPath::ResumeProvisional() {
  if (store_->is_follower()) return;
  std::lock_guard<std::mutex> lock(write_mu_);
  auto delivered = store_->OwnDelivered();
  std::vector<uint64_t> revisions;
  Status s = delivered.ok() ? Status::OK() : delivered.status();
  if (s.ok() && *delivered) s = store_->LogRevisionsAfter(**delivered, &revisions);
  if (!s.ok()) {
    // Only the correction of provisional times is lost.
    store_->log().Warning(s.ToString() + "; the replica keeps the times it has");
    return;
  }
  if (!*delivered) return;
  delivered_ = **delivered;
  provisional_.insert(revisions.begin(), revisions.end());
}

Status CommitPath::FinishApplyLocked(Staging* staging, uint64_t new_last,
                                     std::vector<ReplicaSink::SkippedMessage> skips,
                                     std::vector<ReplicaSink::SkippedMessage>* newly_skipped) {
  using SkippedMessage = ReplicaSink::SkippedMessage;
  const uint64_t last = last_revision_.load(std::memory_order_relaxed);
  for (const SkippedMessage& m : skips) new_last = std::max(new_last, m.revision);
  if (new_last == last && skips.empty() && staging->batch.Count() == 0) return Status::OK();
  std::optional<ReplicaSink::SkipSummary> counted;
  if (!skips.empty()) {
    std::stable_sort(
        skips.begin(), skips.end(),
        [](const SkippedMessage& a, const SkippedMessage& b) { return a.revision < b.revision; });
    if (!skips_) {
      auto stored = store_->Skipped();
      if (!stored.ok()) return stored.status();
      skips_ = std::move(*stored);
    }
    counted = *skips_;
    if (counted->count == 0) {
      counted->first_revision = skips.front().revision;
      counted->first_reason = skips.front().reason;
    }
    counted->count += skips.size();
    store_->StageSkips(&staging->batch, *counted);
  }
  // A replica's applied revision moves across gaps and skips, so it cannot
  // be rebuilt from the log: every apply writes it.
  if (Status s = FinishLocked(staging, new_last, /*floor=*/true,
                              [&] {
                                return "applying revisions up to " + std::to_string(new_last) +
                                       " to bucket '" + store_->name() + "'";
                              });
      !s.ok()) {
    return s;
  }
  if (counted) skips_ = std::move(counted);
  if (newly_skipped != nullptr) {
    newly_skipped->insert(newly_skipped->end(), skips.begin(), skips.end());
  }
  return Status::OK();
}

// A snapshot page, staged ahead of its commit.
struct CommitPath::Fill : ReplicaSink::PreparedFill {
  Staging staging;
  std::vector<ReplicaSink::SkippedMessage> skips;
  uint64_t first = 0;  // the lowest revision staged or skipped; 0: none
  uint64_t last = 0;   // the highest
  Status error;        // entries out of order
};

std::unique_ptr<ReplicaSink::PreparedFill> CommitPath::PrepareFill(
    std::vector<Entry> entries, std::vector<ReplicaSink::SkippedMessage> skipped) {
  // No lock: staging reads nothing of the bucket's state (the keys are new)
  // and writes only the page's own batch.
  auto fill = std::make_unique<Fill>();
  fill->staging.fill = true;
  fill->skips = std::move(skipped);
  for (const auto& m : fill->skips) {
    if (m.revision != 0 && (fill->first == 0 || m.revision < fill->first)) fill->first = m.revision;
    fill->last = std::max(fill->last, m.revision);
  }
  uint64_t prev = 0;
  for (Entry& e : entries) {
    if (e.revision <= prev) {
      fill->error = Status::InvalidArgument("a snapshot page of bucket '" + store_->name() +
                                            "' is out of order at revision " +
                                            std::to_string(e.revision));
      return fill;
    }
    prev = e.revision;
    if (fill->first == 0 || e.revision < fill->first) fill->first = e.revision;
    fill->last = std::max(fill->last, e.revision);
    if (Status s = ValidateReadKey(e.key); !s.ok()) {
      fill->skips.push_back({e.revision, "its key cannot be stored: " + std::string(s.message())});
      continue;
    }
    store_->Stage(&fill->staging.batch, e, KeyHead{}, /*index_ttl=*/false);
    fill->staging.entries.push_back(std::move(e));
  }
  return fill;
}

Status CommitPath::CommitFill(std::unique_ptr<ReplicaSink::PreparedFill> prepared,
                              uint64_t applied_revision) {
  auto* fill = static_cast<Fill*>(prepared.get());
  if (!fill->error.ok()) return fill->error;
  std::lock_guard<std::mutex> lock(write_mu_);
  const uint64_t last = last_revision_.load(std::memory_order_relaxed);
  if (fill->first != 0 && fill->first <= last) {
    return Status::InvalidArgument("a snapshot page of bucket '" + store_->name() +
                                   "' starts at revision " + std::to_string(fill->first) +
                                   ", not after the applied revision " + std::to_string(last));
  }
  return FinishApplyLocked(&fill->staging, std::max(fill->last, applied_revision),
                           std::move(fill->skips), nullptr);
}

Status CommitPath::Reset(int64_t source) {
  std::lock_guard<std::mutex> lock(write_mu_);
  Staging staging;
  store_->StageReset(&staging.batch, source);
  staging.clears = true;
  write_cache_.clear();
  provisional_.clear();
  if (Status s = FinishLocked(&staging, 0, /*floor=*/true,
                              [&] { return "resetting the replica of bucket '" + store_->name() + "'"; });
      !s.ok()) {
    return s;
  }
  skips_ = ReplicaSink::SkipSummary{};
  return Status::OK();
}

uint64_t CommitPath::AddListener(CommitFeed::CommitListener listener) {
  std::lock_guard<std::mutex> lock(write_mu_);
  uint64_t id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  has_listeners_.store(true, std::memory_order_relaxed);
  return id;
}

void CommitPath::RemoveListener(uint64_t id) {
  std::lock_guard<std::mutex> lock(write_mu_);
  listeners_.erase(id);
  has_listeners_.store(!listeners_.empty(), std::memory_order_relaxed);
}

void CommitPath::RunWithWritesHeld(const std::function<void(uint64_t last_revision)>& fn) {
  std::lock_guard<std::mutex> lock(write_mu_);
  fn(last_revision_.load(std::memory_order_acquire));
}

void CommitPath::StartReaper() {
  std::lock_guard<std::mutex> lock(reaper_mu_);
  if (reaper_.joinable() || reaper_stop_ || store_->is_follower()) return;
  reaper_ = std::thread(&CommitPath::RunReaper, this);
}

void CommitPath::RunReaper() {
  // Waits are capped, so that a jump of the wall clock (which deadlines are
  // in) delays an expiry tombstone by at most this much. Reads never wait
  // for the reaper: they treat an expired entry as gone on their own.
  constexpr auto kMaxWait = std::chrono::seconds(1);
  std::unique_lock<std::mutex> lock(reaper_mu_);
  while (!reaper_stop_) {
    reaper_wake_ns_ = 0;
    lock.unlock();
    const int64_t next = ReapDue(WallClockNs());
    lock.lock();
    if (reaper_stop_) break;
    if (reaper_wake_ns_ != 0 && (next == 0 || reaper_wake_ns_ < next)) continue;
    auto wait = std::chrono::nanoseconds(next == 0 ? kMaxWait.count() * 1000000000LL
                                                   : std::max<int64_t>(0, next - WallClockNs()));
    wait = std::min<std::chrono::nanoseconds>(wait, kMaxWait);
    reaper_cv_.wait_for(lock, wait, [&] {
      return reaper_stop_ || (reaper_wake_ns_ != 0 && (next == 0 || reaper_wake_ns_ < next));
    });
  }
}

int64_t CommitPath::ReapDue(int64_t now_ns) {
  constexpr int kBatch = 256;  // then look at the clock again
  for (int handled = 0; handled < kBatch; ++handled) {
    BucketStore::DueExpiry due;
    if (!store_->FirstExpiry(&due)) return 0;
    if (due.due_ns > now_ns) return due.due_ns;
    std::lock_guard<std::mutex> lock(write_mu_);
    KeyHead head;
    Status s = ReadHeadLocked(due.key, &head);
    const bool current = s.ok() && head.exists && head.revision == due.revision;
    if (current && head.operation == Operation::kPut) {
      // The entry expired: a Purge tombstone with its own revision, as the
      // server's limit marker, so that watchers and ChangesSince see it.
      s = CommitLocked({}, {{Operation::kPurge, due.key, {}, Precondition::kNone, 0, 0}},
                       &due.index)
              .status();
    } else {
      // A Purge tombstone with a TTL removes itself and leaves nothing
      // (Purge already dropped the key's older revisions).
      rocksdb::WriteBatch batch;
      const bool drops_log = current && head.operation == Operation::kPurge;
      store_->StageExpired(&batch, due.index, due.key,
                           drops_log ? std::optional<uint64_t>(due.revision) : std::nullopt);
      // The tombstone's log record may be the last one, which the revision
      // is rebuilt from at open, and may name deferred trims: write the
      // floor, and those trims, with it.
      if (drops_log) StageFloorLocked(&batch, last_revision_.load(std::memory_order_relaxed), {});
      s = store_->Write(&batch, [&] { return "expiring " + store_->Describe(due.key); });
      if (s.ok() && drops_log) FlooredLocked();
      write_cache_.erase(due.key);
      if (EntryCache* cache = store_->cache()) cache->Invalidate(due.key);
    }
    if (!s.ok()) {
      // A full disk, say: try again later; reads already treat it as gone.
      store_->log().Error(s.ToString() + "; retrying in 1 s");
      return now_ns + 1000000000LL;
    }
  }
  return now_ns;  // more may be due
}

}  // namespace revkv::engine
