// Helpers shared by the test suites.

#ifndef REVKV_TESTS_TEST_UTIL_H_
#define REVKV_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace revkv::testing {

// A fresh directory under the temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "revkv-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside the directory that does not exist yet.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Milliseconds elapsed on the monotonic clock since `t`.
inline int64_t MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t)
      .count();
}

}  // namespace revkv::testing

#endif  // REVKV_TESTS_TEST_UTIL_H_
