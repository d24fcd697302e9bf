#include "engine/record_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <exception>

#include "record.capnp.h"

namespace revkv::engine {
namespace {

// Records are small and written by this engine, but a damaged file could
// still hold anything: bound the walk so garbage fails fast.
capnp::ReaderOptions LocalReaderOptions(size_t words) {
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = words * 2 + 64;
  opts.nestingLimit = 8;
  return opts;
}

std::string ToBytes(capnp::MessageBuilder& builder) {
  std::string out(capnp::computeSerializedSizeInWords(builder) * sizeof(capnp::word), '\0');
  kj::ArrayOutputStream stream(
      kj::arrayPtr(reinterpret_cast<kj::byte*>(out.data()), out.size()));
  capnp::writeMessage(stream, builder);
  return out;
}

// FlatArrayMessageReader needs word-aligned input. RocksDB's pinned slices
// usually are not aligned, so copy into a per-thread buffer when needed.
kj::ArrayPtr<const capnp::word> AlignedWords(std::string_view bytes) {
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    return {reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
  }
  thread_local std::vector<capnp::word> buffer;
  size_t words = bytes.size() / sizeof(capnp::word);
  if (buffer.size() < words) buffer.resize(words);
  std::memcpy(buffer.data(), bytes.data(), words * sizeof(capnp::word));
  return {buffer.data(), words};
}

std::string NameOf(std::string_view what) { return std::string(what); }
std::string NameOf(const RecordName& name) { return name.ToString(); }

template <typename Name>
Status Damaged(const Name& what, std::string_view why) {
  return Status::Corruption(NameOf(what) + " is damaged (" + std::string(why) +
                            "); restore the store from a backup or replica");
}

template <typename Name>
Status CheckShape(std::string_view bytes, const Name& what) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Damaged(what, "size " + std::to_string(bytes.size()) + " is not a whole number of words");
  }
  return Status::OK();
}

Result<Operation> ToOperation(schema::Operation op, const RecordName& what) {
  switch (op) {
    case schema::Operation::PUT: return Operation::kPut;
    case schema::Operation::DELETE: return Operation::kDelete;
    case schema::Operation::PURGE: return Operation::kPurge;
  }
  return Damaged(what, "unknown operation " + std::to_string(static_cast<int>(op)));
}

schema::Operation FromOperation(Operation op) {
  switch (op) {
    case Operation::kPut: return schema::Operation::PUT;
    case Operation::kDelete: return schema::Operation::DELETE;
    case Operation::kPurge: return schema::Operation::PURGE;
  }
  return schema::Operation::PUT;
}

// Runs `fn` and turns any exception from Cap'n Proto into Corruption; this is
// the one place where kj exceptions are converted.
template <typename Name, typename Fn>
Status Guard(const Name& what, Fn&& fn) {
  try {
    return fn();
  } catch (const kj::Exception& e) {
    return Damaged(what, e.getDescription().cStr());
  } catch (const std::exception& e) {
    return Damaged(what, e.what());
  }
}

}  // namespace

std::string RecordName::ToString() const {
  std::string out = revision == 0 ? "record" : "revision " + std::to_string(revision);
  out += " of key '";
  out += key;
  out += "' of bucket '";
  out += bucket;
  out += "'";
  return out;
}

std::string EncodeRecord(const Entry& entry, const std::vector<uint64_t>& older_revisions) {
  // The first segment is a zeroed per-thread buffer sized for the whole
  // record: no allocation while building, and the output is one segment.
  const size_t words = 16 + (entry.key.size() + entry.value.size()) / sizeof(capnp::word) +
                       older_revisions.size();
  thread_local std::vector<capnp::word> scratch;
  if (scratch.size() < words) scratch.resize(words);
  std::memset(scratch.data(), 0, words * sizeof(capnp::word));
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch.data(), words));
  auto rec = builder.initRoot<schema::Record>();
  rec.setSchemaVersion(kRecordSchemaVersion);
  rec.setOperation(FromOperation(entry.operation));
  rec.setRevision(entry.revision);
  rec.setCreatedNs(entry.created_ns);
  rec.setTtlNs(entry.ttl_ns);
  rec.setKey(capnp::Text::Reader(entry.key.data(), entry.key.size()));
  rec.setValue(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(entry.value.data()),
                                   entry.value.size()));
  if (!older_revisions.empty()) {
    auto list = rec.initOlderRevisions(static_cast<unsigned>(older_revisions.size()));
    for (size_t i = 0; i < older_revisions.size(); ++i) {
      list.set(static_cast<unsigned>(i), older_revisions[i]);
    }
  }
  return ToBytes(builder);
}

namespace {

// Checks the shape, opens a reader over `bytes` and hands `fn` the root of
// type Root once its schema version is one this engine reads.
template <typename Root, typename Name, typename Fn>
Status ReadRoot(std::string_view bytes, const Name& what, Fn&& fn) {
  if (Status s = CheckShape(bytes, what); !s.ok()) return s;
  return Guard(what, [&]() -> Status {
    auto words = AlignedWords(bytes);
    capnp::FlatArrayMessageReader reader(words, LocalReaderOptions(words.size()));
    auto root = reader.getRoot<Root>();
    if (root.getSchemaVersion() == 0 || root.getSchemaVersion() > kRecordSchemaVersion) {
      return Damaged(what, "schema version " + std::to_string(root.getSchemaVersion()));
    }
    return fn(root);
  });
}

}  // namespace

