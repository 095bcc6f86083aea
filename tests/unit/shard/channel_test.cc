// The shared-memory ring across real processes (fork): order and content
// through wraparound and back-pressure, resume after a consumer dies, the
// eventfd wake-ups, and peers that corrupt the ring. Every wait is bounded;
// every child is reaped or killed before the test returns.
#include "shard/channel.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A forked child running `body`; its return value is the exit status. The
// destructor kills and reaps a child still running, so a failed assertion
// leaves no process behind.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = fork();
    if (pid_ == 0) {
      int rc = 99;
      rc = body();
      _exit(rc);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  // Returns the exit status, or -1 if the child did not exit within
  // `timeout` (it is then killed) or died of a signal.
  int Wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

// Message `i`: its length varies from 0 to 199 bytes so records straddle
// the end of a small ring at every possible split, including inside the
// length prefix.
std::string MessageFor(uint64_t i) {
  std::string m((i * 37) % 200, '\0');
  for (size_t k = 0; k < m.size(); ++k) m[k] = static_cast<char>('a' + (i + k) % 26);
  return m;
}

ShmRing NewRing(size_t capacity, int spin = 1000, uint32_t max_message = 1024) {
  RingOptions options;
  options.capacity_bytes = capacity;
  options.max_message_bytes = max_message;
  options.spin_iterations = spin;
  auto ring = ShmRing::Create(options);
  if (!ring.ok()) ADD_FAILURE() << ring.status();
  return std::move(*ring);
}

// Opens a second, independent mapping of the same channel, as another
// process that got the descriptors over a socket would.
ShmRing Reattach(const ShmRing& ring, int spin = 1000) {
  auto fds = ring.DuplicateFds();
  EXPECT_TRUE(fds.ok()) << fds.status();
  auto other = ShmRing::Attach(std::move(*fds), spin);
  EXPECT_TRUE(other.ok()) << other.status();
  return std::move(*other);
}

TEST(ShmRingTest, CrossProcessStreamKeepsOrderThroughWraparoundAndBackPressure) {
  ShmRing ring = NewRing(4096);
  constexpr uint64_t kCount = 200000;  // ~20 MB through a 4 KiB ring
  ShmRing consumer_side = Reattach(ring);
  Child child([&]() -> int {
    RingConsumer consumer(std::move(consumer_side));
    for (uint64_t i = 0; i < kCount; ++i) {
      auto m = consumer.Read(seconds(10));
      if (!m.ok()) return 2;
      if (*m != MessageFor(i)) return 3;
      if (!consumer.AckAll().ok()) return 4;
    }
    auto end = consumer.Read(seconds(10));
    return absl::IsOutOfRange(end.status()) ? 0 : 5;
  });
  ASSERT_TRUE(child.started());
  RingProducer producer(std::move(ring));
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE(producer.Write(MessageFor(i), seconds(10)).ok()) << "message " << i;
  }
  producer.Close();
  EXPECT_EQ(child.Wait(milliseconds(30000)), 0);
}

TEST(ShmRingTest, FullRingPushesBackUntilTheConsumerAcknowledges) {
  ShmRing ring = NewRing(4096, /*spin=*/0);
  RingConsumer consumer(Reattach(ring, 0));
  RingProducer producer(std::move(ring));
  const std::string m(96, 'x');  // 8-byte header + 96 bytes a record
  int written = 0;
  absl::Status st;
  while ((st = producer.TryWrite(m)).ok()) ++written;
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_EQ(written, 4096 / 104);
  EXPECT_TRUE(absl::IsDeadlineExceeded(producer.Write(m, milliseconds(20))));

  // Reading alone frees nothing: unacknowledged records must survive a
  // consumer restart.
  ASSERT_TRUE(consumer.Read(seconds(1)).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(producer.TryWrite(m)));
  ASSERT_TRUE(consumer.AckAll().ok());
  EXPECT_TRUE(producer.TryWrite(m).ok());
}

