#include "engine/bucket_store.h"

#include <rocksdb/snapshot.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "engine/entry_cache.h"
#include "engine/layout.h"
#include "engine/rocks.h"
#include "revkv/validation.h"

namespace revkv::engine {
namespace {

// The literal part of a filter before its first wildcard token, so that Keys
// can seek instead of scanning the whole bucket. "a.b.*" -> "a.b.".
std::string LiteralPrefix(std::string_view filter) {
  std::string out;
  size_t start = 0;
  while (start < filter.size()) {
    size_t end = filter.find('.', start);
    if (end == std::string_view::npos) end = filter.size();
    std::string_view token = filter.substr(start, end - start);
    if (token == "*" || token == ">") return out;
    if (end == filter.size()) {
      out.append(token);  // whole filter is literal: exact key
      return out;
    }
    out.append(filter.substr(start, end - start + 1));
    start = end + 1;
  }
  return out;
}

// The skip summary's bytes in the meta family (layout.h).
std::string EncodeSkips(const ReplicaSink::SkipSummary& skips) {
  std::string out;
  AppendBE64(&out, skips.count);
  AppendBE64(&out, skips.first_revision);
  out += skips.first_reason;
  return out;
}

// A RocksDB snapshot, released when it goes out of scope.
class HeldSnapshot {
 public:
  explicit HeldSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~HeldSnapshot() { db_->ReleaseSnapshot(snapshot_); }
  HeldSnapshot(const HeldSnapshot&) = delete;
  HeldSnapshot& operator=(const HeldSnapshot&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* const db_;
  const rocksdb::Snapshot* const snapshot_;
};

}  // namespace

BucketStore::BucketStore(std::shared_ptr<StoreCore> core, std::string name,
                         rocksdb::ColumnFamilyHandle* cf, rocksdb::ColumnFamilyHandle* log_cf,
                         BucketConfigValues config)
    : core_(std::move(core)), name_(std::move(name)), cf_(cf), log_cf_(log_cf), config_(config) {
  // A follower sees the holder's commits only through the store, never
  // through its own commit path: it cannot keep a cache exact.
  if (core_->options.entry_cache_bytes > 0 && !is_follower()) {
    cache_ = std::make_unique<EntryCache>(core_->options.entry_cache_bytes);
  }
}

void BucketStore::SetExpiry(const ExpiryRules& rules) {
  max_age_ns_.store(rules.max_age_ns, std::memory_order_relaxed);
  grace_ns_.store(rules.grace_ns, std::memory_order_relaxed);
}

bool BucketStore::ExpiredNow(int64_t created_ns, int64_t ttl_ns) const {
  const ExpiryRules rules = Expiry();
  return MayExpire(ttl_ns, rules) && IsExpired(created_ns, ttl_ns, rules, WallClockNs());
}

Status BucketStore::ExpiredError(std::string_view key) const {
  // The server holds no message of the key any more (or only a limit
  // marker, which the replica applies as a tombstone when it arrives).
  return Status::NotFound(Describe(key) + " not found: it expired");
}

std::string BucketStore::Describe(std::string_view key) const {
  return "key '" + std::string(key) + "' of bucket '" + name_ + "'";
}
Status BucketStore::Unreadable(std::string_view key, Operation op, uint64_t revision,
                               int64_t created_ns, int64_t ttl_ns) const {
  if (ExpiredNow(created_ns, ttl_ns)) return ExpiredError(key);
  if (op != Operation::kPut) {
    return Status::NotFound(Describe(key) + " not found: " +
                                (op == Operation::kDelete ? "deleted" : "purged") +
                                " at revision " + std::to_string(revision),
                            revision);
  }
  return Status::OK();
}

Result<bool> BucketStore::CachedLatest(std::string_view key, Entry* e) {
  if (cache_->Lookup(key, e)) return true;
  const uint64_t stamp = cache_->Stamp(key);
  auto stored = ReadLatest(key);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return false;
  *e = std::move(**stored);
  cache_->Fill(*e, stamp);
  return true;
}

Result<std::string> BucketStore::Get(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  if (cache_) {
    std::string value;
    Operation op;
    uint64_t revision;
    int64_t created_ns, ttl_ns;
    if (cache_->LookupValue(key, &value, &op, &revision, &created_ns, &ttl_ns)) {
      if (Status s = Unreadable(key, op, revision, created_ns, ttl_ns); !s.ok()) return s;
      return value;
    }
    Entry e;
    auto found = CachedLatest(key, &e);
    if (!found.ok()) return found.status();
    if (!*found) return Status::NotFound(Describe(key) + " not found");
    if (Status s = Unreadable(key, e.operation, e.revision, e.created_ns, e.ttl_ns); !s.ok()) {
      return s;
    }
    return std::move(e.value);
  }
  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return Status::NotFound(Describe(key) + " not found");
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  Operation op;
  uint64_t revision;
  std::string value;
  RecordTimes times;
  if (Status s = DecodeValueInto(slice.ToStringView(), RecordName{name_, key}, &op,
                                 &revision, &value, &times);
      !s.ok()) {
    return s;
  }
  if (Status s = Unreadable(key, op, revision, times.created_ns, times.ttl_ns); !s.ok()) return s;
  return value;
}

Result<Entry> BucketStore::GetEntry(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  Entry e;
  if (cache_) {
    auto found = CachedLatest(key, &e);
    if (!found.ok()) return found.status();
    if (!*found) return Status::NotFound(Describe(key) + " not found");
  } else {
    auto stored = ReadLatest(key);
    if (!stored.ok()) return stored.status();
    if (!stored->has_value()) return Status::NotFound(Describe(key) + " not found");
    e = std::move(**stored);
  }
  if (Status s = Unreadable(key, e.operation, e.revision, e.created_ns, e.ttl_ns); !s.ok()) {
    return s;
  }
  return e;
}

Status BucketStore::ReadHead(std::string_view key, KeyHead* head) {
  rocksdb::PinnableSlice current;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &current);
  if (rs.IsNotFound()) return Status::OK();
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto decoded = DecodeRecord(current.ToStringView(), DecodeParts::kHeader, RecordName{name_, key});
  if (!decoded.ok()) return decoded.status();
  head->exists = true;
  head->revision = decoded->entry.revision;
  head->operation = decoded->entry.operation;
  head->created_ns = decoded->entry.created_ns;
  head->ttl_ns = decoded->entry.ttl_ns;
  head->older = std::move(decoded->older_revisions);
  if (config_.history > 1) head->raw.assign(current.data(), current.size());
  return Status::OK();
}

BucketStore::KeyHead BucketStore::Stage(rocksdb::WriteBatch* batch, const Entry& entry,
                                        KeyHead&& head, bool index_ttl,
                                        std::vector<uint64_t>* deferred_trims) const {
  // Decide which earlier revisions stay retained under the history setting.
  std::vector<uint64_t> older;
  std::vector<uint64_t> dropped_history;  // have an 'h' record to delete
  std::vector<uint64_t> dropped_log;      // have a log record to delete
  if (head.exists) {
    older = std::move(head.older);
    if (entry.operation == Operation::kPurge) {
      dropped_history = older;
      dropped_log = older;
      dropped_log.push_back(head.revision);
      older.clear();
    } else {
      older.push_back(head.revision);
      size_t keep = static_cast<size_t>(config_.history - 1);
      size_t drop = older.size() > keep ? older.size() - keep : 0;
      for (size_t i = 0; i < drop; ++i) {
        if (older[i] != head.revision) dropped_history.push_back(older[i]);
        dropped_log.push_back(older[i]);
      }
      older.erase(older.begin(), older.begin() + static_cast<std::ptrdiff_t>(drop));
      if (!older.empty() && older.back() == head.revision) {
        // The replaced record becomes history. Its bytes carry its own older
        // list, which readers of history records ignore.
        batch->Put(cf_, HistoryKey(entry.key, head.revision), head.raw);
      }
    }
  }
  for (uint64_t r : dropped_history) batch->Delete(cf_, HistoryKey(entry.key, r));
  if (deferred_trims == nullptr) {
    for (uint64_t r : dropped_log) batch->Delete(log_cf_, RevisionKey(r));
  }

  KeyHead next;
  next.exists = true;
  next.revision = entry.revision;
  next.operation = entry.operation;
  next.created_ns = entry.created_ns;
  next.ttl_ns = entry.ttl_ns;
  std::string record = EncodeRecord(entry, older);
  batch->Put(cf_, LatestKey(entry.key), record);
  if (deferred_trims == nullptr || dropped_log.empty()) {
    batch->Put(log_cf_, RevisionKey(entry.revision), entry.key);
  } else {
    batch->Put(log_cf_, RevisionKey(entry.revision), LogValue(entry.key, dropped_log));
    deferred_trims->insert(deferred_trims->end(), dropped_log.begin(), dropped_log.end());
  }
  if (index_ttl && entry.ttl_ns > 0) {
    std::string rev;
    AppendBE64(&rev, entry.revision);
    batch->Put(cf_, ExpiryKey(entry.created_ns + entry.ttl_ns, entry.key), rev);
  }
  next.older = std::move(older);
  if (config_.history > 1) next.raw = std::move(record);
  return next;
}
BucketStore::KeyHead BucketStore::StageRewrite(rocksdb::WriteBatch* batch, const Entry& entry,
                                               KeyHead&& head) const {
  if (head.exists && head.revision == entry.revision) {
    std::string record = EncodeRecord(entry, head.older);
    batch->Put(cf_, LatestKey(entry.key), record);
    head.operation = entry.operation;
    head.created_ns = entry.created_ns;
    head.ttl_ns = entry.ttl_ns;
    if (config_.history > 1) head.raw = std::move(record);
    return std::move(head);
  }
  if (std::find(head.older.begin(), head.older.end(), entry.revision) != head.older.end()) {
    // A history record's own older list is never read (see Stage).
    batch->Put(cf_, HistoryKey(entry.key, entry.revision), EncodeRecord(entry, {}));
  }
  return std::move(head);
}

Result<ReplicaSink::SkipSummary> BucketStore::Skipped() {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, SkipKey(name_), &raw);
  ReplicaSink::SkipSummary out;
  if (rs.IsNotFound()) return out;
  if (!rs.ok()) return FromRocks(rs, "reading the skipped messages of bucket '" + name_ + "'");
  if (raw.size() < 16) {
    return Status::Corruption("the count of skipped messages of bucket '" + name_ + "' is " +
                              std::to_string(raw.size()) +
                              " bytes, fewer than 16; restore the store from a backup or replica");
  }
  out.count = DecodeBE64(raw);
  out.first_revision = DecodeBE64(std::string_view(raw).substr(8));
  out.first_reason = raw.substr(16);
  return out;
}
Result<int64_t> BucketStore::ReplicaSource() {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, SourceKey(name_), &raw);
  if (rs.IsNotFound()) return int64_t{0};
  if (!rs.ok()) return FromRocks(rs, "reading the replica source of bucket '" + name_ + "'");
  return static_cast<int64_t>(DecodeBE64(raw));
}
Result<std::optional<uint64_t>> BucketStore::OwnDelivered() {
  std::string raw;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), core_->meta, OwnKey(name_), &raw);
  if (rs.IsNotFound()) return std::optional<uint64_t>();
  if (!rs.ok()) return FromRocks(rs, "reading the own-write position of bucket '" + name_ + "'");
  return std::optional<uint64_t>(DecodeBE64(raw));
}