Status DecodeValueInto(std::string_view bytes, const RecordName& what, Operation* op,
                       uint64_t* revision, std::string* value, RecordTimes* times) {
  return ReadRoot<schema::Record>(bytes, what, [&](schema::Record::Reader rec) -> Status {
    auto parsed = ToOperation(rec.getOperation(), what);
    if (!parsed.ok()) return parsed.status();
    *op = *parsed;
    *revision = rec.getRevision();
    if (times != nullptr) {
      times->created_ns = rec.getCreatedNs();
      times->ttl_ns = rec.getTtlNs();
    }
    auto data = rec.getValue();
    value->assign(reinterpret_cast<const char*>(data.begin()), data.size());
    return Status::OK();
  });
}

Result<Record> DecodeRecord(std::string_view bytes, DecodeParts parts, const RecordName& what) {
  Record out;
  Status s = ReadRoot<schema::Record>(bytes, what, [&](schema::Record::Reader rec) -> Status {
    auto parsed = ToOperation(rec.getOperation(), what);
    if (!parsed.ok()) return parsed.status();
    out.entry.operation = *parsed;
    out.entry.revision = rec.getRevision();
    if (out.entry.revision == 0) return Damaged(what, "revision 0");
    out.entry.created_ns = rec.getCreatedNs();
    out.entry.ttl_ns = rec.getTtlNs();
    if (parts == DecodeParts::kValueOnly || parts == DecodeParts::kAll) {
      auto data = rec.getValue();
      out.entry.value.assign(reinterpret_cast<const char*>(data.begin()), data.size());
    }
    if (parts == DecodeParts::kValueOnly) return Status::OK();
    auto older = rec.getOlderRevisions();
    out.older_revisions.reserve(older.size());
    for (uint64_t r : older) out.older_revisions.push_back(r);
    if (parts == DecodeParts::kAll) {
      auto key = rec.getKey();
      out.entry.key.assign(key.begin(), key.size());
    }
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

std::string EncodeBucketConfig(const BucketConfigValues& cfg) {
  capnp::MallocMessageBuilder builder(16);
  auto c = builder.initRoot<schema::BucketConfig>();
  c.setSchemaVersion(kRecordSchemaVersion);
  c.setHistory(static_cast<uint8_t>(cfg.history));
  c.setMaxValueSize(cfg.max_value_size);
  return ToBytes(builder);
}

Result<BucketConfigValues> DecodeBucketConfig(std::string_view bytes, std::string_view what) {
  BucketConfigValues out;
  Status s =
      ReadRoot<schema::BucketConfig>(bytes, what, [&](schema::BucketConfig::Reader c) -> Status {
        out.history = c.getHistory();
        out.max_value_size = c.getMaxValueSize();
        if (out.history < 1 || out.history > kMaxHistory || out.max_value_size == 0) {
          return Damaged(what, "history " + std::to_string(out.history) + ", max value size " +
                                   std::to_string(out.max_value_size));
        }
        return Status::OK();
      });
  if (!s.ok()) return s;
  return out;
}

std::string EncodeLockRecord(const LockRecordValues& lock) {
  capnp::MallocMessageBuilder builder(16 + lock.owner.size() / sizeof(capnp::word));
  auto r = builder.initRoot<schema::LockRecord>();
  r.setSchemaVersion(kRecordSchemaVersion);
  r.setOwner(capnp::Text::Reader(lock.owner.data(), lock.owner.size()));
  r.setLeaseNs(lock.lease_ns);
  r.setAcquiredAtNs(lock.acquired_at_ns);
  r.setToken(lock.token);
  return ToBytes(builder);
}

Result<LockRecordValues> DecodeLockRecord(std::string_view bytes, std::string_view what) {
  LockRecordValues out;
  Status s =
      ReadRoot<schema::LockRecord>(bytes, what, [&](schema::LockRecord::Reader r) -> Status {
        auto owner = r.getOwner();
        out.owner.assign(owner.begin(), owner.size());
        out.lease_ns = r.getLeaseNs();
        out.acquired_at_ns = r.getAcquiredAtNs();
        out.token = r.getToken();
        if (out.lease_ns <= 0) return Damaged(what, "lease " + std::to_string(out.lease_ns));
        return Status::OK();
      });
  if (!s.ok()) return s;
  return out;
}

Status CheckFenceRecord(const Fence& fence, bool live, uint64_t revision,
                        std::string_view value) {
  if (!live) {
    return Status::LockLost("lock '" + fence.lock + "' is not held, so fencing token " +
                            std::to_string(fence.token) +
                            " is stale; acquire the lock again before writing");
  }
  auto lock = DecodeLockRecord(value, "lock record '" + fence.lock + "'");
  if (!lock.ok()) return lock.status();
  const uint64_t current = lock->token != 0 ? lock->token : revision;
  if (current != fence.token) {
    return Status::LockLost("fencing token " + std::to_string(fence.token) + " of lock '" +
                            fence.lock + "' is stale: the lock's current token is " +
                            std::to_string(current) + "; acquire the lock again before writing");
  }
  return Status::OK();
}

}  // namespace revkv::engine
