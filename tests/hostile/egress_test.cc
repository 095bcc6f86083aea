// A sandbox granted network egress (sandbox/linux/egress.h) reaches the
// outside through its own NAT, never the host: neither the host's loopback
// (where the manager and agents listen), nor the host's other addresses,
// nor link-local 169.254/16. A real manager and an agent that grants
// network-egress; the host listens on every address of a port, and nothing
// may arrive there.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

using std::chrono::seconds;

constexpr char kAgent[] = "egress1";

std::vector<std::string> HostAddresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof(text));
    out.push_back(text);
  }
  freeifaddrs(list);
  return out;
}

// The pids of slirp4netns processes whose parent is `parent`.
std::vector<pid_t> SlirpChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || stat.find("(slirp4netns)") == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent &&
        state != 'Z') {
      out.push_back(pid);
    }
  }
  closedir(d);
  return out;
}

class Egress : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "EGRESS TESTS NEED ROOT (namespaces, iptables), skipping";
    for (const char* tool : {"/usr/bin/slirp4netns", "/usr/sbin/iptables-restore"}) {
      if (access(tool, X_OK) != 0) {
        GTEST_SKIP() << "EGRESS TESTS NEED " << tool << " (scripts/install-deps installs it), skipping";
      }
    }
    h_ = std::make_unique<FederationHarness>();
    h_->StartManager();
    h_->StartAgent({.id = kAgent, .region = "egress", .capabilities = {"network-egress"}});
    ASSERT_TRUE(h_->WaitOnline(1)) << h_->ReadLog("manager.log") << h_->ReadLog("egress1.log");
  }
  void TearDown() override { h_.reset(); }

  std::unique_ptr<FederationHarness> h_;
};

TEST_F(Egress, TheHostItsLoopbackAndLinkLocalAreUnreachable) {
  // One listener on every host address, non-blocking so the check at the
  // end cannot hang.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in any = {};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(0, bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof(any)));
  ASSERT_EQ(0, listen(listener, 16));
  socklen_t len = sizeof(any);
  ASSERT_EQ(0, getsockname(listener, reinterpret_cast<sockaddr*>(&any), &len));
  const int port = ntohs(any.sin_port);
  std::vector<std::string> targets = HostAddresses();  // 127.0.0.1 among them
  targets.push_back("10.0.2.2");                       // slirp's gateway: the host's loopback
  targets.push_back("10.0.2.3");                       // slirp's DNS forwarder

  v1::ExecutionRequest r = FederationHarness::Command(
      {"/usr/bin/python3", "-c", absl::StrCat(R"PY(
import socket, sys
port = )PY", port, R"PY(
for host in sys.argv[1:]:  # python3 -c CODE HOST...
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        print("CONNECTED", host)
    except OSError as e:
        print(host, "->", e.strerror or e)
for host in ("169.254.169.254",):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, 80))
        print("CONNECTED", host)
    except OSError as e:
        print(host, "->", e.strerror or e)
print("interfaces:", " ".join(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])))
)PY")});
  for (const std::string& t : targets) r.mutable_code()->add_argv(t);
  r.mutable_security()->add_required_capabilities("network-egress");
  r.set_timeout_ms(30000);
  v1::SubmitResponse resp;
  grpc::Status st = h_->Submit(r, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto done = h_->WaitAllDone({resp.execution().id()}, seconds(60));
  ASSERT_EQ(done.size(), 1u) << h_->ReadLog("egress1.log");
  const v1::Execution& e = done.begin()->second;
  const std::string& out = e.result().stdout();
  std::cout << out << e.result().stderr() << std::endl;
  ASSERT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << e.result().stderr() << e.result().error()
                                                << h_->ReadLog("egress1.log");
  EXPECT_EQ(out.find("CONNECTED"), std::string::npos) << out;
  for (const std::string& t : targets) EXPECT_NE(out.find(t + " -> "), std::string::npos) << out;
  EXPECT_NE(out.find("169.254.169.254 -> "), std::string::npos) << out;
  // Its own namespace, with the NAT's device; not the host's interfaces.
  EXPECT_NE(out.find("interfaces: lo tap0\n"), std::string::npos) << out;

  sockaddr_in peer = {};
  socklen_t peer_len = sizeof(peer);
  const int accepted = accept(listener, reinterpret_cast<sockaddr*>(&peer), &peer_len);
  EXPECT_LT(accepted, 0) << "a connection from the sandbox reached the host";
  if (accepted >= 0) close(accepted);
  close(listener);

  // The NAT goes with the sandbox (egress sandboxes are never pooled).
  const pid_t agent = h_->agent_pid(kAgent);
  EXPECT_TRUE(FederationHarness::WaitUntil(seconds(10), [&] { return SlirpChildrenOf(agent).empty(); }))
      << "slirp4netns still running under the agent";
}

}  // namespace
}  // namespace flotilla::testing