Status BucketStore::LogRevisionsAfter(uint64_t after, std::vector<uint64_t>* out) {
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(rocksdb::ReadOptions(), log_cf_));
  for (it->Seek(RevisionKey(after + 1)); it->Valid(); it->Next()) {
    out->push_back(DecodeBE64(it->key().ToStringView()));
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), "reading the revision log of bucket '" + name_ + "'");
  }
  return Status::OK();
}

void BucketStore::StageOwnDelivered(rocksdb::WriteBatch* batch,
                                    std::optional<uint64_t> delivered) const {
  if (!delivered) {
    batch->Delete(core_->meta, OwnKey(name_));
    return;
  }
  std::string raw;
  AppendBE64(&raw, *delivered);
  batch->Put(core_->meta, OwnKey(name_), raw);
}

Status BucketStore::ScanLatest(std::string_view filter, const rocksdb::Snapshot* snapshot,
                               DecodeParts parts,
                               const std::function<bool(std::string_view, Record&&)>& fn,
                               std::string_view after) {
  if (Status s = ValidateReadFilter(filter); !s.ok()) return s;
  std::string prefix = LatestKey(LiteralPrefix(filter));
  // Past `after`: its own record, then the next key up. Latest keys sort as
  // their keys do ('k' + key).
  std::string start = prefix;
  if (!after.empty() && LatestKey(after) >= prefix) start = LatestKey(after);
  std::string upper(1, static_cast<char>(kLatestPrefix + 1));
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, cf_));
  for (it->Seek(start); it->Valid(); it->Next()) {
    std::string_view raw = it->key().ToStringView();
    if (raw.substr(0, prefix.size()) != prefix) break;
    std::string_view key = raw.substr(1);
    if (!after.empty() && key <= after) continue;
    if (!FilterMatches(filter, key)) continue;
    auto rec = DecodeRecord(it->value().ToStringView(), parts, RecordName{name_, key});
    if (!rec.ok()) return rec.status();
    if (!fn(key, std::move(*rec))) break;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "listing keys of bucket '" + name_ + "'");
  return Status::OK();
}

