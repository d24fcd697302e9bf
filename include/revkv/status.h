// Status: the outcome of every revkv call. No exception crosses the public API;
// each method returns a Status or a Result<T> (see result.h) instead.
//
// A Status is a small value type. OK costs one null pointer; an error carries a
// code, a one-line message that says what was wrong and what to do, and, for
// NotFound, Exists and Conflict, the key's current revision.
//
// How to react to each code (after absl's guidance):
//   NotFound         the key or bucket is absent (or the key's last operation is
//                    a Delete/Purge tombstone; revision() then names it).
//   Exists           Create found a live key; revision() is its revision.
//   Conflict         a compare-and-swap saw another revision: re-read and retry
//                    at a higher level. revision() is the current revision,
//                    unless revision_known() is false: then the server did not
//                    name it, and the replica must catch up (Bucket::Sync)
//                    before the re-read.
//   InvalidArgument  fix the call: bad key, bucket name, option or value size.
//   Timeout          a deadline passed; the operation may be retried.
//   Unavailable      retry just this call later (store held by another
//                    process, server unreachable).
//   LockLost         the lease behind a lock handle ran out or was taken over.
//   PermissionDenied the caller may not do this.
//   IOError          the file system failed; see the message. A full disk says
//                    so: free space, then retry the write.
//   Corruption       stored data failed validation; restore from a replica.
//   Busy             TryAcquire found the lock held.
//
// Thread safety: a Status is an immutable value once built; copies are
// independent.

#ifndef REVKV_STATUS_H_
#define REVKV_STATUS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace revkv {

enum class Code : uint8_t {
  kOk = 0,
  kNotFound,
  kExists,
  kConflict,
  kInvalidArgument,
  kTimeout,
  kUnavailable,
  kLockLost,
  kPermissionDenied,
  kIOError,
  kCorruption,
  kBusy,
};

// The canonical name of a code, e.g. "Conflict".
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  // Creates an OK status.
  Status() noexcept = default;
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&& other) noexcept = default;
  Status& operator=(Status&& other) noexcept = default;
  ~Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg, uint64_t revision = 0) {
    return Status(Code::kNotFound, msg, revision);
  }
  static Status Exists(std::string_view msg, uint64_t revision = 0) {
    return Status(Code::kExists, msg, revision);
  }
  static Status Conflict(std::string_view msg, uint64_t revision = 0) {
    return Status(Code::kConflict, msg, revision);
  }
  // A Conflict whose current revision is unknown. From 2.11, a clustered
  // nats-server refuses a compare-and-swap while another one on the same key
  // is in flight (JetStream error 10164), without saying which revision won.
  // revision() is then 0 and means nothing: 0 already stands for "no
  // message", and must not take a third meaning.
  static Status ConflictRevisionUnknown(std::string_view msg) {
    Status s(Code::kConflict, msg, 0);
    s.rep_->revision_known = false;
    return s;
  }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg, 0);
  }
  static Status Timeout(std::string_view msg) { return Status(Code::kTimeout, msg, 0); }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, msg, 0); }
  static Status LockLost(std::string_view msg) { return Status(Code::kLockLost, msg, 0); }
  static Status PermissionDenied(std::string_view msg) {
    return Status(Code::kPermissionDenied, msg, 0);
  }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg, 0); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg, 0); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, msg, 0); }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsExists() const { return code() == Code::kExists; }
  bool IsConflict() const { return code() == Code::kConflict; }
  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }
  bool IsTimeout() const { return code() == Code::kTimeout; }
  bool IsUnavailable() const { return code() == Code::kUnavailable; }
  bool IsLockLost() const { return code() == Code::kLockLost; }
  bool IsPermissionDenied() const { return code() == Code::kPermissionDenied; }
  bool IsIOError() const { return code() == Code::kIOError; }
  bool IsCorruption() const { return code() == Code::kCorruption; }
  bool IsBusy() const { return code() == Code::kBusy; }

  // The message without the code name; empty for OK.
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }

  // For NotFound (tombstone), Exists and Conflict: the key's current
  // revision, or 0 when the key has no entry at all. 0 for other codes.
  uint64_t revision() const { return rep_ ? rep_->revision : 0; }
  // False only for a ConflictRevisionUnknown: the current revision was not
  // named, so revision() carries no meaning.
  bool revision_known() const { return rep_ == nullptr || rep_->revision_known; }

  // "OK", or "<CodeName>: <message>".
  std::string ToString() const;

 private:
  struct Rep {
    Code code;
    uint64_t revision;
    std::string message;
    bool revision_known = true;
  };
  Status(Code code, std::string_view msg, uint64_t revision);

  std::unique_ptr<Rep> rep_;
};

}  // namespace revkv

#endif  // REVKV_STATUS_H_
