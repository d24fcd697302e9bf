// The server-version probe behind the guard for CAS on clustered buckets,
// against real servers: the bootstrapped 2.10+ one and Debian 12's 2.9.10.

#include "replication/server_probe.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "tests/nats_server.h"

namespace revkv::replication {
namespace {

using namespace std::chrono_literals;
using revkv::testing::MsSince;
using revkv::testing::NatsServer;

TEST(server_probe, VersionsBefore2_9_21AreUnsafeForClusteredCas) {
  struct Case {
    const char* text;
    bool safe;
  };
  for (Case c : {Case{"2.9.10", false}, Case{"2.9.20", false}, Case{"2.8.99", false},
                 Case{"2.9.21", true}, Case{"v2.10.27", true}, Case{"2.10.0-beta.3", true},
                 Case{"3.0.0", true}}) {
    auto v = ServerVersion::Parse(c.text);
    ASSERT_TRUE(v.ok()) << c.text;
    EXPECT_EQ(v->CasSafeOnClusteredStreams(), c.safe) << c.text;
  }
  for (const char* bad : {"", "2", "2.9", "x.y.z", "2..1"}) {
    EXPECT_TRUE(ServerVersion::Parse(bad).status().IsInvalidArgument()) << bad;
  }
}

TEST(server_probe, ParsesNatsUrls) {
  auto a = ParseNatsUrl("nats://user:pw@127.0.0.1:4333");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 4333);
  auto b = ParseNatsUrl("tls://localhost");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "localhost");
  EXPECT_EQ(b->port, 4222);
  auto c = ParseNatsUrl("[::1]:5000");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 5000);
  for (const char* bad : {"nats://:4222", "nats://host:0", "nats://host:99999", "host:x", "[::1"}) {
    EXPECT_TRUE(ParseNatsUrl(bad).status().IsInvalidArgument()) << bad;
  }
}

TEST(server_probe, RejectsAFirstLineThatIsNotInfo) {
  EXPECT_TRUE(ParseInfoLine("-ERR 'Authorization Violation'").status().IsCorruption());
  EXPECT_TRUE(ParseInfoLine("INFO {\"server_id\":\"x\"}").status().IsCorruption());
  auto ok = ParseInfoLine(R"(INFO {"server_id":"NABC","version":"2.9.10","jetstream":true})");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->server_id, "NABC");
  EXPECT_TRUE(ok->jetstream);
  EXPECT_EQ(ok->version.ToString(), "2.9.10");
}

TEST(server_probe, ReadsTheBootstrappedServersVersion) {
  NatsServer s;
  ASSERT_TRUE(s.Start()) << s.error();
  auto info = ProbeServer(s.url(), 2000ms);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(info->jetstream);
  EXPECT_FALSE(info->server_id.empty());
  EXPECT_TRUE(info->version.CasSafeOnClusteredStreams()) << info->version_text;
  // The probe agrees with what the binary says of itself.
  EXPECT_NE(NatsServer::Version().find("v" + info->version_text), std::string::npos)
      << NatsServer::Version() << " vs " << info->version_text;
}

TEST(server_probe, FlagsDebian12Server2_9_10AsUnsafe) {
  NatsServer old(REVKV_SYSTEM_NATS_SERVER);
  ASSERT_TRUE(old.Start()) << old.error();
  auto info = ProbeServer(old.url(), 2000ms);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->version.major, 2);
  EXPECT_EQ(info->version.minor, 9);
  EXPECT_FALSE(info->version.CasSafeOnClusteredStreams()) << info->version_text;
}

TEST(server_probe, NoServerIsUnavailable) {
  NatsServer s;
  ASSERT_TRUE(s.Start()) << s.error();
  const std::string url = s.url();
  s.Stop();
  auto info = ProbeServer(url, 2000ms);
  EXPECT_TRUE(info.status().IsUnavailable()) << info.status().ToString();
}

TEST(server_probe, SilentListenerTimesOutAsUnavailable) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto start = std::chrono::steady_clock::now();
  auto info = ProbeServer("nats://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), 300ms);
  EXPECT_TRUE(info.status().IsUnavailable()) << info.status().ToString();
  EXPECT_GE(MsSince(start), 250);
  close(fd);
}

}  // namespace
}  // namespace revkv::replication
