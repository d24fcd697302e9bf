// Result<T>: either a value of type T or a non-OK Status.
//
//   revkv::Result<uint64_t> r = bucket->Put("k", "v");
//   if (!r.ok()) { log(r.status().ToString()); return; }
//   uint64_t revision = *r;
//
// Accessing the value of a failed Result is a programming error and aborts in
// debug builds; check ok() first.

#ifndef REVKV_RESULT_H_
#define REVKV_RESULT_H_

#include <cassert>
#include <optional>
#include <utility>

#include "revkv/status.h"

namespace revkv {

template <typename T>
class [[nodiscard]] Result {
 public:
  // A successful result holding `value`.
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  // A failed result. REQUIRES: !status.ok().
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace revkv

#endif  // REVKV_RESULT_H_
