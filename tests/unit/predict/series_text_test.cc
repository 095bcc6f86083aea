#include "predict/series_text.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::predict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseSeriesTest, ReadsOneNumberALineSkippingBlanks) {
  auto y = ParseSeries("1\n  2.5 \r\n\n-3e2\n\t\n4");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_THAT(*y, ElementsAre(1, 2.5, -300, 4));
  EXPECT_TRUE(ParseSeries("").ok());
}

TEST(ParseSeriesTest, NamesTheBadLine) {
  auto y = ParseSeries("1\n2\n\n12,5\n");
  EXPECT_EQ(y.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(y.status().message(), HasSubstr("line 4: \"12,5\" is not a number"));
  EXPECT_THAT(ParseSeries("1\nnan\n").status().message(), HasSubstr("line 2"));
  EXPECT_THAT(ParseSeries("1 2\n").status().message(), HasSubstr("line 1"));
}

}  // namespace
}  // namespace flotilla::predict