Result<std::vector<std::string>> BucketStore::Keys(std::string_view filter) {
  return KeysAfter(filter, {}, SIZE_MAX);
}

Result<std::vector<std::string>> BucketStore::KeysAfter(std::string_view filter,
                                                        std::string_view after, size_t limit) {
  std::vector<std::string> keys;
  Status s = ScanLatest(
      filter, nullptr, DecodeParts::kHeader,
      [&](std::string_view key, Record&& rec) {
        if (rec.entry.operation == Operation::kPut &&
            !ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) {
          keys.emplace_back(key);
        }
        return keys.size() < limit;
      },
      after);
  if (!s.ok()) return s;
  return keys;
}

Result<std::vector<Entry>> BucketStore::LatestEntries(std::string_view filter,
                                                      const rocksdb::Snapshot* snapshot) {
  std::vector<Entry> entries;
  Status s = ScanLatest(filter, snapshot, DecodeParts::kAll, [&](std::string_view key, Record&& rec) {
    if (ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) return true;
    rec.entry.key.assign(key);
    entries.push_back(std::move(rec.entry));
    return true;
  });
  if (!s.ok()) return s;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.revision < b.revision; });
  return entries;
}

Result<std::vector<Entry>> BucketStore::History(std::string_view key) {
  if (Status s = ValidateReadKey(key); !s.ok()) return s;
  // A snapshot keeps the latest record and its history consistent with each
  // other while writers go on.
  rocksdb::ManagedSnapshot snap(core_->db);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.snapshot();

  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return Status::NotFound(Describe(key) + " has no history");
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto latest = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
  if (!latest.ok()) return latest.status();

  std::vector<Entry> out;
  out.reserve(latest->older_revisions.size() + 1);
  for (uint64_t r : latest->older_revisions) {
    rocksdb::PinnableSlice h;
    rs = core_->db->Get(ro, cf_, HistoryKey(key, r), &h);
    const RecordName what{name_, key, r};
    if (rs.IsNotFound()) {
      return Status::Corruption(what.ToString() +
                                " is missing; restore the store from a backup or replica");
    }
    if (!rs.ok()) return FromRocks(rs, "reading " + what.ToString());
    auto rec = DecodeRecord(h.ToStringView(), DecodeParts::kAll, what);
    if (!rec.ok()) return rec.status();
    if (ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) continue;
    out.push_back(std::move(rec->entry));
  }
  if (!ExpiredNow(latest->entry.created_ns, latest->entry.ttl_ns)) {
    out.push_back(std::move(latest->entry));
  }
  if (out.empty()) return Status::NotFound(Describe(key) + " has no history: it expired");
  return out;
}

