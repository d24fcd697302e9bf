// The server-version probe and the capability table behind every feature
// gate, against real servers: the newest of the matrix, 2.10 and Debian 12's
// 2.9.10; and the connection's reading of the server it is on.

#include "replication/server_probe.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iterator>
#include <thread>

#include "replication/capabilities.h"
#include "replication/nats_connection.h"
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
    EXPECT_EQ(Supports(*v, Feature::kClusteredCas), c.safe) << c.text;
  }
  for (const char* bad : {"", "2", "2.9", "x.y.z", "2..1"}) {
    EXPECT_TRUE(ServerVersion::Parse(bad).status().IsInvalidArgument()) << bad;
  }
}

TEST(capabilities, EveryFeatureHasOneRowAndItsMinimum) {
  const Feature all[] = {Feature::kClusteredCas,          Feature::kMessageTtl,
                         Feature::kLimitMarkers,          Feature::kTtlLimitMarkers,
                         Feature::kSubjectSequenceFence,  Feature::kBatchedDirectGet,
                         Feature::kAtomicBatch};
  EXPECT_EQ(std::size(kCapabilities), std::size(all));
  for (Feature f : all) {
    int rows = 0;
    for (const Capability& c : kCapabilities) rows += c.feature == f;
    EXPECT_EQ(rows, 1) << static_cast<int>(f);
    EXPECT_EQ(CapabilityOf(f).feature, f);
  }
  struct Case {
    Feature feature;
    const char* below;
    const char* at;
  };
  for (Case c : {Case{Feature::kClusteredCas, "2.9.20", "2.9.21"},
                 Case{Feature::kMessageTtl, "2.10.27", "2.11.0"},
                 Case{Feature::kLimitMarkers, "2.10.27", "2.11.0"},
                 Case{Feature::kTtlLimitMarkers, "2.11.1", "2.11.2"},
                 Case{Feature::kSubjectSequenceFence, "2.10.27", "2.11.0"},
                 Case{Feature::kBatchedDirectGet, "2.10.27", "2.11.0"},
                 Case{Feature::kAtomicBatch, "2.11.9", "2.12.0"}}) {
    EXPECT_FALSE(Supports(*ServerVersion::Parse(c.below), c.feature)) << c.below;
    EXPECT_TRUE(Supports(*ServerVersion::Parse(c.at), c.feature)) << c.at;
    EXPECT_TRUE(Supports(*ServerVersion::Parse("2.15.1"), c.feature));
  }
}

TEST(capabilities, AMissingFeatureIsInvalidArgumentNamingBothVersions) {
  ServerInfo old;
  old.version = *ServerVersion::Parse("2.10.27");
  old.version_text = "2.10.27";
  Status s = Require(Feature::kAtomicBatch, old, "transaction on bucket 'b'");
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("transaction on bucket 'b'"), std::string_view::npos) << s.ToString();
  EXPECT_NE(s.message().find("2.10.27"), std::string_view::npos) << s.ToString();
  EXPECT_NE(s.message().find("2.12.0"), std::string_view::npos) << s.ToString();
  ServerInfo now;
  now.version = *ServerVersion::Parse("2.15.1");
  EXPECT_TRUE(Require(Feature::kAtomicBatch, now, "").ok());
}

TEST(capabilities, ConnectionReadsTheServerItIsOnNotTheFirstListed) {
  // The first URL of the list is dead: the version must come from the
  // server the connection reached, not from servers.front().
  NatsServer gone, live;
  ASSERT_TRUE(gone.Start()) << gone.error();
  ASSERT_TRUE(live.Start()) << live.error();
  const std::string dead_url = gone.url();
  gone.Stop();
  NatsOptions o;
  o.servers = {dead_url, live.url()};
  auto conn = NatsConnection::Connect(o);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto server = (*conn)->Server();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto direct = ProbeServer(live.url(), 2000ms);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_EQ(server->server_id, direct->server_id);
  EXPECT_NE(NatsServer::Version().find("v" + server->version_text), std::string::npos)
      << NatsServer::Version() << " vs " << server->version_text;
  EXPECT_TRUE((*conn)->Require(Feature::kClusteredCas, "").ok());
}

