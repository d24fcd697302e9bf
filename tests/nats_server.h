// NatsServer: a real nats-server for tests, started on a free loopback port
// with JetStream and a private store directory, and stopped by its PID.
//
// The binary is the server of the matrix (DESIGN §5) that ctest names in
// REVKV_TEST_NATS_SERVER, else the newest one the bootstrap places in .deps/
// (REVKV_NATS_SERVER_NEWEST; REVKV_NATS_SERVER_210 is trixie's 2.10). There
// is no fallback and no skipping: a missing server fails the test loudly.

#ifndef REVKV_TESTS_NATS_SERVER_H_
#define REVKV_TESTS_NATS_SERVER_H_

#include <nats/nats.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/test_util.h"

namespace revkv::testing {

// Starts `args` (args[0] is the binary) with stdout and stderr appended to
// `log`, as a child that the kernel kills when this process dies, however it
// dies. Returns its PID, or -1 with the reason in `error`.
pid_t SpawnTiedToThisProcess(const std::vector<std::string>& args, const std::string& log,
                             std::string* error);

class NatsServer {
 public:
  // `binary` defaults to the server of the matrix this run is on.
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
  // The binary of later starts: Stop, SetBinary, Start upgrades (or
  // downgrades) the node in place, keeping its port and store.
  void SetBinary(std::string binary) { binary_ = std::move(binary); }
  const std::string& binary() const { return binary_; }
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
  // The route (cluster) port the server listens on, from its ports file;
  // -1 when it was started without --cluster.
  int cluster_port() const { return cluster_port_; }
  // The HTTP monitoring port (/varz, /jsz) on 127.0.0.1, new at each start.
  int monitor_port() const { return monitor_port_; }
  // GET `path` (e.g. "/jsz?leader-only=true") from the monitoring port:
  // the response body, or "" if the server did not answer.
  std::string Monitor(const std::string& path) const;
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  const std::string& store_dir() const { return store_dir_; }
  const std::string& error() const { return error_; }
  // The server's own log (stdout and stderr), for failure messages.
  std::string Log() const;

  // The server binary of this run and its version line
  // ("nats-server: v2.15.1").
  static std::string Binary();
  static std::string Version(const std::string& binary = Binary());
  // Whether the server of this run is `major`.`minor` or newer.
  static bool VersionAtLeast(int major, int minor);

 private:
  void Reap(int signal, int grace_ms);

  std::string binary_;
  TempDir dir_;
  std::string store_dir_;
  pid_t pid_ = -1;
  int port_ = -1;
  int cluster_port_ = -1;
  int monitor_port_ = -1;
  std::string error_;
  std::vector<std::string> extra_args_;
};

// NatsCluster: three nats-server processes forming one JetStream cluster on
// loopback, each with its own store directory and server name.
//
// nats-server refuses to start a clustered JetStream server that has no
// configured route, the first one included, so the first node routes to
// itself: its route port is a free one the kernel picks just before it
// starts. The other nodes take theirs with --cluster ...:-1 (read back from
// their ports files) and route to the first; gossip links them all.
class NatsCluster {
 public:
  static constexpr int kSize = 3;

  // `binary` as for NatsServer: Debian's 2.9.10 or the bootstrapped 2.10+.
  explicit NatsCluster(std::string binary = NatsServer::Binary());
  // One binary per node, for a mixed-version cluster.
  explicit NatsCluster(std::vector<std::string> binaries);
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  // Starts the three servers and waits, at most 30 s, until JetStream is
  // clustered: every node answers JetStream requests and a three-replica
  // stream can be created. On a loaded machine a freshly bootstrapped
  // cluster now and then stays stuck (its meta leader answered "no suitable
  // peers for placement" for 20 s in one run), so the first start tries up
  // to three brand-new clusters (new stores, new ports) before it gives up. Returns false, with the reasons and every node's log in
  // error(), otherwise.
  bool Start();
  // Stops every node (SIGTERM, then SIGKILL after 5 s).
  void Stop();

  NatsServer& node(int i) { return *nodes_.at(static_cast<size_t>(i)); }
  const std::string& cluster_name() const { return name_; }
  // The index of the node that leads `stream` ("KV_<bucket>") now, as
  // stream info on a running node says; -1 if none answers.
  int StreamLeader(const std::string& stream) const;
  // The index of the JetStream meta leader, from a running node's /jsz;
  // -1 if none names one.
  int MetaLeader() const;
  // The index of the node named "n1".."n3", or -1.
  int NodeNamed(std::string_view name) const;
  // The client URLs of all nodes, first node first.
  std::vector<std::string> urls() const;
  const std::string& error() const { return error_; }
  // Every node's log, headed by its server name, for failure messages.
  std::string Logs() const;

 private:
  bool WaitForJetStream(std::chrono::steady_clock::time_point deadline);
  // One attempt: (re)configures fresh nodes on the first start, starts them
  // and waits until `deadline` for JetStream to be clustered.
  bool StartOnce(std::chrono::steady_clock::time_point deadline);

  std::vector<std::string> binaries_;  // one per node
  const std::string name_;
  std::vector<std::unique_ptr<NatsServer>> nodes_;
  bool configured_ = false;  // the nodes' cluster arguments are set
  std::string error_;
};

// Connects a plain nats.c client (connection and JetStream context) to
// `url`, with reconnects off. Returns the first failing status.
natsStatus ConnectClient(const std::string& url, natsConnection** nc, jsCtx** js);

// As another client would: deletes KV bucket `bucket` on the server at
// `url` and creates it again (default settings), then puts `key` = `value`
// there unless `key` is empty; *revision (if given) gets that Put's revision.
// Returns the first failing status.
natsStatus RecreateKvBucket(const std::string& url, const std::string& bucket,
                            const std::string& key = "", const std::string& value = "",
                            uint64_t* revision = nullptr);

}  // namespace revkv::testing

#endif  // REVKV_TESTS_NATS_SERVER_H_
