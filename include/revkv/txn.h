// Transactions: several writes to one bucket that commit together or not at
// all, guarded by compares, in the spirit of etcd's Txn.
//
//   revkv::Txn txn;
//   txn.compares.push_back(revkv::TxnCompare::RevisionIs("account.a", ra));
//   txn.ops.push_back(revkv::TxnOp::Update("account.a", "70", ra));
//   txn.ops.push_back(revkv::TxnOp::Update("account.b", "130", rb));
//   auto done = bucket->Commit(txn);  // Conflict names the key that moved
//
// Every compare and every operation's own condition (Create: absent or
// tombstoned; Update, or Delete/Purge with an expected revision: that
// revision) is checked against the bucket's state before the transaction.
// If one fails, nothing is written. Otherwise every operation commits at
// once, with consecutive revisions in the given order: a reader or a watcher
// sees all of the transaction or none of it.
//
// On a replicated bucket a transaction is one atomic batch publish
// (nats-server 2.12+, ADR-50): the server checks each message's expected
// last sequence at commit, against the state before the batch, and stores
// every message or none; replicas apply the batch whole. Bucket::Commit
// (bucket.h) says what that implies for compares.

#ifndef REVKV_TXN_H_
#define REVKV_TXN_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace revkv {

// The most operations one transaction may hold: nats-server's limit on an
// atomic batch, kept locally too so that a transaction means the same
// everywhere.
inline constexpr size_t kMaxTxnOps = 1000;

// A condition on a key that the transaction does not write.
struct TxnCompare {
  enum class Kind {
    kRevision,  // the key's latest revision is `revision` (0: never written, or expired)
    kAbsent,    // no entry: never written, expired, or a tombstone
    kPresent,   // a live entry
  };
  std::string key;
  Kind kind = Kind::kRevision;
  uint64_t revision = 0;

  static TxnCompare RevisionIs(std::string key, uint64_t revision) {
    return {std::move(key), Kind::kRevision, revision};
  }
  static TxnCompare Absent(std::string key) { return {std::move(key), Kind::kAbsent, 0}; }
  static TxnCompare Present(std::string key) { return {std::move(key), Kind::kPresent, 0}; }
};

// One write of a transaction, with the conditions of the single-key write of
// the same name.
struct TxnOp {
  enum class Kind { kPut, kCreate, kUpdate, kDelete, kPurge };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;                          // Put, Create, Update
  std::optional<uint64_t> expected_revision;  // Update (required), Delete and Purge (optional)

  static TxnOp Put(std::string key, std::string value) {
    return {Kind::kPut, std::move(key), std::move(value), std::nullopt};
  }
  static TxnOp Create(std::string key, std::string value) {
    return {Kind::kCreate, std::move(key), std::move(value), std::nullopt};
  }
  static TxnOp Update(std::string key, std::string value, uint64_t expected_revision) {
    return {Kind::kUpdate, std::move(key), std::move(value), expected_revision};
  }
  static TxnOp Delete(std::string key, std::optional<uint64_t> expected_revision = std::nullopt) {
    return {Kind::kDelete, std::move(key), {}, expected_revision};
  }
  static TxnOp Purge(std::string key, std::optional<uint64_t> expected_revision = std::nullopt) {
    return {Kind::kPurge, std::move(key), {}, expected_revision};
  }
};

// A key appears at most once in a transaction, in a compare or in an
// operation (an operation's own condition is its compare). At least one
// operation, at most kMaxTxnOps.
struct Txn {
  std::vector<TxnCompare> compares;
  std::vector<TxnOp> ops;
};

// What a committed transaction wrote.
struct TxnResult {
  std::vector<uint64_t> revisions;  // of each operation, in order
  uint64_t revision = 0;            // of the last one
};

}  // namespace revkv

#endif  // REVKV_TXN_H_
