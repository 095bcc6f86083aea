#include "wire/endpoints.h"

#include <gtest/gtest.h>

namespace flotilla::wire {
namespace {

TEST(ParseEndpointListTest, AcceptsOneOrSeveralAddresses) {
  auto one = ParseEndpointList("127.0.0.1:7070");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, std::vector<std::string>{"127.0.0.1:7070"});
  auto three = ParseEndpointList("10.0.0.1:7070, 10.0.0.2:7070 ,[::1]:7070");
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(*three, (std::vector<std::string>{"10.0.0.1:7070", "10.0.0.2:7070", "[::1]:7070"}));
}

TEST(ParseEndpointListTest, NamesWhatIsWrong) {
  EXPECT_NE(ParseEndpointList("").status().message().find("empty entry"), std::string::npos);
  EXPECT_NE(ParseEndpointList("a:1,,b:2").status().message().find("empty entry"),
            std::string::npos);
  EXPECT_NE(ParseEndpointList("a:1,hostonly").status().message().find("'hostonly'"),
            std::string::npos);
  EXPECT_FALSE(ParseEndpointList("a:").ok());
  EXPECT_FALSE(ParseEndpointList(":7070").ok());
  std::string many;
  for (int i = 0; i < 17; ++i) many += (i ? "," : "") + std::string("h:") + std::to_string(i + 1);
  EXPECT_NE(ParseEndpointList(many).status().message().find("at most 16"), std::string::npos);
}

TEST(MovesToNextManagerTest, OnlyUnavailableAndOptionallyDeadline) {
  EXPECT_TRUE(MovesToNextManager(grpc::StatusCode::UNAVAILABLE, false));
  EXPECT_FALSE(MovesToNextManager(grpc::StatusCode::DEADLINE_EXCEEDED, false));
  EXPECT_TRUE(MovesToNextManager(grpc::StatusCode::DEADLINE_EXCEEDED, true));
  EXPECT_FALSE(MovesToNextManager(grpc::StatusCode::PERMISSION_DENIED, true));
  EXPECT_FALSE(MovesToNextManager(grpc::StatusCode::INVALID_ARGUMENT, true));
}

class EndpointsTest : public ::testing::Test {
 protected:
  Endpoints::ChannelMaker Maker() {
    return [this](const std::string& address) {
      made.push_back(address);
      return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    };
  }
  std::vector<std::string> made;
};

TEST_F(EndpointsTest, MakesEachChannelOnceOnFirstUse) {
  Endpoints e({"127.0.0.1:1", "127.0.0.1:2"}, Maker());
  EXPECT_TRUE(made.empty());
  auto a = e.Current();
  auto b = e.Current();
  EXPECT_EQ(a.channel, b.channel);
  EXPECT_EQ(a.address, "127.0.0.1:1");
  EXPECT_EQ(made, std::vector<std::string>{"127.0.0.1:1"});
}

TEST_F(EndpointsTest, AFailureMovesOnAndWrapsAround) {
  Endpoints e({"a:1", "b:2", "c:3"}, Maker());
  EXPECT_EQ(e.Failed(e.Current().index), 1u);
  EXPECT_EQ(e.Current().address, "b:2");
  EXPECT_EQ(e.Failed(1), 2u);
  EXPECT_EQ(e.Failed(2), 0u);
  EXPECT_EQ(e.Current().address, "a:1");
  EXPECT_EQ(e.Describe(), "a:1,b:2,c:3");
}

TEST_F(EndpointsTest, AStaleFailureDoesNotSkipTheNewLeader) {
  // Two loops saw the same manager fail; only the first report moves on, so
  // the second does not skip past the address the first moved to.
  Endpoints e({"a:1", "b:2", "c:3"}, Maker());
  const size_t seen = e.Current().index;
  EXPECT_EQ(e.Failed(seen), 1u);
  EXPECT_EQ(e.Failed(seen), 1u);
  EXPECT_EQ(e.Current().address, "b:2");
}

TEST_F(EndpointsTest, OneAddressNeverMoves) {
  Endpoints e({"only:1"}, Maker());
  EXPECT_EQ(e.Failed(0), 0u);
  EXPECT_EQ(e.Current().address, "only:1");
}

}  // namespace
}  // namespace flotilla::wire
