// The self-checking value format shared by crash_writer.cc, which writes it,
// and crash_test.cc, which verifies what survived a SIGKILL.

#ifndef REVKV_TESTS_CRASH_VALUE_H_
#define REVKV_TESTS_CRASH_VALUE_H_

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace revkv::testing {

inline uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return std::string(buf, 16);
}

}  // namespace revkv::testing

#endif  // REVKV_TESTS_CRASH_VALUE_H_
