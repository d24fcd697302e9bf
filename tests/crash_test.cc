#include <gtest/gtest.h>
TEST(Placeholder, CrashBuilds) { EXPECT_EQ(1, 1); }
