// A test binary that dies badly: it starts a nats-server through the test
// fixture, prints "pid <server pid>", then crashes as its argument says
// (abort, segv or kill), so that no destructor runs. nats_server_test checks
// that the server does not outlive it.

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "tests/nats_server.h"

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer (scripts/sanitize.sh asan), a SIGSEGV would be
// caught, reported and turned into exit status 1; this binary must die of
// the signal itself, as an uninstrumented one does.
extern "C" const char* __asan_default_options() { return "handle_segv=0"; }
#endif

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s abort|segv|kill\n", argv[0]);
    return 2;
  }
  // Started from a thread that ends before the crash: the server must stay
  // tied to the process, not to that thread.
  auto* server = new revkv::testing::NatsServer();
  bool started = false;
  std::thread([&] { started = server->Start(); }).join();
  if (!started) {
    std::fprintf(stderr, "%s\n", server->error().c_str());
    return 1;
  }
  std::printf("pid %d\n", static_cast<int>(server->pid()));
  std::fflush(stdout);
  // Still running after its starting thread ended.
  if (kill(server->pid(), 0) != 0) {
    std::fprintf(stderr, "the server died with the thread that started it\n");
    return 1;
  }
  if (std::strcmp(argv[1], "abort") == 0) std::abort();
  if (std::strcmp(argv[1], "segv") == 0) raise(SIGSEGV);
  raise(SIGKILL);
  return 3;
}
