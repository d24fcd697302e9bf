#include "tests/nats_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace revkv::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The port in a ports file: {"nats":["nats://127.0.0.1:41209"]}, or
// "tls://..." when the server requires TLS.
int ParsePort(const std::string& json) {
  const std::string marker = "://127.0.0.1:";
  size_t at = json.find(marker);
  if (at == std::string::npos) return -1;
  return std::atoi(json.c_str() + at + marker.size());
}

// The route port in a ports file:
// {"nats":["nats://127.0.0.1:41209"],"cluster":["nats://127.0.0.1:52881"]}.
int ParseClusterPort(const std::string& json) {
  size_t key = json.find("\"cluster\"");
  if (key == std::string::npos) return -1;
  return ParsePort(json.substr(key));
}

// The server writes its ports file in one go once every listener is up; a
// read may still catch it half written.
bool Complete(const std::string& json) {
  size_t end = json.find_last_not_of(" \t\r\n");
  return end != std::string::npos && json[end] == '}';
}

// A loopback TCP port that is free now: the kernel picks it for a socket
// bound to port 0, which is closed again at once.
int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// The last `max` bytes of `text`, for logs quoted in failure messages.
std::string Tail(const std::string& text, size_t max) {
  return text.size() <= max ? text : "...\n" + text.substr(text.size() - max);
}

}  // namespace

NatsServer::NatsServer(std::string binary)
    : binary_(std::move(binary)), store_dir_(dir_.Sub("store")) {}

NatsServer::~NatsServer() { Stop(); }

std::string NatsServer::Binary() {
  // ctest runs a suite once per server of the matrix and names the server
  // here; a suite run by hand takes the newest.
  const char* chosen = std::getenv("REVKV_TEST_NATS_SERVER");
  return chosen != nullptr && *chosen != '\0' ? chosen : REVKV_NATS_SERVER_NEWEST;
}

std::string NatsServer::Version(const std::string& binary) {
  std::string cmd = binary + " --version 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[256] = {0};
  std::string out;
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string NatsServer::Log() const { return ReadFile(dir_.Sub("server.log")); }

bool NatsServer::Start() {
  if (running()) return true;
  error_.clear();
  const std::string ports_dir = dir_.Sub("ports");
  std::error_code ec;
  std::filesystem::remove_all(ports_dir, ec);
  std::filesystem::create_directories(ports_dir, ec);
  std::vector<std::string> args = {binary_, "-a", "127.0.0.1", "-p",
                                   std::to_string(port_ > 0 ? port_ : -1),
                                   "-js", "-sd", store_dir_, "--ports_file_dir", ports_dir};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir_.Sub("server.log");
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    error_ = "cannot start " + binary_ + ": " + std::strerror(rc) +
             "; run scripts/bootstrap.sh to install nats-server";
    return false;
  }
  pid_ = pid;

  // Ready once the ports file names the client port.
  const std::string ports_file = ports_dir + "/nats-server_" + std::to_string(pid) + ".ports";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "nats-server exited at start; its log:\n" + Log();
      return false;
    }
    const std::string ports = ReadFile(ports_file);
    int port = Complete(ports) ? ParsePort(ports) : -1;
    if (port > 0) {
      port_ = port;
      cluster_port_ = ParseClusterPort(ports);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  error_ = "nats-server did not report its port within 10 s; its log:\n" + Log();
  Kill();
  return false;
}

void NatsServer::Reap(int signal, int grace_ms) {
  if (pid_ <= 0) return;
  kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

void NatsServer::Stop() { Reap(SIGTERM, 5000); }

void NatsServer::Kill() { Reap(SIGKILL, 5000); }

NatsCluster::NatsCluster(std::string binary) : binary_(std::move(binary)), name_("revkv-test") {
  for (int i = 0; i < kSize; ++i) nodes_.push_back(std::make_unique<NatsServer>(binary_));
}

NatsCluster::~NatsCluster() { Stop(); }

void NatsCluster::Stop() {
  for (auto& n : nodes_) n->Stop();
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (const auto& n : nodes_) out.push_back(n->url());
  return out;
}

std::string NatsCluster::Logs() const {
  std::string out;
  for (int i = 0; i < kSize; ++i) {
    out += "---- log of node n" + std::to_string(i + 1) + " ----\n";
    out += Tail(nodes_[static_cast<size_t>(i)]->Log(), 6000);
  }
  return out;
}

bool NatsCluster::Start() {
  constexpr auto kWait = std::chrono::seconds(30);
  if (configured_) {
    // A restart of the same nodes: same ports and stores, no second chance.
    error_.clear();
    return StartOnce(std::chrono::steady_clock::now() + kWait);
  }
  constexpr int kAttempts = 3;
  std::string errors;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    if (attempt > 1) {
      // Throw the stuck cluster away (StartOnce stopped it) and bootstrap
      // a new one from scratch: new store directories, new ports.
      configured_ = false;
      nodes_.clear();
      for (int i = 0; i < kSize; ++i) nodes_.push_back(std::make_unique<NatsServer>(binary_));
    }
    error_.clear();
    if (StartOnce(std::chrono::steady_clock::now() + kWait)) return true;
    errors += "attempt " + std::to_string(attempt) + " of " + std::to_string(kAttempts) + ": " +
              error_ + "\n";
    // Visible in the test's output even when a later attempt succeeds.
    std::fprintf(stderr, "NatsCluster: attempt %d of %d failed: %s\n", attempt, kAttempts,
                 error_.c_str());
  }
  error_ = errors;
  return false;
}

