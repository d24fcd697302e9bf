#include "engine/txn_rules.h"

#include <set>
#include <string_view>

#include "revkv/validation.h"

namespace revkv::engine {

Operation OperationOf(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::kDelete: return Operation::kDelete;
    case TxnOp::Kind::kPurge: return Operation::kPurge;
    default: return Operation::kPut;
  }
}

TtlWrite TtlWriteOf(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: return op.expected_revision ? TtlWrite::kUpdate : TtlWrite::kPut;
    case TxnOp::Kind::kCreate: return TtlWrite::kCreate;
    case TxnOp::Kind::kUpdate: return TtlWrite::kUpdate;
    case TxnOp::Kind::kDelete: return TtlWrite::kDelete;
    case TxnOp::Kind::kPurge: return TtlWrite::kPurge;
  }
  return TtlWrite::kPut;
}

Status CheckValueSize(std::string_view what, size_t size, uint32_t max_value_size) {
  if (size <= max_value_size) return Status::OK();
  return Status::InvalidArgument("value for " + std::string(what) + " is " + std::to_string(size) +
                                 " bytes; the bucket's limit is " +
                                 std::to_string(max_value_size) +
                                 " (BucketOptions::max_value_size)");
}

Status WrongRevisionConflict(std::string_view what, uint64_t expected, uint64_t current,
                             bool at_least) {
  return Status::Conflict("wrong last revision for " + std::string(what) + ": expected " +
                              std::to_string(expected) + ", current is " +
                              (at_least ? "at least " : "") + std::to_string(current) +
                              "; re-read the key and retry",
                          current);
}

Status CheckTxn(const Txn& txn, const std::string& bucket, int history, uint32_t max_value_size,
                std::chrono::seconds ttl) {
  auto describe = [&](std::string_view key) {
    return "key '" + std::string(key) + "' of bucket '" + bucket + "'";
  };
  if (txn.ops.empty()) {
    return Status::InvalidArgument("a transaction on bucket '" + bucket +
                                   "' needs at least one operation; read with GetEntry instead");
  }
  if (txn.ops.size() > kMaxTxnOps) {
    return Status::InvalidArgument("a transaction on bucket '" + bucket + "' has " +
                                   std::to_string(txn.ops.size()) + " operations; at most " +
                                   std::to_string(kMaxTxnOps) +
                                   " (kMaxTxnOps) are allowed; split it");
  }
  std::set<std::string_view> seen;
  auto once = [&](std::string_view key) -> Status {
    if (seen.insert(key).second) return Status::OK();
    return Status::InvalidArgument(describe(key) + " appears twice in one transaction; give "
                                   "each key once (an operation's expected revision is its "
                                   "compare)");
  };
  for (const TxnCompare& c : txn.compares) {
    if (Status s = ValidateReadKey(c.key); !s.ok()) return s;
    if (Status s = once(c.key); !s.ok()) return s;
  }
  for (const TxnOp& o : txn.ops) {
    if (Status s = ValidateKey(o.key); !s.ok()) return s;
    if (Status s = once(o.key); !s.ok()) return s;
    if (o.kind == TxnOp::Kind::kUpdate && !o.expected_revision) {
      return Status::InvalidArgument("the Update of " + describe(o.key) + " has no expected "
                                     "revision; use TxnOp::Update(key, value, revision)");
    }
    if (OperationOf(o) != Operation::kPut) continue;
    if (Status s = CheckValueSize(describe(o.key), o.value.size(), max_value_size); !s.ok()) {
      return s;
    }
    if (Status s = CheckWriteTtl(bucket, history, TtlWriteOf(o), ttl); !s.ok()) return s;
  }
  return Status::OK();
}

Status CheckIdempotencyKey(const WriteOptions& options, bool plain_put) {
  const std::string& id = options.idempotency_key;
  if (id.empty()) return Status::OK();
  if (!plain_put) {
    return Status::InvalidArgument(
        "WriteOptions::idempotency_key is for a Put without a fence; compare-and-swap writes "
        "(Create, Update, Delete/Purge with a revision, transactions) are safe to retry by their "
        "revision check");
  }
  if (id.size() > 256) {
    return Status::InvalidArgument("WriteOptions::idempotency_key is " + std::to_string(id.size()) +
                                   " bytes; give at most 256");
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return Status::InvalidArgument(
          "WriteOptions::idempotency_key holds a byte that is not printable ASCII (it goes into "
          "the Nats-Msg-Id header); use e.g. a UUID");
    }
  }
  return Status::OK();
}

}  // namespace revkv::engine
