// main() of every test binary: GoogleTest's, except that the process ends
// with _exit once the tests have run. Every engine, server and child the
// tests start is closed inside them; what static destructors would add is
// RocksDB 7.8's exit race, where its static mutexes (the periodic task
// timer's) are destroyed while its own threads may still use them, which
// crashed a passing test binary now and then ("Subprocess aborted",
// SIGSEGV) after its last test. Under AddressSanitizer the leak check,
// which would run at exit, runs before _exit.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  std::fflush(nullptr);
#if defined(__SANITIZE_ADDRESS__)
  if (__lsan_do_recoverable_leak_check() != 0) _exit(rc != 0 ? rc : 1);
#endif
  _exit(rc);
}