TEST(ShmRingTest, ProducerBlockedOnAFullRingIsWokenByAnAckInAnotherProcess) {
  ShmRing ring = NewRing(4096, /*spin=*/0);
  ShmRing consumer_side = Reattach(ring, 0);
  RingProducer producer(std::move(ring));
  const std::string m(96, 'y');
  while (producer.TryWrite(m).ok()) {
  }
  Child child([&]() -> int {
    RingConsumer consumer(std::move(consumer_side));
    std::this_thread::sleep_for(milliseconds(50));  // let the producer sleep first
    if (!consumer.Read(seconds(5)).ok()) return 2;
    return consumer.AckAll().ok() ? 0 : 3;
  });
  ASSERT_TRUE(child.started());
  EXPECT_TRUE(producer.Write(m, seconds(10)).ok());
  EXPECT_EQ(child.Wait(milliseconds(10000)), 0);
}

TEST(ShmRingTest, SleepingConsumerIsWokenByTheEventFd) {
  ShmRing ring = NewRing(4096, /*spin=*/0);
  ShmRing consumer_side = Reattach(ring, 0);
  Child child([&]() -> int {
    RingConsumer consumer(std::move(consumer_side));
    auto m = consumer.Read(seconds(10));
    return m.ok() && *m == "wake" ? 0 : 2;
  });
  ASSERT_TRUE(child.started());
  std::this_thread::sleep_for(milliseconds(50));  // let the child reach poll()
  RingProducer producer(std::move(ring));
  ASSERT_TRUE(producer.TryWrite("wake").ok());
  EXPECT_EQ(child.Wait(milliseconds(10000)), 0);
}

TEST(ShmRingTest, PayloadWrapsAroundTheEnd) {
  ShmRing ring = NewRing(4096, 1000, /*max_message=*/4088);
  RingConsumer consumer(Reattach(ring));
  RingProducer producer(std::move(ring));
  // The first record ends 88 bytes before the end: the next header fits
  // there, and its payload continues at the start of the data area.
  const std::string first(4000, 'f');
  ASSERT_TRUE(producer.TryWrite(first).ok());
  ASSERT_EQ(*consumer.Read(seconds(1)), first);
  ASSERT_TRUE(consumer.AckAll().ok());
  std::string second(300, '\0');
  for (size_t i = 0; i < second.size(); ++i) second[i] = static_cast<char>(i);
  ASSERT_TRUE(producer.TryWrite(second).ok());
  EXPECT_EQ(*consumer.Read(seconds(1)), second);
  EXPECT_EQ(consumer.read_offset(), 4008u + 8u + 304u);
}

TEST(ShmRingTest, ACaughtUpConsumerDoesNotRereadThePreviousLap) {
  ShmRing ring = NewRing(4096, 10);
  RingConsumer consumer(Reattach(ring));
  RingProducer producer(std::move(ring));
  for (uint64_t i = 0; i < 1000; ++i) {  // ~25 laps of mixed sizes
    ASSERT_TRUE(producer.TryWrite(MessageFor(i)).ok());
    ASSERT_EQ(*consumer.Read(seconds(1)), MessageFor(i));
    ASSERT_TRUE(consumer.AckAll().ok());
  }
  EXPECT_TRUE(absl::IsDeadlineExceeded(consumer.Read(milliseconds(5)).status()));
}

TEST(ShmRingTest, RestartedConsumerResumesRightAfterTheLastAcknowledgedRecord) {
  ShmRing ring = NewRing(1 << 16);
  ShmRing first_side = Reattach(ring);
  ShmRing second_side = Reattach(ring);
  RingProducer producer(std::move(ring));
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(producer.TryWrite(MessageFor(i)).ok());

  // The first consumer reads seven records, acknowledges five, and dies.
  Child first([&]() -> int {
    RingConsumer consumer(std::move(first_side));
    for (uint64_t i = 0; i < 7; ++i) {
      auto m = consumer.Read(seconds(5));
      if (!m.ok() || *m != MessageFor(i)) return 2;
      if (i == 4 && !consumer.AckAll().ok()) return 3;
    }
    kill(getpid(), SIGKILL);
    return 4;
  });
  ASSERT_TRUE(first.started());
  EXPECT_EQ(first.Wait(milliseconds(10000)), -1);  // killed, as planned

  Child second([&]() -> int {
    RingConsumer consumer(std::move(second_side));
    for (uint64_t i = 5; i < 10; ++i) {
      auto m = consumer.Read(seconds(5));
      if (!m.ok()) return 2;
      if (*m != MessageFor(i)) return 10 + static_cast<int>(i);
    }
    return consumer.AckAll().ok() ? 0 : 3;
  });
  ASSERT_TRUE(second.started());
  EXPECT_EQ(second.Wait(milliseconds(10000)), 0);
}

