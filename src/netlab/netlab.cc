#include "netlab/netlab.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <queue>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

extern char** environ;

namespace flotilla::netlab {
namespace {

constexpr char kPrefix[] = "fln";
constexpr auto kCommandTimeout = std::chrono::seconds(10);

// Runs a command (no shell) and returns its combined output; an error names
// the command, its exit and what it printed. Bounded by kCommandTimeout.
absl::StatusOr<std::string> Run(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd rd(fds[0]), wr(fds[1]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", argv[0]);
  if (pid == 0) {
    dup2(wr.get(), 1);
    dup2(wr.get(), 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  wr.Reset();
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{rd.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    char buf[4096];
    const ssize_t n = read(rd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string cmd = absl::StrJoin(argv, " ");
  if (timed_out) return absl::DeadlineExceededError(absl::StrCat("`", cmd, "` timed out"));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return absl::InternalError(absl::StrCat("`", cmd, "` exited ", code, ": ", out));
  }
  return out;
}

bool Alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

// Kills what runs inside a network namespace: only processes this program's
// Labs started can be there (the namespaces are named after our pid).
void KillInside(const std::string& netns) {
  auto pids = Run({"ip", "netns", "pids", netns});
  if (!pids.ok()) return;
  for (absl::string_view p : absl::StrSplit(*pids, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(p, &pid) && pid > 1) kill(pid, SIGKILL);
  }
}

std::string Ms(std::chrono::milliseconds d) { return absl::StrCat(d.count(), "ms"); }

}  // namespace

// Delays and drops a host's packets in user space, for kernels without
// sch_netem: iptables queues every packet of the host's eth0 (both ways) to
// nfnetlink_queue 0 of the host's namespace; this thread holds each for its
// delay, then accepts it (or drops it with probability `loss`). The thread
// joins the namespace itself (setns is per thread), so no helper process is
// needed and the Lab's destructor stops it.
struct Lab::Shaper {
  std::string netns;
  LinkShape shape;
  std::thread thread;
  UniqueFd wake;  // eventfd: stop
  std::mt19937_64 rng{std::random_device{}()};
  struct Held {
    std::chrono::steady_clock::time_point due;
    uint32_t id;
    bool operator>(const Held& o) const { return due > o.due; }
  };
  std::priority_queue<Held, std::vector<Held>, std::greater<Held>> held;
  nfq_q_handle* queue = nullptr;
  std::promise<absl::Status> ready;  // a member: the thread may touch it after get() returns

  static int OnPacket(nfq_q_handle* qh, nfgenmsg*, nfq_data* nfa, void* data) {
    auto* self = static_cast<Shaper*>(data);
    const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
    if (ph == nullptr) return 0;
    const uint32_t id = ntohl(ph->packet_id);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    if (self->shape.loss > 0 && unit(self->rng) < self->shape.loss) {
      return nfq_set_verdict(qh, id, NF_DROP, 0, nullptr);
    }
    auto delay = std::chrono::microseconds(self->shape.delay);
    if (self->shape.jitter.count() > 0) {
      const int64_t j = std::chrono::microseconds(self->shape.jitter).count();
      delay += std::chrono::microseconds(std::uniform_int_distribution<int64_t>(-j, j)(self->rng));
      if (delay.count() < 0) delay = std::chrono::microseconds(0);
    }
    self->held.push({std::chrono::steady_clock::now() + delay, id});
    return 0;
  }

  // Runs on `thread`; fulfils `ready` once the queue is bound (or not).
  void Loop(std::promise<absl::Status>* ready) {
    UniqueFd ns(open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid() || setns(ns.get(), CLONE_NEWNET) != 0) {
      ready->set_value(ErrnoError(errno, "setns", netns));
      return;
    }
    nfq_handle* h = nfq_open();
    if (h == nullptr) {
      ready->set_value(ErrnoError(errno, "nfq_open (nfnetlink_queue)", netns));
      return;
    }
    queue = nfq_create_queue(h, 0, &Shaper::OnPacket, this);
    if (queue == nullptr || nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0) {
      ready->set_value(ErrnoError(errno, "bind nfnetlink queue 0", netns));
      if (queue) nfq_destroy_queue(queue);
      nfq_close(h);
      return;
    }
    nfq_set_queue_maxlen(queue, 16384);
    nfnl_rcvbufsiz(nfq_nfnlh(h), 8 << 20);
    const int fd = nfq_fd(h);
    ready->set_value(absl::OkStatus());
    std::vector<char> buf(1 << 16);
    bool stop = false;
    while (!stop) {
      int timeout = -1;
      if (!held.empty()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            held.top().due - std::chrono::steady_clock::now());
        timeout = static_cast<int>(std::max<int64_t>(0, left.count() + 1));
      }
      pollfd p[2] = {{fd, POLLIN, 0}, {wake.get(), POLLIN, 0}};
      poll(p, 2, timeout);
      if (p[1].revents & POLLIN) stop = true;
      if (p[0].revents & POLLIN) {
        while (true) {
          const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
          if (n < 0 && errno == ENOBUFS) continue;  // the kernel dropped some: they are lost
          if (n <= 0) break;
          nfq_handle_packet(h, buf.data(), static_cast<int>(n));
        }
      }
      const auto now = std::chrono::steady_clock::now();
      while (!held.empty() && (stop || held.top().due <= now)) {
        nfq_set_verdict(queue, held.top().id, NF_ACCEPT, 0, nullptr);
        held.pop();
      }
    }
    nfq_destroy_queue(queue);
    nfq_close(h);
  }

  void Stop() {
    const uint64_t one = 1;
    if (write(wake.get(), &one, sizeof one) < 0) {
      // eventfd writes fail only on overflow; the loop is already stopping.
    }
    if (thread.joinable()) thread.join();
  }
};

absl::StatusOr<std::unique_ptr<Lab>> Lab::Create(LabOptions options) {
  RemoveStale();
  std::unique_ptr<Lab> lab(new Lab());
  if (!options.name.empty()) {
    static const std::regex kValid("^[a-z0-9]{1,8}$");
    if (!std::regex_match(options.name, kValid) ||
        (options.name.rfind(kPrefix, 0) == 0 && options.name.size() > 3 &&
         isdigit(static_cast<unsigned char>(options.name[3])))) {
      return absl::InvalidArgumentError(
          absl::StrCat("lab name '", options.name, "': use 1 to 8 of [a-z0-9], not fln<digit>..."));
    }
    lab->prefix_ = options.name;
  } else {
    static std::atomic<int> seq{0};
    const int n = seq++;
    if (n >= 26) return absl::ResourceExhaustedError("at most 26 netlab Labs per process");
    lab->prefix_ = absl::StrCat(kPrefix, getpid(), std::string(1, static_cast<char>('a' + n)));
  }
  if (absl::Status st = lab->MakeBridge(options); !st.ok()) {
    return Annotate(st, absl::StrCat("lab ", lab->prefix_));
  }
  return lab;
}

// Traffic between hosts is bridged here, in the root namespace: where
// br_netfilter has net.bridge.bridge-nf-call-iptables = 1 (as on the
// development machines) it also passes the root namespace's iptables FORWARD
// chain, so a DROP policy there cuts the hosts off from each other (not from
// the root namespace). Nothing here changes the root's rules.
absl::Status Lab::MakeBridge(const LabOptions& options) {
  bridge_ = prefix_ + "br";
  ASSIGN_OR_RETURN(std::string in_use, Run({"ip", "-4", "-o", "addr", "show"}));
  ASSIGN_OR_RETURN(std::string routes, Run({"ip", "-4", "route", "show"}));
  in_use += routes;
  int a = options.subnet_a, b = options.subnet_b;
  if (a == 0) {
    // Another Lab (another test process) may be running: start from our pid
    // and skip /24s that an address or route already uses.
    const uint32_t start =
        options.subnet_seed != 0 ? options.subnet_seed : static_cast<uint32_t>(getpid()) * 7;
    for (uint32_t i = 0; i < 50 * 256; ++i) {
      const int k = static_cast<int>((start + i) % (50 * 256));
      a = 200 + k / 256;
      b = k % 256;
      if (in_use.find(absl::StrCat(" 10.", a, ".", b, ".")) == std::string::npos &&
          in_use.find(absl::StrCat("\n10.", a, ".", b, ".")) == std::string::npos &&
          in_use.rfind(absl::StrCat("10.", a, ".", b, "."), 0) != 0) {
        break;
      }
    }
  }
  subnet_ = absl::StrCat("10.", a, ".", b, ".");
  bridge_address_ = subnet_ + "1";
  // A fixed, locally administered MAC. Without one the bridge takes the
  // lowest MAC among its ports and changes it whenever a host whose veth
  // sorts lower joins; hosts that cached the old one keep sending to it, and
  // the root namespace drops those frames as addressed to another host, until
  // their ARP entry expires tens of seconds later. Standbys lost etcd that
  // way in about one run in ten of the cut-off-leader test.
  const std::string mac = absl::StrFormat("02:66:6c:%02x:%02x:01", a, b);
  RETURN_IF_ERROR(Run({"ip", "link", "add", bridge_, "address", mac, "type", "bridge"}).status());
  RETURN_IF_ERROR(Run({"ip", "addr", "add", bridge_address_ + "/24", "dev", bridge_}).status());
  RETURN_IF_ERROR(Run({"ip", "link", "set", bridge_, "up"}).status());
  return absl::OkStatus();
}

Lab::~Lab() {
  for (auto& s : shapers_) s->Stop();
  if (detached_) return;
  for (const Host& h : hosts_) KillInside(h.netns);
  for (const Host& h : hosts_) {
    (void)Run({"ip", "netns", "del", h.netns});  // takes its end of the veth, and so the pair
    (void)Run({"ip", "link", "del", h.veth});    // gone already unless the move failed
  }
  if (!bridge_.empty()) (void)Run({"ip", "link", "del", bridge_});
}

absl::StatusOr<Host> Lab::AddHost(const std::string& name) {
  if (Find(name) != nullptr) return absl::AlreadyExistsError("host '" + name + "' exists");
  const size_t index = hosts_.size() + 1;
  if (index > 250) return absl::ResourceExhaustedError("a Lab holds at most 250 hosts (one /24)");
  Host h;
  h.name = name;
  h.netns = absl::StrCat(prefix_, "h", index);
  h.veth = absl::StrCat(prefix_, "v", index);
  h.address = absl::StrCat(subnet_, index + 1);
  // Recorded first, so the destructor removes a half-made host as well.
  hosts_.push_back(h);
  const std::vector<std::vector<std::string>> steps = {
      {"ip", "netns", "add", h.netns},
      {"ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns},
      {"ip", "link", "set", h.veth, "master", bridge_, "up"},
      {"ip", "-n", h.netns, "addr", "add", h.address + "/24", "dev", "eth0"},
      {"ip", "-n", h.netns, "link", "set", "eth0", "up"},
      {"ip", "-n", h.netns, "link", "set", "lo", "up"},
  };
  for (const auto& step : steps) {
    if (auto st = Run(step); !st.ok()) {
      return Annotate(st.status(), absl::StrCat("host ", name));
    }
  }
  return h;
}

const Host* Lab::Find(const std::string& name) const {
  for (const Host& h : hosts_) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

const Host* Lab::Require(const std::string& name, absl::Status* error) const {
  const Host* h = Find(name);
  if (h == nullptr) *error = absl::NotFoundError("no host named '" + name + "' in this lab");
  return h;
}

absl::StatusOr<pid_t> Lab::Spawn(const std::string& host, const std::vector<std::string>& argv,
                                 const std::string& log_path, const std::vector<std::string>& env) {
  absl::Status error;
  const Host* h = Require(host, &error);
  if (h == nullptr) return error;
  if (argv.empty()) return absl::InvalidArgumentError("Spawn: empty argv");
  const std::string ns_path = "/run/netns/" + h->netns;
  UniqueFd ns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return ErrnoError(errno, "open", ns_path);
  UniqueFd log;
  if (!log_path.empty()) {
    log.Reset(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log.valid()) return ErrnoError(errno, "open", log_path);
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd rd(fds[0]), wr(fds[1]);
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls (the parent may have threads).
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", argv[0]);
  if (pid == 0) {
    struct Failure {
      int step;
      int err;
    };
    auto fail = [&](int step) {
      Failure f{step, errno};
      (void)!write(wr.get(), &f, sizeof f);
      _exit(127);
    };
    if (setns(ns.get(), CLONE_NEWNET) != 0) fail(0);
    if (log.valid() && (dup2(log.get(), 1) < 0 || dup2(log.get(), 2) < 0)) fail(1);
    execve(args[0], args.data(), envp.data());
    fail(2);
  }
  wr.Reset();
  struct {
    int step;
    int err;
  } f{};
  ssize_t n;
  do {
    n = read(rd.get(), &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) {
    waitpid(pid, nullptr, 0);
    static const char* kSteps[] = {"setns", "dup2", "execve"};
    return ErrnoError(f.err, kSteps[f.step], f.step == 0 ? h->netns : argv[0]);
  }
  return pid;
}

absl::Status Lab::Partition(const std::string& host) {
  absl::Status error;
  const Host* h = Require(host, &error);
  if (h == nullptr) return error;
  return Run({"ip", "link", "set", h->veth, "down"}).status();
}

absl::Status Lab::Heal(const std::string& host) {
  absl::Status error;
  const Host* h = Require(host, &error);
  if (h == nullptr) return error;
  RETURN_IF_ERROR(Run({"ip", "link", "set", h->veth, "up"}).status());
  // The kernel reports carrier changes through linkwatch, up to a second
  // late, and drops what the host sends until its end is up: wait for both
  // ends, so that a healed link carries traffic when Heal returns.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    auto outer = Run({"ip", "-o", "link", "show", h->veth});
    auto inner = Run({"ip", "-n", h->netns, "-o", "link", "show", "eth0"});
    if (outer.ok() && inner.ok() && outer->find("state UP") != std::string::npos &&
        inner->find("state UP") != std::string::npos) {
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("host ", host, ": its link did not come up within 5 s of healing"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Whoever tried to reach the host (or it them) during the partition holds
  // a failed neighbour entry, and the first connect after healing would get
  // EHOSTUNREACH at once: forget them, as if the partition had never been.
  (void)Run({"ip", "-n", h->netns, "neigh", "flush", "dev", "eth0"});
  (void)Run({"ip", "neigh", "flush", "to", h->address, "dev", bridge_});
  for (const Host& other : hosts_) {
    if (other.netns == h->netns) continue;
    (void)Run({"ip", "-n", other.netns, "neigh", "flush", "to", h->address, "dev", "eth0"});
  }
  return absl::OkStatus();
}

const Lab::ShapeSupport& Lab::Support() {
  static const ShapeSupport support = [] {
    ShapeSupport s;
    s.netem =
        Run({"unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"})
            .ok();
    s.iptables = Run({"unshare", "-n", "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode",
                      "random", "--probability", "0.5", "-j", "DROP"})
                     .ok();
    s.nfqueue = s.iptables && Run({"unshare", "-n", "iptables", "-A", "OUTPUT", "-j", "NFQUEUE",
                                   "--queue-num", "0", "--queue-bypass"})
                                  .ok();
    if (!s.netem) {
      s.why = "tc netem is unavailable (kernel without sch_netem)";
      s.why += s.nfqueue ? "; delay and loss are held in user space (nfnetlink_queue)"
                         : "; iptables NFQUEUE is unavailable too: no delay or loss";
    }
    return s;
  }();
  return support;
}

absl::Status Lab::Shape(const std::string& host, const LinkShape& shape) {
  absl::Status error;
  const Host* h = Require(host, &error);
  if (h == nullptr) return error;
  RETURN_IF_ERROR(Unshape(host));
  const ShapeSupport& support = Support();
  if (support.netem) {
    std::vector<std::string> netem = {"netem", "delay", Ms(shape.delay)};
    if (shape.jitter.count() > 0) netem.push_back(Ms(shape.jitter));
    if (shape.loss > 0) {
      netem.push_back("loss");
      netem.push_back(absl::StrCat(shape.loss * 100, "%"));
    }
    // Toward the host on the root side, from the host on its own side.
    std::vector<std::string> in = {"tc", "qdisc", "replace", "dev", h->veth, "root"};
    std::vector<std::string> out = {"tc",      "-n",  h->netns, "qdisc",
                                    "replace", "dev", "eth0",   "root"};
    in.insert(in.end(), netem.begin(), netem.end());
    out.insert(out.end(), netem.begin(), netem.end());
    RETURN_IF_ERROR(Run(in).status());
    return Run(out).status();
  }
  if (!support.nfqueue) return absl::UnimplementedError("cannot shape links here: " + support.why);
  auto shaper = std::make_unique<Shaper>();
  shaper->netns = h->netns;
  shaper->shape = shape;
  shaper->wake.Reset(eventfd(0, EFD_CLOEXEC));
  auto started = shaper->ready.get_future();
  shaper->thread = std::thread([s = shaper.get()] { s->Loop(&s->ready); });
  absl::Status st = started.get();
  if (!st.ok()) {
    shaper->Stop();
    return st;
  }
  shapers_.push_back(std::move(shaper));
  for (const char* chain : {"INPUT", "OUTPUT"}) {
    RETURN_IF_ERROR(Run({"ip", "netns", "exec", h->netns, "iptables", "-A", chain,
                         chain[0] == 'I' ? "-i" : "-o", "eth0", "-j", "NFQUEUE", "--queue-num", "0",
                         "--queue-bypass"})
                        .status());
  }
  return absl::OkStatus();
}

absl::Status Lab::Unshape(const std::string& host) {
  absl::Status error;
  const Host* h = Require(host, &error);
  if (h == nullptr) return error;
  if (Support().netem) {
    // "No such file" when there is none: nothing to undo.
    (void)Run({"tc", "qdisc", "del", "dev", h->veth, "root"});
    (void)Run({"tc", "-n", h->netns, "qdisc", "del", "dev", "eth0", "root"});
    return absl::OkStatus();
  }
  for (auto it = shapers_.begin(); it != shapers_.end(); ++it) {
    if ((*it)->netns != h->netns) continue;
    // Rules first, so no packet is queued once the queue's reader is gone.
    for (const char* chain : {"INPUT", "OUTPUT"}) {
      RETURN_IF_ERROR(Run({"ip", "netns", "exec", h->netns, "iptables", "-D", chain,
                           chain[0] == 'I' ? "-i" : "-o", "eth0", "-j", "NFQUEUE", "--queue-num",
                           "0", "--queue-bypass"})
                          .status());
    }
    (*it)->Stop();
    shapers_.erase(it);
    break;
  }
  return absl::OkStatus();
}

int Lab::RemoveNamed(const std::string& name) {
  if (name.empty()) return 0;
  const std::regex mine("^" + name + "(br|v[0-9]+|h[0-9]+)$");
  int removed = 0;
  if (auto list = Run({"ip", "netns", "list"}); list.ok()) {
    for (absl::string_view line : absl::StrSplit(*list, '\n', absl::SkipEmpty())) {
      std::string ns(line.substr(0, line.find(' ')));
      if (!std::regex_match(ns, mine)) continue;
      KillInside(ns);
      removed += Run({"ip", "netns", "del", ns}).ok();
    }
  }
  if (auto links = Run({"ip", "-o", "link", "show"}); links.ok()) {
    for (absl::string_view line : absl::StrSplit(*links, '\n', absl::SkipEmpty())) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(": ", 2));
      if (parts.size() < 2) continue;
      std::string link = parts[1].substr(0, parts[1].find('@'));
      if (!std::regex_match(link, mine)) continue;
      removed += Run({"ip", "link", "del", link}).ok();
    }
  }
  return removed;
}

int Lab::RemoveStale() {
  static const std::regex kName("^fln([0-9]+)[a-z](br|v[0-9]+|h[0-9]+)$");
  int removed = 0;
  auto stale = [&](const std::string& name) {
    std::smatch m;
    if (!std::regex_match(name, m, kName)) return false;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    return pid != getpid() && !Alive(pid);
  };
  if (auto list = Run({"ip", "netns", "list"}); list.ok()) {
    for (absl::string_view line : absl::StrSplit(*list, '\n', absl::SkipEmpty())) {
      std::string name(line.substr(0, line.find(' ')));
      if (!stale(name)) continue;
      KillInside(name);
      removed += Run({"ip", "netns", "del", name}).ok();
    }
  }
  if (auto links = Run({"ip", "-o", "link", "show"}); links.ok()) {
    for (absl::string_view line : absl::StrSplit(*links, '\n', absl::SkipEmpty())) {
      // "12: flnNNNav1@if11: <...": the name sits between ": " and "@" or ":".
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(": ", 2));
      if (parts.size() < 2) continue;
      std::string name = parts[1].substr(0, parts[1].find('@'));
      if (!stale(name)) continue;
      removed += Run({"ip", "link", "del", name}).ok();
    }
  }
  return removed;
}

}  // namespace flotilla::netlab