bool NatsCluster::StartOnce(std::chrono::steady_clock::time_point deadline) {
  if (!configured_) {
    configured_ = true;
    // The first start: give each node its name, cluster and routes. Later
    // starts (NatsServer::Restart) reuse them, and the first node its port.
    const int seed_port = FreeLoopbackPort();
    if (seed_port <= 0) {
      error_ = std::string("no free loopback port for the first node's routes: ") +
               std::strerror(errno);
      return false;
    }
    const std::string seed = "nats://127.0.0.1:" + std::to_string(seed_port);
    for (int i = 0; i < kSize; ++i) {
      nodes_[static_cast<size_t>(i)]->AddArgs(
          {"--server_name", "n" + std::to_string(i + 1), "--cluster_name", name_, "--cluster",
           i == 0 ? seed : "nats://127.0.0.1:-1", "--routes", seed});
    }
  }
  for (int i = 0; i < kSize; ++i) {
    NatsServer& n = *nodes_[static_cast<size_t>(i)];
    if (!n.Start()) {
      error_ = "node n" + std::to_string(i + 1) + " did not start: " + n.error();
      Stop();
      return false;
    }
    if (n.cluster_port() <= 0) {
      error_ = "node n" + std::to_string(i + 1) + " reports no route port; its log:\n" + n.Log();
      Stop();
      return false;
    }
  }
  if (!WaitForJetStream(deadline)) {
    error_ += "\n" + Logs();
    Stop();
    return false;
  }
  return true;
}

bool NatsCluster::WaitForJetStream(std::chrono::steady_clock::time_point deadline) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 1000;
  std::string last;
  auto describe = [](natsStatus s, jsErrCode jerr) {
    const char* detail = nats_GetLastError(nullptr);
    return std::string(natsStatus_GetText(s)) + " (" + (detail != nullptr ? detail : "") +
           ", JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  };
  // A meta leader answers account info on every node...
  for (int i = 0; i < kSize; ++i) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsStatus s = ConnectClient(nodes_[static_cast<size_t>(i)]->url(), &nc, &js);
    while (s == NATS_OK) {
      jsAccountInfo* ai = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = js_GetAccountInfo(&ai, js, &jo, &jerr);
      jsAccountInfo_Destroy(ai);
      if (s == NATS_OK) break;
      last = describe(s, jerr);
      if (std::chrono::steady_clock::now() >= deadline) break;
      s = NATS_OK;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (s != NATS_OK && last.empty()) last = describe(s, static_cast<jsErrCode>(0));
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (s != NATS_OK) {
      error_ = "JetStream on node n" + std::to_string(i + 1) +
               " found no meta leader in time; last answer: " + last;
      return false;
    }
  }
  // ...and once every peer has joined, a three-replica stream can be placed.
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = ConnectClient(nodes_[0]->url(), &nc, &js);
  bool placed = false;
  const char* subjects[] = {"revkv.cluster.ready"};
  while (s == NATS_OK && !placed) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "REVKV_CLUSTER_READY";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_MemoryStorage;
    sc.Replicas = kSize;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus as = js_AddStream(&si, js, &sc, &jo, &jerr);
    jsStreamInfo_Destroy(si);
    if (as == NATS_OK || jerr == JSStreamNameExistErr) {
      placed = js_DeleteStream(js, "REVKV_CLUSTER_READY", &jo, &jerr) == NATS_OK;
      if (!placed) last = "deleting the probe stream: " + describe(NATS_ERR, jerr);
    } else {
      last = describe(as, jerr);
    }
    if (placed || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (s != NATS_OK) last = "cannot connect to node n1: " + describe(s, static_cast<jsErrCode>(0));
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  if (!placed) {
    error_ = "the cluster could not place a " + std::to_string(kSize) +
             "-replica stream in time; last answer: " + last;
  }
  return placed;
}

natsStatus ConnectClient(const std::string& url, natsConnection** nc, jsCtx** js) {
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
  if (s == NATS_OK) s = natsConnection_Connect(nc, opts);
  if (s == NATS_OK) s = natsConnection_JetStream(js, *nc, nullptr);
  natsOptions_Destroy(opts);
  return s;
}

}  // namespace revkv::testing
