#include <gtest/gtest.h>
#include "revkv/revkv.h"
TEST(Placeholder, Builds) { EXPECT_TRUE(revkv::Status::OK().ok()); }
