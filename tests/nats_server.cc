#include "tests/nats_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
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

// The monitoring port in a ports file: ..."monitoring":["http://127.0.0.1:40047"].
int ParseMonitorPort(const std::string& json) {
  size_t key = json.find("\"monitoring\"");
  if (key == std::string::npos) return -1;
  return ParsePort(json.substr(key));
}

// Servers must not outlive a test binary that crashes (or is killed by
// ctest's timeout), where no destructor runs: each is spawned with a
// parent-death signal. That signal fires when the *thread* that forked it
// exits, and tests start servers from short-lived threads too, so every
// fork happens on one thread that lives as long as the process.
class Spawner {
 public:
  static Spawner& Get() {
    static Spawner* spawner = new Spawner();  // never destroyed: its thread runs to the end
    return *spawner;
  }

  pid_t Spawn(const std::vector<std::string>& args, const std::string& log, std::string* error) {
    Request r;
    r.args = &args;
    r.log = &log;
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(&r);
    cv_.notify_all();
    cv_.wait(lock, [&] { return r.done; });
    if (r.pid < 0) *error = std::strerror(r.err);
    return r.pid;
  }

 private:
  struct Request {
    const std::vector<std::string>* args = nullptr;
    const std::string* log = nullptr;
    pid_t pid = -1;
    int err = 0;
    bool done = false;
  };

  Spawner() { std::thread([this] { Loop(); }).detach(); }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return !queue_.empty(); });
      Request* r = queue_.front();
      queue_.pop_front();
      Run(r);
      r->done = true;
      cv_.notify_all();
    }
  }

  static void Run(Request* r) {
    std::vector<char*> argv;
    for (const auto& a : *r->args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    // The child reports a failed exec through a close-on-exec pipe.
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
      r->err = errno;
      return;
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      // Only async-signal-safe calls from here to exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      int fd = open(r->log->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execve(argv[0], argv.data(), environ);
      int e = errno;
      ssize_t ignored = write(report[1], &e, sizeof(e));
      (void)ignored;
      _exit(127);
    }
    close(report[1]);
    if (pid < 0) {
      r->err = errno;
      close(report[0]);
      return;
    }
    int child_errno = 0;
    ssize_t n;
    do {
      n = read(report[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == static_cast<ssize_t>(sizeof(child_errno))) {
      waitpid(pid, nullptr, 0);
      r->err = child_errno;
      return;
    }
    r->pid = pid;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request*> queue_;  // GUARDED_BY(mu_)
};

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

pid_t SpawnTiedToThisProcess(const std::vector<std::string>& args, const std::string& log,
                             std::string* error) {
  return Spawner::Get().Spawn(args, log, error);
}

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

bool NatsServer::VersionAtLeast(int want_major, int want_minor) {
  const std::string line = Version();
  const auto v = line.find(" v");
  int major = 0, minor = 0;
  if (v == std::string::npos || std::sscanf(line.c_str() + v + 2, "%d.%d", &major, &minor) != 2) {
    return false;
  }
  return major > want_major || (major == want_major && minor >= want_minor);
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
                                   "-m", "-1", "-js", "-sd", store_dir_,
                                   "--ports_file_dir", ports_dir};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  const std::string log = dir_.Sub("server.log");
  std::string spawn_error;
  const pid_t pid = SpawnTiedToThisProcess(args, log, &spawn_error);
  if (pid < 0) {
    error_ = "cannot start " + binary_ + ": " + spawn_error +
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
      monitor_port_ = ParseMonitorPort(ports);
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

std::string NatsServer::Monitor(const std::string& path) const {
  if (!running() || monitor_port_ <= 0) return "";
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(monitor_port_));
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    // HTTP/1.0: the server closes the connection after the body, unchunked.
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

void NatsServer::Stop() { Reap(SIGTERM, 5000); }

void NatsServer::Kill() { Reap(SIGKILL, 5000); }

NatsCluster::NatsCluster(std::string binary)
    : NatsCluster(std::vector<std::string>(kSize, std::move(binary))) {}

NatsCluster::NatsCluster(std::vector<std::string> binaries)
    : binaries_(std::move(binaries)), name_("revkv-test") {
  binaries_.resize(kSize, binaries_.empty() ? NatsServer::Binary() : binaries_.back());
  for (int i = 0; i < kSize; ++i) {
    nodes_.push_back(std::make_unique<NatsServer>(binaries_[static_cast<size_t>(i)]));
  }
}

NatsCluster::~NatsCluster() { Stop(); }

void NatsCluster::Stop() {
  for (auto& n : nodes_) n->Stop();
}

int NatsCluster::NodeNamed(std::string_view name) const {
  for (int i = 0; i < kSize; ++i) {
    if (name == "n" + std::to_string(i + 1)) return i;
  }
  return -1;
}

int NatsCluster::StreamLeader(const std::string& stream) const {
  for (const auto& n : nodes_) {
    if (!n->running()) continue;
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    int leader = -1;
    if (ConnectClient(n->url(), &nc, &js) == NATS_OK) {
      jsStreamInfo* si = nullptr;
      if (js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) == NATS_OK) {
        if (si->Cluster != nullptr && si->Cluster->Leader != nullptr) {
          leader = NodeNamed(si->Cluster->Leader);
        }
        jsStreamInfo_Destroy(si);
      }
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (leader >= 0) return leader;
  }
  return -1;
}

int NatsCluster::MetaLeader() const {
  for (const auto& n : nodes_) {
    // /jsz: ..."meta_cluster":{"name":"revkv-test","leader":"n2",...
    const std::string jsz = n->Monitor("/jsz");
    size_t meta = jsz.find("\"meta_cluster\"");
    if (meta == std::string::npos) continue;
    size_t key = jsz.find("\"leader\"", meta);
    if (key == std::string::npos) continue;
    size_t open = jsz.find('"', jsz.find(':', key) + 1);
    size_t close = open == std::string::npos ? open : jsz.find('"', open + 1);
    if (close == std::string::npos) continue;
    int leader = NodeNamed(std::string_view(jsz).substr(open + 1, close - open - 1));
    if (leader >= 0) return leader;
  }
  return -1;
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
      for (int i = 0; i < kSize; ++i) {
        nodes_.push_back(std::make_unique<NatsServer>(binaries_[static_cast<size_t>(i)]));
      }
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

natsStatus RecreateKvBucket(const std::string& url, const std::string& bucket,
                            const std::string& key, const std::string& value,
                            uint64_t* revision) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* kv = nullptr;
  natsStatus s = ConnectClient(url, &nc, &js);
  if (s == NATS_OK) s = js_DeleteKeyValue(js, bucket.c_str());
  if (s == NATS_OK) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    s = js_CreateKeyValue(&kv, js, &cfg);
  }
  uint64_t rev = 0;
  if (s == NATS_OK && !key.empty()) s = kvStore_PutString(&rev, kv, key.c_str(), value.c_str());
  if (s == NATS_OK && revision != nullptr) *revision = rev;
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s;
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