Result<std::vector<Entry>> BucketStore::ChangesSince(uint64_t after_revision, size_t limit,
                                                     uint64_t last) {
  if (limit == 0) return Status::InvalidArgument("ChangesSince needs a limit of at least 1");
  rocksdb::ManagedSnapshot snap(core_->db);
  rocksdb::ReadOptions ro;
  // RocksDB refuses snapshots on a secondary instance; a follower's view only
  // moves on CatchUp(), so it is already stable.
  if (core_->follower_dir.empty()) ro.snapshot = snap.snapshot();
  // Stop at the last revision committed by now. Without a bound, an
  // iterator that reached the end of the log would go on skipping the
  // entries writers append after its snapshot, and under a steady write
  // load it could chase them indefinitely (a watcher's catch-up did).
  const std::string upper = RevisionKey(last + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;

  std::vector<Entry> out;
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, log_cf_));
  for (it->Seek(RevisionKey(after_revision + 1)); it->Valid() && out.size() < limit; it->Next()) {
    uint64_t r = DecodeBE64(it->key().ToStringView());
    std::string key(LogValueKey(it->value().ToStringView()));
    const RecordName what{name_, key, r};
    rocksdb::PinnableSlice slice;
    rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &slice);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + what.ToString());
    Result<Record> rec = Status::NotFound(what.ToString());
    if (rs.ok()) rec = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, what);
    if (rec.ok() && rec->entry.revision != r) {
      rec = Status::NotFound(what.ToString());
      if (config_.history > 1) {
        slice.Reset();
        rs = core_->db->Get(ro, cf_, HistoryKey(key, r), &slice);
        if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + what.ToString());
        if (rs.ok()) rec = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, what);
      }
    }
    if (!rec.ok()) {
      // A revision no longer retained whose log record a later commit
      // trims lazily (layout.h): as if already removed.
      if (rec.status().IsNotFound()) continue;
      return rec.status();
    }
    if (ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) continue;  // as if removed
    rec->entry.key = std::move(key);
    out.push_back(std::move(rec->entry));
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), "reading the revision log of bucket '" + name_ + "'");
  }
  return out;
}

