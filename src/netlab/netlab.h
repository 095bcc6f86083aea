// netlab: "hosts" on one machine as network namespaces, for tests and for
// `flotilla up --hosts N`.
//
// A Lab owns one Linux bridge in the root network namespace (with the first
// address of its /24, so the root namespace — the user's shell, a test's
// client — reaches every host) and, per host, a named network namespace
// joined to the bridge by a veth pair, with its own address and loopback.
// Traffic between hosts crosses real links, so faults are injected where a
// network would have them: Partition takes a host's link down, Shape delays
// and drops its packets.
//
// Everything a Lab makes carries the prefix "fln<pid>" (the pid of the
// process that made it; interface names stay within the kernel's 15
// characters), so a later Lab removes what a crashed one left behind
// (RemoveStale) without touching a live one's. The destructor removes every
// namespace, link and rule it made and kills any process still inside its
// hosts.
//
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and the `ip` command (iproute2);
// Shape needs `tc` with sch_netem, or else iptables (loss) and
// nfnetlink_queue (delay) — see ShapeSupport. Not thread-safe: one thread
// drives a Lab.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::netlab {

struct Host {
  std::string name;     // the caller's name ("manager", "agent-3")
  std::string netns;    // the namespace's name under /run/netns
  std::string veth;     // the root-side end of its link (in the bridge)
  std::string address;  // its IPv4 address, without the prefix length
};

// How a host's link misbehaves, in each direction (so the round trip grows
// by twice `delay`). Zero fields leave that aspect alone.
struct LinkShape {
  std::chrono::milliseconds delay{0};
  std::chrono::milliseconds jitter{0};  // uniform in [-jitter, +jitter]
  double loss = 0;                      // probability a packet is dropped, 0..1
};

struct LabOptions {
  // A fixed prefix for a Lab that outlives its process (`flotilla up
  // --hosts`): at most 8 characters, [a-z0-9], and not "fln" followed by a
  // digit (those are RemoveStale's). Empty: fln<pid><seq>, removed with the
  // Lab or, after a crash, by RemoveStale.
  std::string name;
  // Created hosts' addresses are 10.<a>.<b>.N/24; 0 picks a free /24 from
  // the pid. Set both to choose one (it must not be in use).
  int subnet_a = 0;
  int subnet_b = 0;
  // Where the search for a free /24 starts (0: from the pid). A fixed seed
  // gives a Lab remade under the same name the same addresses, while free.
  uint32_t subnet_seed = 0;
};

class Lab {
 public:
  // Removes what earlier, dead Labs left, then makes the bridge.
  static absl::StatusOr<std::unique_ptr<Lab>> Create(LabOptions options = {});
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  // Makes a host with the next address of the subnet. `name` must be new.
  absl::StatusOr<Host> AddHost(const std::string& name);
  // Returns the host named `name`, or nullptr.
  const Host* Find(const std::string& name) const;
  const std::vector<Host>& hosts() const { return hosts_; }
  // The root namespace's address on the bridge (the hosts' gateway).
  const std::string& bridge_address() const { return bridge_address_; }
  const std::string& bridge() const { return bridge_; }

  // Starts `argv` (argv[0] a path) inside the host's network namespace; the
  // rest of its world (mounts, pids, files) is the caller's. Its stdout and
  // stderr go to `log_path` (appended) or are inherited when empty; `env`
  // entries ("K=V") are added to the caller's environment. Returns the
  // child's pid; the caller reaps it.
  absl::StatusOr<pid_t> Spawn(const std::string& host, const std::vector<std::string>& argv,
                              const std::string& log_path = "",
                              const std::vector<std::string>& env = {});

  // Cuts the host off from every other host and the root namespace, both
  // ways (its link goes down, so packets are dropped, not refused: peers see
  // timeouts, as in a real partition). Heal restores it.
  absl::Status Partition(const std::string& host);
  absl::Status Heal(const std::string& host);

  // Makes the host's link slow and lossy both ways; Unshape restores it.
  absl::Status Shape(const std::string& host, const LinkShape& shape);
  absl::Status Unshape(const std::string& host);

  // Leaves everything in place when the Lab goes away (RemoveNamed removes
  // it later). Shaped links lose their user-space delay with the process.
  void Detach() { detached_ = true; }
  const std::string& name() const { return prefix_; }
  const std::string& subnet() const { return subnet_; }  // "10.a.b."

  // Removes the namespaces and links of the Lab named `name` (LabOptions),
  // killing what runs inside them. Returns how many it removed.
  static int RemoveNamed(const std::string& name);

  // What Shape can do on this kernel, found once per process.
  struct ShapeSupport {
    bool netem = false;     // tc netem: delay, jitter and loss in the kernel
    bool iptables = false;  // iptables statistic: loss only
    bool nfqueue = false;   // nfnetlink_queue: delay held in user space
    std::string why;        // what is missing, for a test's skip message
  };
  static const ShapeSupport& Support();

  // Removes namespaces and links named fln<pid>... whose pid is dead, and
  // kills what still runs in those namespaces. Returns how many it removed.
  static int RemoveStale();

 private:
  Lab() = default;
  absl::Status MakeBridge(const LabOptions& options);
  const Host* Require(const std::string& name, absl::Status* error) const;

  bool detached_ = false;
  std::string prefix_;  // fln<pid><seq>, or LabOptions.name
  std::string bridge_;
  std::string subnet_;  // "10.a.b."
  std::string bridge_address_;
  std::vector<Host> hosts_;
  struct Shaper;  // the user-space delay of hosts shaped without netem
  std::vector<std::unique_ptr<Shaper>> shapers_;
};

}  // namespace flotilla::netlab