TEST(capabilities, AReconnectToAnotherServerReReadsItsVersion) {
  // The connection moves from Debian's 2.9.10 to the newest server (an
  // upgrade as a client sees it): the version follows.
  NatsServer old(REVKV_SYSTEM_NATS_SERVER), now;
  ASSERT_TRUE(old.Start()) << old.error();
  ASSERT_TRUE(now.Start()) << now.error();
  NatsOptions o;
  o.servers = {old.url()};
  auto conn = NatsConnection::Connect(o);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto before = (*conn)->Server();
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_EQ(before->version_text, "2.9.10");
  Status refused = (*conn)->Require(Feature::kClusteredCas, "bucket 'b' has 3 replicas");
  EXPECT_TRUE(refused.IsInvalidArgument()) << refused.ToString();
  EXPECT_NE(refused.message().find("2.9.21"), std::string_view::npos) << refused.ToString();
  // The node is upgraded in place: same port and store, newest binary.
  now.Stop();
  old.Stop();
  old.SetBinary(NatsServer::Binary());
  ASSERT_TRUE(old.Start()) << old.error();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((*conn)->reconnects() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE((*conn)->reconnects(), 1u);
  auto after = (*conn)->Server();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_NE(after->version_text, "2.9.10");
  EXPECT_NE(NatsServer::Version().find("v" + after->version_text), std::string::npos);
  EXPECT_TRUE((*conn)->Require(Feature::kClusteredCas, "").ok());
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

// The INFO line is read as JSON: a field of the same name inside a nested
// object, escapes and field order do not fool it, and a line that is not
// JSON is Corruption.
TEST(server_probe, ReadsTheInfoLineAsJson) {
  auto info = ParseInfoLine(
      R"(INFO {"cluster":{"version":"9.9.9","jetstream":false},"server_name":"n\"1\u00e9",)"
      R"("tls_required":true,"api_lvl":2,"jetstream":true,"version":"2.12.1"})");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->version.ToString(), "2.12.1");
  EXPECT_EQ(info->server_name, "n\"1\xc3\xa9");
  EXPECT_TRUE(info->jetstream);
  EXPECT_TRUE(info->tls_required);
  EXPECT_EQ(info->api_level, 2);
  // Wrong types read as absent.
  auto odd = ParseInfoLine(R"(INFO {"version":"2.10.0","jetstream":"yes","api_lvl":"2"})");
  ASSERT_TRUE(odd.ok()) << odd.status().ToString();
  EXPECT_FALSE(odd->jetstream);
  EXPECT_EQ(odd->api_level, 0);
  EXPECT_TRUE(ParseInfoLine(R"(INFO {"version":2})").status().IsCorruption());
  EXPECT_TRUE(ParseInfoLine(R"(INFO {"version":"2.10.0")").status().IsCorruption());
  EXPECT_TRUE(ParseInfoLine("INFO ").status().IsCorruption());
}

TEST(server_probe, ReadsTheBootstrappedServersVersion) {
  NatsServer s;
  ASSERT_TRUE(s.Start()) << s.error();
  auto info = ProbeServer(s.url(), 2000ms);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(info->jetstream);
  EXPECT_FALSE(info->server_id.empty());
  EXPECT_TRUE(Supports(info->version, Feature::kClusteredCas)) << info->version_text;
  // From 2.12 the INFO line states the JetStream API level.
  if (info->version.AtLeast(2, 12, 0)) {
    EXPECT_GE(info->api_level, 2) << info->version_text;
  } else {
    EXPECT_EQ(info->api_level, 0) << info->version_text;
  }
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
  EXPECT_FALSE(Supports(info->version, Feature::kClusteredCas)) << info->version_text;
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
