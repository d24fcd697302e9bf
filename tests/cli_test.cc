#include <gtest/gtest.h>
TEST(Placeholder, CliBuilds) { EXPECT_EQ(1, 1); }
