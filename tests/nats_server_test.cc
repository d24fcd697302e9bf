// The NATS test fixture itself: the bootstrapped server is new enough, starts
// on a free loopback port, serves JetStream KV to nats.c, keeps its port and
// data across a restart, and is gone after Stop.

#include "tests/nats_server.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>
#include <regex>
#include <string>

namespace revkv::testing {
namespace {

// A nats.c connection to `url` with reconnects off, or nullptr.
struct Conn {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus status = NATS_OK;
  explicit Conn(const std::string& url) : status(ConnectClient(url, &nc, &js)) {}
  ~Conn() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
};

TEST(nats_server, BootstrappedServerIsAtLeast2_10) {
  const std::string version = NatsServer::Version();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(version, m, std::regex(R"(v(\d+)\.(\d+)\.)")))
      << "cannot read the version of " << NatsServer::Binary() << ": '" << version
      << "'; run scripts/bootstrap.sh";
  const int major = std::stoi(m[1]), minor = std::stoi(m[2]);
  EXPECT_TRUE(major > 2 || (major == 2 && minor >= 10))
      << NatsServer::Binary() << " is " << version
      << "; tests need 2.10 or newer (scripts/bootstrap.sh puts one in .deps/)";
}

TEST(nats_server, ServesKeyValueOnAFreeLoopbackPort) {
  NatsServer a, b;
  ASSERT_TRUE(a.Start()) << a.error();
  ASSERT_TRUE(b.Start()) << b.error();
  EXPECT_GT(a.port(), 0);
  EXPECT_NE(a.port(), b.port());
  EXPECT_NE(a.port(), 4222) << "the default port must never be used";

  Conn c(a.url());
  ASSERT_EQ(c.status, NATS_OK) << natsStatus_GetText(c.status);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = "smoke";
  cfg.History = 5;
  kvStore* kv = nullptr;
  ASSERT_EQ(js_CreateKeyValue(&kv, c.js, &cfg), NATS_OK) << nats_GetLastError(nullptr);
  uint64_t rev = 0;
  ASSERT_EQ(kvStore_PutString(&rev, kv, "job.1", "queued"), NATS_OK);
  EXPECT_EQ(rev, 1u);
  kvEntry* e = nullptr;
  ASSERT_EQ(kvStore_Get(&e, kv, "job.1"), NATS_OK);
  EXPECT_STREQ(kvEntry_ValueString(e), "queued");
  EXPECT_EQ(kvEntry_Revision(e), 1u);
  kvEntry_Destroy(e);
  kvStore_Destroy(kv);
}

TEST(nats_server, RestartKeepsPortAndDataAndStopRefusesConnections) {
  NatsServer s;
  ASSERT_TRUE(s.Start()) << s.error();
  const int port = s.port();
  {
    Conn c(s.url());
    ASSERT_EQ(c.status, NATS_OK);
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = "keep";
    kvStore* kv = nullptr;
    ASSERT_EQ(js_CreateKeyValue(&kv, c.js, &cfg), NATS_OK);
    uint64_t rev = 0;
    ASSERT_EQ(kvStore_PutString(&rev, kv, "k", "v1"), NATS_OK);
    kvStore_Destroy(kv);
  }
  const pid_t first = s.pid();
  ASSERT_TRUE(s.Restart()) << s.error();
  EXPECT_EQ(s.port(), port);
  EXPECT_NE(s.pid(), first);
  EXPECT_EQ(kill(first, 0), -1) << "the old server process is still alive";
  {
    Conn c(s.url());
    ASSERT_EQ(c.status, NATS_OK);
    kvStore* kv = nullptr;
    ASSERT_EQ(js_KeyValue(&kv, c.js, "keep"), NATS_OK);
    kvEntry* e = nullptr;
    ASSERT_EQ(kvStore_Get(&e, kv, "k"), NATS_OK);
    EXPECT_STREQ(kvEntry_ValueString(e), "v1");
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
  }
  s.Stop();
  EXPECT_FALSE(s.running());
  Conn refused(s.url());
  EXPECT_NE(refused.status, NATS_OK);
}

// Whether `pid` is gone: no such process, or a zombie nobody reaped yet.
bool Gone(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

TEST(nats_server, ServersDoNotOutliveATestBinaryThatCrashes) {
  for (const char* how : {"abort", "segv", "kill"}) {
    const std::string cmd = std::string(REVKV_NATS_SERVER_CRASHER) + " " + how + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char line[64] = {0};
    const bool got = std::fgets(line, sizeof(line), p) != nullptr;
    const int status = pclose(p);
    ASSERT_TRUE(got) << how << ": the crasher printed no server pid";
    int pid = 0;
    ASSERT_EQ(std::sscanf(line, "pid %d", &pid), 1) << line;
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(WIFSIGNALED(status) || WEXITSTATUS(status) > 128) << how << ": " << status;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!Gone(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(Gone(pid)) << how << ": nats-server " << pid << " outlived the crashed binary";
    if (!Gone(pid)) kill(pid, SIGKILL);  // ours: its PID came from the crasher
  }
}

}  // namespace
}  // namespace revkv::testing