// A producer that dies is replaced by RingProducer::Resume on the same ring:
// it finds the end of what was published (acknowledged or not, across
// laps) and carries on, so the consumer sees one unbroken stream.
TEST(ShmRingTest, ResumedProducerContinuesRightAfterTheLastPublishedRecord) {
  ShmRing ring = NewRing(4096);
  ShmRing consumer_side = Reattach(ring);
  ShmRing resume_side = Reattach(ring);
  RingConsumer consumer(std::move(consumer_side));
  uint64_t next = 0;
  uint64_t dead_head = 0;
  {
    RingProducer first(std::move(ring));
    // Several laps of a 4 KiB ring, the consumer acknowledging as it goes,
    // then a few records left unread when the producer "dies".
    for (; next < 300; ++next) {
      ASSERT_TRUE(first.TryWrite(MessageFor(next)).ok()) << next;
      auto m = consumer.Read(seconds(5));
      ASSERT_TRUE(m.ok()) << m.status();
      ASSERT_EQ(*m, MessageFor(next));
      ASSERT_TRUE(consumer.AckAll().ok());
    }
    for (; next < 305; ++next) ASSERT_TRUE(first.TryWrite(MessageFor(next)).ok());
    dead_head = first.head();
  }
  auto resumed = RingProducer::Resume(std::move(resume_side));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->head(), dead_head);
  for (; next < 320; ++next) ASSERT_TRUE(resumed->TryWrite(MessageFor(next)).ok());
  for (uint64_t i = 300; i < 320; ++i) {
    auto m = consumer.Read(seconds(5));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, MessageFor(i));
  }
  EXPECT_TRUE(absl::IsDeadlineExceeded(consumer.Read(milliseconds(1)).status()));
}

TEST(ShmRingTest, ResumeOnAFreshRingStartsAtZero) {
  auto resumed = RingProducer::Resume(NewRing(4096));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->head(), 0u);
}

// ArmWait/DisarmWait: what lets one thread sleep on several rings at once.
TEST(ShmRingTest, ArmedConsumerIsSignalledThroughItsEventFd) {
  ShmRing ring = NewRing(4096, /*spin=*/0);
  ShmRing consumer_side = Reattach(ring, 0);
  RingProducer producer(std::move(ring));
  RingConsumer consumer(std::move(consumer_side));
  EXPECT_FALSE(consumer.ArmWait());  // nothing there: safe to sleep
  ASSERT_TRUE(producer.TryWrite("x").ok());
  struct pollfd p = {consumer.data_ready_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);  // the producer saw the flag and signalled
  consumer.DisarmWait();
  EXPECT_TRUE(consumer.ArmWait());  // a record is there: do not sleep
  consumer.DisarmWait();
  auto m = consumer.Read(milliseconds(100));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "x");
  producer.Close();
  EXPECT_TRUE(consumer.ArmWait());  // closed: do not sleep either
  consumer.DisarmWait();
}

TEST(ShmRingTest, ConsumerSeesOutOfRangeAfterCloseAndDrain) {
  ShmRing ring = NewRing(4096);
  RingConsumer consumer(Reattach(ring));
  RingProducer producer(std::move(ring));
  ASSERT_TRUE(producer.TryWrite("last").ok());
  producer.Close();
  EXPECT_EQ(*consumer.Read(seconds(1)), "last");
  EXPECT_TRUE(absl::IsOutOfRange(consumer.Read(seconds(1)).status()));
}

TEST(ShmRingTest, ReadTimesOutOnAnEmptyRing) {
  ShmRing ring = NewRing(4096, /*spin=*/10);
  RingConsumer consumer(std::move(ring));
  EXPECT_TRUE(absl::IsDeadlineExceeded(consumer.Read(milliseconds(10)).status()));
}

