#include "tests/nats_server.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
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

// The port in a ports file: {"nats":["nats://127.0.0.1:41209"]}.
int ParsePort(const std::string& json) {
  const std::string marker = "nats://127.0.0.1:";
  size_t at = json.find(marker);
  if (at == std::string::npos) return -1;
  return std::atoi(json.c_str() + at + marker.size());
}

}  // namespace

NatsServer::NatsServer(std::string binary)
    : binary_(std::move(binary)), store_dir_(dir_.Sub("store")) {}

NatsServer::~NatsServer() { Stop(); }

std::string NatsServer::Binary() { return REVKV_NATS_SERVER; }

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
    int port = ParsePort(ReadFile(ports_file));
    if (port > 0) {
      port_ = port;
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