namespace {

// The larger of the bucket's revision floor and its last log key, as of
// `ro`; with `trims`, also collects the trims of the log records above the
// floor, and with `floor`, returns the floor.
Result<uint64_t> StoredLast(StoreCore& core, const std::string& name,
                            rocksdb::ColumnFamilyHandle* log_cf, const rocksdb::ReadOptions& ro,
                            std::vector<uint64_t>* trims, uint64_t* floor) {
  std::string counter;
  rocksdb::Status rs = core.db->Get(ro, core.meta, CounterKey(name), &counter);
  if (!rs.ok() && !rs.IsNotFound()) {
    return FromRocks(rs, "reading the revision of bucket '" + name + "'");
  }
  uint64_t last = rs.ok() ? DecodeBE64(counter) : 0;
  if (floor != nullptr) *floor = last;
  std::unique_ptr<rocksdb::Iterator> it(core.db->NewIterator(ro, log_cf));
  if (trims == nullptr) {
    it->SeekToLast();
    if (it->Valid()) last = std::max(last, DecodeBE64(it->key().ToStringView()));
  } else {
    for (it->Seek(RevisionKey(last + 1)); it->Valid(); it->Next()) {
      last = std::max(last, DecodeBE64(it->key().ToStringView()));
      LogValueTrims(it->value().ToStringView(), trims);
    }
  }
  if (!it->status().ok()) {
    return FromRocks(it->status(), "reading the revision log of bucket '" + name + "'");
  }
  return last;
}

}  // namespace

Result<uint64_t> RecoverLastRevision(StoreCore& core, const std::string& name,
                                     rocksdb::ColumnFamilyHandle* log_cf) {
  std::vector<uint64_t> trims;
  uint64_t floor = 0;
  auto last = StoredLast(core, name, log_cf, rocksdb::ReadOptions(), &trims, &floor);
  if (!last.ok() || *last == floor || !core.follower_dir.empty()) return last;
  rocksdb::WriteBatch batch;
  for (uint64_t r : trims) batch.Delete(log_cf, RevisionKey(r));
  std::string counter;
  AppendBE64(&counter, *last);
  batch.Put(core.meta, CounterKey(name), counter);
  if (rocksdb::Status rs = core.Write(&batch); !rs.ok()) {
    return FromRocks(rs, "finishing the revision log of bucket '" + name + "'");
  }
  return last;
}

Result<uint64_t> BucketStore::RevisionAt(const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  return StoredLast(*core_, name_, log_cf_, ro, nullptr, nullptr);
}

Result<EntriesSnapshot> BucketStore::Entries(std::string_view filter) {
  HeldSnapshot snapshot(core_->db);
  EntriesSnapshot out;
  auto revision = RevisionAt(snapshot.get());
  if (!revision.ok()) return revision.status();
  out.revision = *revision;
  Status s = ScanLatest(filter, snapshot.get(), DecodeParts::kAll,
                        [&](std::string_view key, Record&& rec) {
                          if (rec.entry.operation != Operation::kPut ||
                              ExpiredNow(rec.entry.created_ns, rec.entry.ttl_ns)) {
                            return true;
                          }
                          rec.entry.key.assign(key);
                          out.entries.push_back(std::move(rec.entry));
                          return true;
                        });
  if (!s.ok()) return s;
  return out;  // ScanLatest walks the keys in order
}