TEST(ShmRingTest, TooLargeMessagesAndSmallBuffersAreRefused) {
  ShmRing ring = NewRing(4096, 10, /*max_message=*/100);
  RingConsumer consumer(Reattach(ring));
  RingProducer producer(std::move(ring));
  EXPECT_TRUE(absl::IsInvalidArgument(producer.TryWrite(std::string(101, 'x'))));
  ASSERT_TRUE(producer.TryWrite(std::string(50, 'x')).ok());
  char small[10];
  EXPECT_TRUE(absl::IsInvalidArgument(consumer.Read(small, sizeof(small), seconds(1)).status()));
  // The record stays readable with a large enough buffer.
  EXPECT_EQ(consumer.Read(seconds(1))->size(), 50u);
  EXPECT_TRUE(absl::IsInvalidArgument(consumer.Ack(consumer.read_offset() + 1)));
}

TEST(ShmRingTest, DescriptorsPassedOverAUnixSocketAttachInAnotherProcess) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Child child([&]() -> int {
    close(sv[0]);
    // Uses only what came over the socket, as a shard in a sandbox would.
    auto fds = ReceiveRingFds(sv[1], milliseconds(10000));
    if (!fds.ok()) return 2;
    auto ring = ShmRing::Attach(std::move(*fds));
    if (!ring.ok()) return 3;
    RingConsumer consumer(std::move(*ring));
    auto m = consumer.Read(seconds(10));
    return m.ok() && *m == "over the socket" ? 0 : 4;
  });
  ASSERT_TRUE(child.started());
  close(sv[1]);
  ShmRing ring = NewRing(4096);
  ASSERT_TRUE(SendRingFds(sv[0], ring).ok());
  RingProducer producer(std::move(ring));
  ASSERT_TRUE(producer.TryWrite("over the socket").ok());
  EXPECT_EQ(child.Wait(milliseconds(10000)), 0);
  close(sv[0]);
}

// ---- Hostile peers

TEST(ShmRingHostileTest, ReceivingTheWrongNumberOfDescriptorsClosesThemAll) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int one[1] = {dup(0)};
  char byte = 'R';
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(one))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(one));
  std::memcpy(CMSG_DATA(c), one, sizeof(one));
  ASSERT_EQ(sendmsg(sv[0], &msg, 0), 1);
  close(one[0]);
  auto fds = ReceiveRingFds(sv[1], milliseconds(1000));
  EXPECT_TRUE(absl::IsInvalidArgument(fds.status())) << fds.status();
  EXPECT_TRUE(absl::IsDeadlineExceeded(ReceiveRingFds(sv[1], milliseconds(5)).status()));
  close(sv[0]);
  close(sv[1]);
}

TEST(ShmRingHostileTest, CorruptLengthIsDetectedNotFollowed) {
  ShmRing ring = NewRing(4096, 10, /*max_message=*/1024);
  RingConsumer consumer(Reattach(ring));
  char* data = ring.DataForTest();
  RingProducer producer(std::move(ring));
  ASSERT_TRUE(producer.TryWrite(std::string(20, 'a')).ok());
  uint32_t huge = 0xfffffff0u;
  std::memcpy(data, &huge, sizeof(huge));
  auto r = consumer.Read(seconds(1));
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  // Sticky: the endpoint does not try again.
  EXPECT_TRUE(absl::IsDataLoss(consumer.Read(seconds(1)).status()));
}

TEST(ShmRingHostileTest, LengthRunningPastTheProducersWindowIsDetected) {
  ShmRing ring = NewRing(4096, 10, /*max_message=*/4088);
  ShmRing raw = Reattach(ring);
  RingConsumer consumer(Reattach(ring));
  RingProducer producer(std::move(ring));
  ASSERT_TRUE(producer.TryWrite(std::string(2000, 'a')).ok());
  ASSERT_TRUE(producer.TryWrite(std::string(100, 'b')).ok());
  ASSERT_TRUE(consumer.Read(seconds(1)).ok());  // read, not acknowledged
  // 3000 bytes is under max_message, but from offset 2008 it would run past
  // acked + capacity = 4096: bytes the producer may not have written.
  raw.WriteRecordHeaderForTest(2008, 3000);
  auto r = consumer.Read(seconds(1));
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
}

