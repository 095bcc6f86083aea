// A checkpoint image sent straight to an agent's RestoreTask, bypassing the
// source agent (a host in between, or a forger): without the source's MAC
// it is refused before any of it is used, and nothing of it stays on disk.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flotilla/v1/federation.grpc.pb.h"
#include "support/federation_harness.h"
#include "support/tar_builder.h"

namespace flotilla::testing {
namespace {

constexpr char kAgent[] = "img1";

class HostileImage : public ::testing::Test {
 protected:
  void SetUp() override {
    // Development mode: no node certificate or migration token stands in
    // front of RestoreTask, so the image's MAC is the only check left.
    h_ = std::make_unique<FederationHarness>(/*insecure=*/true);
    h_->StartManager();
    h_->StartAgent({.id = kAgent, .region = "img"});
    ASSERT_TRUE(h_->WaitOnline(1)) << h_->ReadLog("manager.log");
    v1::ListNodesResponse nodes;
    ASSERT_TRUE(h_->ListNodes(&nodes).ok());
    for (const auto& n : nodes.nodes()) address_ = n.address();
    ASSERT_FALSE(address_.empty());
  }
  void TearDown() override { h_.reset(); }

  // Streams `files` as image `migration_id` and returns the agent's answer.
  grpc::Status Send(const std::string& migration_id,
                    const std::vector<std::pair<std::string, std::string>>& files) {
    auto stub = v1::AgentService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::RestoreTaskResponse resp;
    auto writer = stub->RestoreTask(&ctx, &resp);
    int64_t bytes = 0;
    for (const auto& [path, data] : files) bytes += static_cast<int64_t>(data.size());
    v1::RestoreTaskChunk head;
    head.mutable_header()->set_migration_id(migration_id);
    head.mutable_header()->set_execution_id("ex-forged");
    head.mutable_header()->set_attempt(1);
    head.mutable_header()->set_image_bytes(bytes);
    head.mutable_header()->mutable_request()->mutable_code()->add_argv("true");
    writer->Write(head);
    for (const auto& [path, data] : files) {
      v1::RestoreTaskChunk c;
      c.mutable_file()->set_path(path);
      c.mutable_file()->set_data(data);
      c.mutable_file()->set_mode(0600);
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::string ImageDir(const std::string& migration_id) const {
    return absl::StrCat(h_->dir(), "/work-", kAgent, "/checkpoints/", migration_id, ".in");
  }

  std::unique_ptr<FederationHarness> h_;
  std::string address_;
};

TEST_F(HostileImage, ForgedImagesAreRefusedBeforeUseAndRemoved) {
  // What a forger would send: a manifest binding the host's root and a root
  // archive that writes through a symlink to /etc.
  const std::string manifest =
      "flotilla-checkpoint 1\nchannel 1\nnetns 2\nroot_bytes 1048576\nmount m0 /work /\n"
      "file file[1:2] /etc/shadow\n";
  const std::string tar = TarBuilder().Symlink("etc", "/etc").File("etc/cron.d/x", "* * * * * root id\n").Finish();
  const std::vector<std::pair<std::string, std::string>> image = {
      {"flotilla-manifest", manifest}, {"flotilla-root.tar", tar}, {"pages-1.img", "x"}};

  grpc::Status unsigned_image = Send("forged-1", image);
  EXPECT_EQ(unsigned_image.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << unsigned_image.error_message();
  EXPECT_NE(unsigned_image.error_message().find("no MAC"), std::string::npos)
      << unsigned_image.error_message();

  auto with_mac = image;
  with_mac.push_back({"flotilla-image.mac",
                      "flotilla-image-mac v1 hmac-sha256 " + std::string(64, 'a') + "\n"});
  grpc::Status wrong_mac = Send("forged-2", with_mac);
  EXPECT_EQ(wrong_mac.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong_mac.error_message();
  EXPECT_NE(wrong_mac.error_message().find("does not match"), std::string::npos)
      << wrong_mac.error_message();

  EXPECT_FALSE(std::filesystem::exists(ImageDir("forged-1")));
  EXPECT_FALSE(std::filesystem::exists(ImageDir("forged-2")));
  EXPECT_FALSE(std::filesystem::exists("/etc/cron.d/x"));
}

TEST_F(HostileImage, AStreamLongerThanAnnouncedIsCutOff) {
  auto stub = v1::AgentService::NewStub(
      grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::RestoreTaskResponse resp;
  auto writer = stub->RestoreTask(&ctx, &resp);
  v1::RestoreTaskChunk head;
  head.mutable_header()->set_migration_id("long-1");
  head.mutable_header()->set_execution_id("ex-forged");
  head.mutable_header()->set_attempt(1);
  head.mutable_header()->set_image_bytes(10);
  writer->Write(head);
  // Far more than announced: the agent stops at the first byte over.
  for (int i = 0; i < 64; ++i) {
    v1::RestoreTaskChunk c;
    c.mutable_file()->set_path("pages-1.img");
    c.mutable_file()->set_data(std::string(1 << 16, 'x'));
    if (!writer->Write(c)) break;
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_FALSE(std::filesystem::exists(ImageDir("long-1")));
}

}  // namespace
}  // namespace flotilla::testing
