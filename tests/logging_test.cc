// Options::logger: the engine's messages go to the embedder's logger at or
// above Options::log_level, and nothing reaches stderr then; without a
// logger they go to stderr, one "revkv: <level>: ..." line each. The message
// used is a real one: a replica finds that its bucket was deleted and
// recreated on the server.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }

  Options EngineOptions() {
    Options o;
    o.path = dir_.path();
    o.nats.servers = {server_.url()};
    return o;
  }
  // Writes to bucket "re" through an engine, then deletes and recreates the
  // bucket with nats.c, so that the next open resyncs the replica (and says
  // so, as a warning).
  void WriteThenRecreateTheBucket() {
    {
      auto e = Engine::Open(EngineOptions());
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      auto b = (*e)->OpenBucket("re");
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      ASSERT_TRUE((*b)->Put("old", "1").ok());
    }
    ASSERT_EQ(testing::RecreateKvBucket(server_.url(), "re"), NATS_OK);
  }
  // Opens the engine and the bucket with `o`; returns what reached stderr.
  std::string OpenCapturingStderr(const Options& o) {
    ::testing::internal::CaptureStderr();
    {
      auto e = Engine::Open(o);
      EXPECT_TRUE(e.ok()) << e.status().ToString();
      if (e.ok()) {
        auto b = (*e)->OpenBucket("re");
        EXPECT_TRUE(b.ok()) << b.status().ToString();
        if (b.ok()) {
          EXPECT_TRUE((*b)->Get("old").status().IsNotFound());
        }
      }
    }
    return ::testing::internal::GetCapturedStderr();
  }

  NatsServer server_;
  TempDir dir_;
};

TEST_F(LoggingTest, MessagesGoToTheLoggerAndNotToStderr) {
  WriteThenRecreateTheBucket();
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> got;
  Options o = EngineOptions();
  o.logger = [&](LogLevel level, std::string_view message) {
    std::lock_guard<std::mutex> lock(mu);
    got.emplace_back(level, std::string(message));
  };
  const std::string err = OpenCapturingStderr(o);
  EXPECT_EQ(err.find("revkv"), std::string::npos) << err;
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, LogLevel::kWarning);
  EXPECT_NE(got[0].second.find("the replica of bucket 're' is stale (the bucket was deleted and "
                               "recreated)"),
            std::string::npos)
      << got[0].second;
  EXPECT_EQ(got[0].second.find('\n'), std::string::npos);
}

TEST_F(LoggingTest, WithoutALoggerMessagesGoToStderrOneLineEach) {
  WriteThenRecreateTheBucket();
  const std::string err = OpenCapturingStderr(EngineOptions());
  EXPECT_EQ(err.rfind("revkv: warning: the replica of bucket 're' is stale", 0), 0u) << err;
  EXPECT_EQ(err.back(), '\n');
  EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
}

TEST_F(LoggingTest, MessagesBelowTheLevelAreDropped) {
  WriteThenRecreateTheBucket();
  int calls = 0;
  Options o = EngineOptions();
  o.log_level = LogLevel::kError;
  o.logger = [&](LogLevel, std::string_view) { ++calls; };
  const std::string err = OpenCapturingStderr(o);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(err.find("revkv"), std::string::npos) << err;
}

TEST(LogLevelName, NamesEachLevel) {
  EXPECT_STREQ(LogLevelName(LogLevel::kDebug), "debug");
  EXPECT_STREQ(LogLevelName(LogLevel::kInfo), "info");
  EXPECT_STREQ(LogLevelName(LogLevel::kWarning), "warning");
  EXPECT_STREQ(LogLevelName(LogLevel::kError), "error");
}

}  // namespace
}  // namespace revkv