TEST(ShmRingHostileTest, HeaderWithTheRightSequenceAndAHugeLengthIsDetected) {
  ShmRing ring = NewRing(4096, 10);
  ShmRing raw = Reattach(ring);
  RingConsumer consumer(std::move(ring));
  raw.WriteRecordHeaderForTest(0, 0xffffff00u);
  EXPECT_TRUE(absl::IsDataLoss(consumer.Read(seconds(1)).status()));
}

TEST(ShmRingHostileTest, ProducerRejectsAnAckedOffsetOutsideItsWindow) {
  ShmRing ring = NewRing(4096, 10);
  ShmRing raw = Reattach(ring);
  RingProducer producer(std::move(ring));
  // Fill the ring so the producer must look at `acked` again.
  while (producer.TryWrite(std::string(96, 'z')).ok()) {
  }
  raw.SetAckedForTest(producer.head() + 4096);  // "acknowledged" the future
  EXPECT_TRUE(absl::IsDataLoss(producer.TryWrite(std::string(96, 'z'))));
}

TEST(ShmRingHostileTest, AttachRefusesAnUnsealedOrForeignMemfd) {
  RingFds fds;
  fds.memory.Reset(memfd_create("not-a-ring", MFD_CLOEXEC));
  ASSERT_TRUE(fds.memory.valid());
  ASSERT_EQ(ftruncate(fds.memory.get(), 4096 * 3), 0);
  fds.data_ready.Reset(dup(fds.memory.get()));
  fds.space_ready.Reset(dup(fds.memory.get()));
  auto r = ShmRing::Attach(std::move(fds));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("sealed"), std::string::npos);

  ShmRing ring = NewRing(4096);
  ring.HeaderForTest();  // a sealed ring, but scribble on its magic
  std::memset(static_cast<void*>(ring.HeaderForTest()), 0x5a, 8);
  auto fds2 = ring.DuplicateFds();
  ASSERT_TRUE(fds2.ok());
  auto r2 = ShmRing::Attach(std::move(*fds2));
  EXPECT_TRUE(absl::IsInvalidArgument(r2.status())) << r2.status();
}

// A peer in another process scribbles random bytes over the data area and
// forges well-sequenced headers with random lengths while this process
// reads: every Read must end in a value, a timeout or DataLoss — never a
// crash or a read outside the mapping.
TEST(ShmRingHostileTest, ScribblingProducerProcessNeverCrashesTheConsumer) {
  ShmRing ring = NewRing(4096, 10, /*max_message=*/512);
  ShmRing hostile_side = Reattach(ring);
  Child hostile([&]() -> int {
    uint64_t x = 88172645463325252ull;
    auto next = [&x] {  // xorshift64
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    char* data = hostile_side.DataForTest();
    auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      uint64_t r = next();
      data[r % 4096] = static_cast<char>(r >> 32);
      if (r % 5 == 0) {
        // Mostly plausible lengths, sometimes absurd ones.
        uint32_t length = static_cast<uint32_t>(next() % (r % 3 == 0 ? 1u << 31 : 600));
        hostile_side.WriteRecordHeaderForTest(8 * (next() % 64), length);
      }
    }
    return 0;
  });
  ASSERT_TRUE(hostile.started());
  int data_loss = 0;
  int delivered = 0;  // plausible forged records: framing holds, contents are the peer's
  // At least 100 rounds, and on until the scribbler (which a loaded machine
  // may start late) has produced a DataLoss, within 20 s.
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  for (int round = 0;
       round < 100 || (data_loss == 0 && std::chrono::steady_clock::now() < deadline); ++round) {
    RingConsumer consumer(Reattach(ring));
    for (int i = 0; i < 5; ++i) {
      auto r = consumer.Read(milliseconds(2));
      if (absl::IsDataLoss(r.status())) {
        ++data_loss;
        break;
      }
      ASSERT_TRUE(r.ok() || absl::IsDeadlineExceeded(r.status())) << r.status();
      if (r.ok()) {
        ++delivered;
        EXPECT_LE(r->size(), 512u);
      }
    }
  }
  EXPECT_GT(data_loss, 0);
}

}  // namespace
}  // namespace flotilla::shard
