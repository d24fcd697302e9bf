#include "revkv/validation.h"

#include <gtest/gtest.h>

#include <string>

#include "revkv/bucket.h"

namespace revkv {
namespace {

TEST(ValidateKey, AcceptsNatsKeyCharacters) {
  for (const char* k : {"a", "job.42", "A-Z_a=z/0.9", "x/y/z", "--", "==", "a.b.c.d", "a\\b"}) {
    EXPECT_TRUE(ValidateKey(k).ok()) << k;
  }
}

TEST(ValidateKey, RejectsBadKeysWithInvalidArgument) {
  for (const char* k : {"", ".a", "a.", "a..b", "a b", "a*", "a>", "é", "a\tb", "a:b"}) {
    Status s = ValidateKey(k);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << k << "' gave " << s.ToString();
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_TRUE(ValidateKey(std::string(kMaxKeyLength, 'a')).ok());
  EXPECT_TRUE(ValidateKey(std::string(kMaxKeyLength + 1, 'a')).IsInvalidArgument());
  EXPECT_TRUE(ValidateKey(std::string("a\0b", 3)).IsInvalidArgument());
}

TEST(ValidateFilter, WildcardsMustBeWholeTokensAndGreaterThanLast) {
  for (const char* f : {"", ">", "*", "a.*", "a.>", "*.b.>", "a.*.c"}) {
    EXPECT_TRUE(ValidateFilter(f).ok()) << f;
  }
  for (const char* f : {"a*", ">.a", "a.>.b", "a..b", ".a", "a b"}) {
    EXPECT_TRUE(ValidateFilter(f).IsInvalidArgument()) << f;
  }
}

// Reads take every key another NATS client can store: any length, any byte
// a subject may hold, wildcard characters as literal tokens.
TEST(ValidateReadKey, AcceptsEveryKeyTheServerCanStore) {
  for (const std::string& k :
       {std::string("a"), std::string("job.42"), std::string(kMaxKeyLength + 1, 'a'),
        std::string(100000, 'x'), std::string("caf\xc3\xa9.\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87"),
        std::string("a.*"), std::string("a.>"), std::string("*"), std::string("a*b:c"),
        std::string("ctl\x01\x7f"), std::string("bad\xff"), std::string("q\"uote")}) {
    EXPECT_TRUE(ValidateReadKey(k).ok()) << k << ": " << ValidateReadKey(k).ToString();
  }
}

TEST(ValidateReadKey, RejectsWhatNoSubjectHolds) {
  for (const std::string& k :
       {std::string(""), std::string(".a"), std::string("a."), std::string("a..b"),
        std::string("a b"), std::string("a\tb"), std::string("a\rb"), std::string("a\nb"),
        std::string("a\fb"), std::string("a\0b", 3)}) {
    Status s = ValidateReadKey(k);
    EXPECT_TRUE(s.IsInvalidArgument()) << "'" << k << "' gave " << s.ToString();
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_NE(ValidateReadKey("a b").message().find("no NATS subject"), std::string::npos);
}

TEST(ValidateReadFilter, TakesReadKeysAndWholeTokenWildcards) {
  for (const std::string& f :
       {std::string(""), std::string(">"), std::string("caf\xc3\xa9.*"),
        std::string(2000, 'k') + ".>", std::string("a*b.>"), std::string("*.\xd0\xba")}) {
    EXPECT_TRUE(ValidateReadFilter(f).ok()) << f;
  }
  for (const char* f : {">.a", "a.>.b", "a..b", ".a", "a b", "a\tb"}) {
    EXPECT_TRUE(ValidateReadFilter(f).IsInvalidArgument()) << f;
  }
}

TEST(ValidateBucketName, AllowsOnlyNameCharacters) {
  EXPECT_TRUE(ValidateBucketName("jobs_2-x").ok());
  for (const char* n : {"", "a.b", "a b", "a/b", "a*"}) {
    EXPECT_TRUE(ValidateBucketName(n).IsInvalidArgument()) << n;
  }
  EXPECT_TRUE(ValidateBucketName(std::string(129, 'a')).IsInvalidArgument());
}

TEST(FilterMatches, StarIsOneTokenGreaterThanIsOneOrMore) {
  EXPECT_TRUE(FilterMatches(">", "a"));
  EXPECT_TRUE(FilterMatches("", "a.b"));
  EXPECT_TRUE(FilterMatches("a.*", "a.b"));
  EXPECT_FALSE(FilterMatches("a.*", "a.b.c"));
  EXPECT_FALSE(FilterMatches("a.*", "a"));
  EXPECT_TRUE(FilterMatches("a.>", "a.b.c"));
  EXPECT_FALSE(FilterMatches("a.>", "a"));
  EXPECT_TRUE(FilterMatches("*.b", "x.b"));
  EXPECT_FALSE(FilterMatches("*.b", "x.c"));
  EXPECT_TRUE(FilterMatches("a.b", "a.b"));
  EXPECT_FALSE(FilterMatches("a.b", "a.bc"));
  EXPECT_FALSE(FilterMatches("a", "a.b"));
  EXPECT_TRUE(FilterMatches("*.*.c", "a.b.c"));
}

}  // namespace
}  // namespace revkv
