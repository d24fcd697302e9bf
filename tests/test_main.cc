// main() of every test binary: GoogleTest's, except that the process ends
// with _exit once the tests have run. Every engine, server and child the
// tests start is closed inside them; what static destructors would add is
// RocksDB 7.8's exit race, where its static mutexes (the periodic task
// timer's) are destroyed while its own threads may still use them, which
// crashed a passing test binary now and then ("Subprocess aborted",
// SIGSEGV) after its last test.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  std::fflush(nullptr);
  _exit(rc);
}
