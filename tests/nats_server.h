// NatsServer: a real nats-server for tests, started on a free loopback port
// with JetStream and a private store directory, and stopped by its PID.
//
// The binary is the one CMake found (REVKV_NATS_SERVER): the 2.10+ server
// the bootstrap places in .deps/, else the system's. There is no fallback
// and no skipping: a missing server fails the test loudly.

#ifndef REVKV_TESTS_NATS_SERVER_H_
#define REVKV_TESTS_NATS_SERVER_H_

#include <nats/nats.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/test_util.h"

namespace revkv::testing {

class NatsServer {
 public:
  // `binary` defaults to the bootstrapped 2.10+ server.
  explicit NatsServer(std::string binary = Binary());
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Starts the server. The first start takes a random free port from the
  // kernel (-p -1) and reads it back from the server's ports file; later
  // starts reuse that port, so clients can reconnect after a restart.
  // Returns false, with the reason in error(), if it did not come up.
  bool Start();
  // Extra command-line arguments for every later start (e.g. "--user", "u").
  void AddArgs(const std::vector<std::string>& args) {
    extra_args_.insert(extra_args_.end(), args.begin(), args.end());
  }
  // Stops the server: SIGTERM, then SIGKILL after 5 s. Waits for the exit.
  void Stop();
  // Kills the server with SIGKILL at once, as a crash would.
  void Kill();
  bool Restart() {
    Stop();
    return Start();
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  const std::string& store_dir() const { return store_dir_; }
  const std::string& error() const { return error_; }
  // The server's own log (stdout and stderr), for failure messages.
  std::string Log() const;

  // The server binary and its version line ("nats-server: v2.10.27").
  static std::string Binary();
  static std::string Version(const std::string& binary = Binary());

 private:
  void Reap(int signal, int grace_ms);

  const std::string binary_;
  TempDir dir_;
  std::string store_dir_;
  pid_t pid_ = -1;
  int port_ = -1;
  std::string error_;
  std::vector<std::string> extra_args_;
};

// Connects a plain nats.c client (connection and JetStream context) to
// `url`, with reconnects off. Returns the first failing status.
natsStatus ConnectClient(const std::string& url, natsConnection** nc, jsCtx** js);

}  // namespace revkv::testing

#endif  // REVKV_TESTS_NATS_SERVER_H_
