// The CLI's help, version, parse-error exit codes and status --disk-usage,
// driven through the built binary (REVKV_CLI).

#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "revkv/version.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

struct Output {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::ostream& operator<<(std::ostream& os, const Output& o) {
  return os << "exit " << o.code << ", stdout [" << o.out << "], stderr [" << o.err << "]";
}

// Runs `revkv args...` through the shell (every argument single-quoted).
Output Revkv(const std::vector<std::string>& args) {
  revkv::testing::TempDir scratch;
  std::string command = std::string("'") + REVKV_CLI + "'";
  for (const std::string& a : args) command += " '" + a + "'";
  command += " 2>'" + scratch.Sub("err") + "' </dev/null";
  Output o;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) o.out.append(buf, n);
  const int status = pclose(pipe);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* err = fopen(scratch.Sub("err").c_str(), "r")) {
    while ((n = fread(buf, 1, sizeof(buf), err)) > 0) o.err.append(buf, n);
    fclose(err);
  }
  return o;
}

const std::vector<std::string> kCommands = {"put",  "get",     "entry", "create", "update",
                                            "delete", "purge", "keys",  "entries", "txn",
                                            "history", "watch", "status", "lock"};

TEST(cli_help, HelpPrintsUsageListingEveryCommand) {
  const Output help = Revkv({"--help"});
  EXPECT_EQ(help.code, 0) << help;
  EXPECT_EQ(help.err, "");
  EXPECT_EQ(help.out.rfind("Usage: revkv --db DIR", 0), 0u) << help;
  for (const std::string& name : kCommands) {
    EXPECT_NE(help.out.find("\n  " + name + " "), std::string::npos) << name;
  }
  EXPECT_NE(help.out.find("Exit codes: 0 ok, 1 usage or other error"), std::string::npos);
  EXPECT_EQ(Revkv({"-h"}).out, help.out);
}

TEST(cli_help, EveryCommandHasItsOwnUsage) {
  const std::string overall = Revkv({"--help"}).out;
  for (const std::string& name : kCommands) {
    const Output help = Revkv({name, "--help"});
    EXPECT_EQ(help.code, 0) << name << ": " << help;
    EXPECT_EQ(help.err, "") << name;
    EXPECT_EQ(help.out.rfind("Usage: revkv --db DIR [OPTIONS] " + name, 0), 0u) << help;
    EXPECT_NE(help.out, overall) << name;
    // The same with the options and -h anywhere before "--".
    EXPECT_EQ(Revkv({"--db", "/nonexistent", name, "-h"}).out, help.out) << name;
  }
  // After "--", --help belongs to lock's CMD: without --db that is an error.
  EXPECT_EQ(Revkv({"lock", "L", "--", "echo", "--help"}).code, 1);
}

TEST(cli_help, VersionIsTheLibrarys) {
  const Output v = Revkv({"--version"});
  EXPECT_EQ(v.code, 0) << v;
  EXPECT_EQ(v.out, std::string("revkv ") + REVKV_VERSION + "\n");
  EXPECT_EQ(v.err, "");
  EXPECT_EQ(Revkv({"--version=no"}).code, 1);
}

TEST(cli_help, ParseErrorsExitOneAndBadValuesSeven) {
  revkv::testing::TempDir dir;
  const std::string db = dir.Sub("db");
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--db", db, "--json=yes", "keys"},
                                             {"--db", db, "put", "k", "v", "--frobnicate"},
                                             {"--db", db, "put", "k", "v", "--bucket"},
                                             {"--db", db, "--bucket", "--json", "keys"},
                                             {"--db", db, "status", "--disk-usage=1"}}) {
    const Output o = Revkv(args);
    EXPECT_EQ(o.code, 1) << args[2] << ": " << o;
    EXPECT_EQ(o.err.rfind("revkv: ", 0), 0u) << o;
    EXPECT_NE(o.err.find("; run 'revkv --help' for usage\n"), std::string::npos) << o;
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--db", db, "lock", "L", "--timeout", "1h", "--", "true"},
           {"--db", db, "delete", "k", "--revision", "x"},
           {"--db", db, "--history=0", "put", "k", "v"}}) {
    const Output o = Revkv(args);
    EXPECT_EQ(o.code, 7) << o;
    EXPECT_EQ(o.err.rfind("revkv: InvalidArgument: ", 0), 0u) << o;
  }
  EXPECT_FALSE(std::filesystem::exists(db));
}

TEST(cli_help, StatusDiskUsageCountsTheStoreDirectory) {
  revkv::testing::TempDir dir;
  const std::string db = dir.Sub("db");
  ASSERT_EQ(Revkv({"--db", db, "put", "k", std::string(4096, 'v')}).code, 0);
  const Output json = Revkv({"--db", db, "--json", "status", "--disk-usage"});
  ASSERT_EQ(json.code, 0) << json;
  const auto parsed = nlohmann::json::parse(json.out);
  ASSERT_TRUE(parsed.contains("disk_bytes")) << json;
  const uint64_t bytes = parsed["disk_bytes"].get<uint64_t>();
  EXPECT_GT(bytes, 4096u) << json;
  EXPECT_EQ(parsed["applied"], 1) << json;
  uint64_t files = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(db)) {
    if (f.is_regular_file()) files += f.file_size();
  }
  // Measured while the store was open (RocksDB rewrites a few small files
  // when it opens and closes): of the directory's size, not of one file.
  EXPECT_GT(bytes * 2, files) << json;
  EXPECT_LT(bytes, files * 2) << json;
  const Output text = Revkv({"--db", db, "status", "--disk-usage"});
  EXPECT_NE(text.out.find("\ndisk_bytes: "), std::string::npos) << text;
  // Without --disk-usage the output is as before.
  EXPECT_EQ(Revkv({"--db", db, "--json", "status"}).out.find("disk_bytes"), std::string::npos);
  EXPECT_EQ(Revkv({"--db", db, "get", "k", "--disk-usage"}).code, 1);
}

class cli_help_nats : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }
  revkv::testing::NatsServer server_;
  revkv::testing::TempDir dir_;
};

TEST_F(cli_help_nats, VersionWithNatsNamesTheServer) {
  const std::string line = revkv::testing::NatsServer::Version();  // "nats-server: v2.15.1"
  const std::string server = line.substr(line.find(" v") + 2);
  // No bucket is needed, nor made: the engine asks the server it connects to.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--nats", server_.url(), "--version"},
           {"--version", "--db", dir_.Sub("b"), "--nats", server_.url()}}) {
    const Output v = Revkv(args);
    EXPECT_EQ(v.code, 0) << v;
    EXPECT_EQ(v.out, std::string("revkv ") + REVKV_VERSION + "\nnats-server " + server + "\n");
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("b"))) << "--version opens no store at --db";
  const Output get = Revkv({"--db", dir_.Sub("c"), "--nats", server_.url(), "get", "k"});
  EXPECT_EQ(get.code, 2) << "the bucket was not created: " << get;
  server_.Stop();
  const Output down = Revkv({"--nats", server_.url(), "--version"});
  EXPECT_EQ(down.code, 6) << down;
}

}  // namespace