Result<KeysSnapshot> BucketStore::GetMany(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) {
    if (Status s = ValidateReadKey(key); !s.ok()) return s;
  }
  HeldSnapshot snapshot(core_->db);
  KeysSnapshot out;
  auto revision = RevisionAt(snapshot.get());
  if (!revision.ok()) return revision.status();
  out.revision = *revision;
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.get();
  for (const std::string& key : keys) {
    KeyRead read;
    read.key = key;
    rocksdb::PinnableSlice raw;
    rocksdb::Status rs = core_->db->Get(ro, cf_, LatestKey(key), &raw);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading " + Describe(key));
    if (rs.ok()) {
      auto rec = DecodeRecord(raw.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
      if (!rec.ok()) return rec.status();
      if (rec->entry.key != key) {
        return Status::Corruption(RecordName{name_, key}.ToString() + " names key '" +
                                  rec->entry.key +
                                  "'; restore the store from a backup or replica");
      }
      // An expired entry is no entry (revision 0), as Get says.
      if (!ExpiredNow(rec->entry.created_ns, rec->entry.ttl_ns)) {
        read.revision = rec->entry.revision;
        if (rec->entry.operation == Operation::kPut) {
          rec->entry.key = key;
          read.entry = std::move(rec->entry);
        }
      }
    }
    out.keys.push_back(std::move(read));
  }
  return out;
}

uint64_t BucketStore::StoredRevision() {
  auto last = RevisionAt(nullptr);
  return last.ok() ? *last : 0;
}

Result<std::optional<Entry>> BucketStore::ReadLatest(std::string_view key) {
  rocksdb::PinnableSlice slice;
  rocksdb::Status rs = core_->db->Get(rocksdb::ReadOptions(), cf_, LatestKey(key), &slice);
  if (rs.IsNotFound()) return std::optional<Entry>();
  if (!rs.ok()) return FromRocks(rs, "reading " + Describe(key));
  auto rec = DecodeRecord(slice.ToStringView(), DecodeParts::kAll, RecordName{name_, key});
  if (!rec.ok()) return rec.status();
  if (rec->entry.key != key) {
    return Status::Corruption(RecordName{name_, key}.ToString() + " names key '" +
                              rec->entry.key + "'; restore the store from a backup or replica");
  }
  return std::optional<Entry>(std::move(rec->entry));
}

void BucketStore::StageCounter(rocksdb::WriteBatch* batch, uint64_t last) const {
  std::string counter;
  AppendBE64(&counter, last);
  batch->Put(core_->meta, CounterKey(name_), counter);
}

void BucketStore::StageTrims(rocksdb::WriteBatch* batch,
                             const std::vector<uint64_t>& revisions) const {
  for (uint64_t r : revisions) batch->Delete(log_cf_, RevisionKey(r));
}

void BucketStore::StageSkips(rocksdb::WriteBatch* batch,
                             const ReplicaSink::SkipSummary& skips) const {
  batch->Put(core_->meta, SkipKey(name_), EncodeSkips(skips));
}

void BucketStore::StageReset(rocksdb::WriteBatch* batch, int64_t source) const {
  // Every record key starts with 'h', 'k' or 'x', and every log key is 8
  // bytes. The log's range must not start at an 8-byte key: rocks.cc's
  // memtable insert hint must not see a range tombstone.
  batch->DeleteRange(cf_, std::string(1, '\0'), std::string(1, '\xff'));
  batch->DeleteRange(log_cf_, std::string(), std::string(9, '\xff'));
  std::string src;
  AppendBE64(&src, static_cast<uint64_t>(source));
  batch->Put(core_->meta, SourceKey(name_), src);
  batch->Delete(core_->meta, SkipKey(name_));
  batch->Delete(core_->meta, OwnKey(name_));
}

void BucketStore::StageExpired(rocksdb::WriteBatch* batch, std::string_view index,
                               std::string_view key,
                               std::optional<uint64_t> tombstone_revision) const {
  batch->Delete(cf_, index);
  if (tombstone_revision) {
    batch->Delete(cf_, LatestKey(key));
    batch->Delete(log_cf_, RevisionKey(*tombstone_revision));
  }
}

bool BucketStore::FirstExpiry(DueExpiry* out) {
  const std::string upper(1, static_cast<char>(kExpiryPrefix + 1));
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(core_->db->NewIterator(ro, cf_));
  it->Seek(std::string(1, kExpiryPrefix));
  if (!it->Valid()) return false;
  std::string_view raw = it->key().ToStringView();
  if (raw.size() < 9) return false;
  out->due_ns = static_cast<int64_t>(DecodeBE64(raw.substr(1, 8)));
  out->index.assign(raw);
  out->key.assign(raw.substr(9));
  out->revision = DecodeBE64(it->value().ToStringView());
  return true;
}

Status BucketStore::Write(rocksdb::WriteBatch* batch, const std::function<std::string()>& what) {
  rocksdb::Status rs = core_->Write(batch);
  if (rs.ok()) return Status::OK();
  return FromRocks(rs, what());
}

}  // namespace revkv::engine
