#include "revkv/status.h"

#include "revkv/entry.h"

namespace revkv {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "NotFound";
    case Code::kExists: return "Exists";
    case Code::kConflict: return "Conflict";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kTimeout: return "Timeout";
    case Code::kUnavailable: return "Unavailable";
    case Code::kLockLost: return "LockLost";
    case Code::kPermissionDenied: return "PermissionDenied";
    case Code::kIOError: return "IOError";
    case Code::kCorruption: return "Corruption";
    case Code::kBusy: return "Busy";
  }
  return "Unknown";
}

std::string_view OperationName(Operation op) {
  switch (op) {
    case Operation::kPut: return "PUT";
    case Operation::kDelete: return "DEL";
    case Operation::kPurge: return "PURGE";
  }
  return "UNKNOWN";
}

Status::Status(Code code, std::string_view msg, uint64_t revision)
    : rep_(std::make_unique<Rep>(Rep{code, revision, std::string(msg), true})) {}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(rep_->code));
  out += ": ";
  out += rep_->message;
  return out;
}

}  // namespace revkv
