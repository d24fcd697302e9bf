// The NATS test fixture itself: the bootstrapped server is new enough, starts
// on a free loopback port, serves JetStream KV to nats.c, keeps its port and
// data across a restart, and is gone after Stop.

#include "tests/nats_server.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <memory>
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

}  // namespace
}  // namespace revkv::testing
