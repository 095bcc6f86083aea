#include "shard/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flotilla::shard {

// Lives at the start of the memfd. The fields above `acked` are written
// once by the creator; the attaching side validates them against the memfd
// and keeps its own copies. `acked` (the consumer's) and each waiting flag
// sit on cache lines of their own, so a store to one does not invalidate
// a line the other side is reading (false sharing).
struct RingHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t max_message;
  uint64_t capacity;
  alignas(64) std::atomic<uint64_t> acked;  // written by the consumer
  alignas(64) std::atomic<uint32_t> consumer_waiting;
  std::atomic<uint32_t> closed;
  alignas(64) std::atomic<uint32_t> producer_waiting;
};

namespace {

constexpr uint64_t kMagic = 0x31474e4952544c46ull;  // "FLTRING1"
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 4096;
constexpr size_t kLengthBytes = sizeof(uint64_t);  // the record header
constexpr uint64_t kMinCapacity = 4096;
// offset / 8 differs between two laps in its low 32 bits only while
// capacity / 8 < 2^32.
constexpr uint64_t kMaxCapacity = 1ull << 32;

static_assert(sizeof(RingHeader) <= kHeaderBytes);
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the ring's offsets must be lock-free atomics to be shared across processes");
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);

uint64_t RoundUp8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

// The sequence of the record at `offset`: never 0, so a zeroed header (a
// fresh memfd, or the slot the producer clears ahead) is never "ready";
// and different for offsets one lap apart, since capacity / 8 <= 2^29.
uint32_t SequenceAt(uint64_t offset) {
  return static_cast<uint32_t>((offset >> 3) % 0xffffffffull) + 1;
}

uint64_t HeaderFor(uint64_t offset, uint32_t length) {
  return (static_cast<uint64_t>(SequenceAt(offset)) << 32) | length;
}

std::atomic_ref<uint64_t> HeaderAt(char* data, uint64_t capacity, uint64_t offset) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data + (offset & (capacity - 1))));
}

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint64_t RoundUpPowerOfTwo(uint64_t v) {
  uint64_t p = kMinCapacity;
  while (p < v) p <<= 1;
  return p;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Copies `n` bytes starting at ring offset `offset` out of / into a data area
// of `capacity` bytes (a power of two), in two pieces when they wrap.
void CopyOut(const char* data, uint64_t capacity, uint64_t offset, char* out, size_t n) {
  size_t at = offset & (capacity - 1);
  size_t first = std::min<size_t>(n, capacity - at);
  std::memcpy(out, data + at, first);
  if (first < n) std::memcpy(out + first, data, n - first);
}

void CopyIn(char* data, uint64_t capacity, uint64_t offset, const char* in, size_t n) {
  size_t at = offset & (capacity - 1);
  size_t first = std::min<size_t>(n, capacity - at);
  std::memcpy(data + at, in, first);
  if (first < n) std::memcpy(data, in + first, n - first);
}

void Signal(int fd) {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the peer will wake anyway.
  ssize_t ignored = write(fd, &one, sizeof(one));
  (void)ignored;
}

// Waits until `fd` (an eventfd) is readable or `timeout` passes, then
// resets its counter. Returns false on timeout.
bool WaitOn(int fd, std::chrono::nanoseconds timeout) {
  struct pollfd p = {fd, POLLIN, 0};
  // Round up so a sub-millisecond remainder still sleeps rather than spins.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  int n = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(ms, 1 << 30))));
  if (n <= 0) return false;
  uint64_t value;
  ssize_t ignored = read(fd, &value, sizeof(value));
  (void)ignored;
  return true;
}

absl::StatusOr<UniqueFd> NewEventFd() {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ErrnoError(errno, "eventfd");
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> Dup(const UniqueFd& fd, const char* what) {
  int copy = fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoError(errno, "dup", what);
  return UniqueFd(copy);
}

using Clock = std::chrono::steady_clock;

}  // namespace

// ---- ShmRing

absl::StatusOr<ShmRing> ShmRing::Create(const RingOptions& options) {
  if (options.capacity_bytes > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat("ring capacity ", options.capacity_bytes,
                                                   " bytes is above the limit of ", kMaxCapacity));
  }
  uint64_t capacity = RoundUpPowerOfTwo(options.capacity_bytes);
  if (options.max_message_bytes == 0 || options.max_message_bytes > capacity - kLengthBytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes ", options.max_message_bytes,
                                                   " must be in [1, ", capacity - kLengthBytes,
                                                   "] for a ring of ", capacity, " bytes"));
  }
  ShmRing ring;
  int memfd = memfd_create("flotilla-shard-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd < 0) return ErrnoError(errno, "memfd_create", "flotilla-shard-ring");
  ring.fds_.memory.Reset(memfd);
  size_t bytes = kHeaderBytes + capacity;
  if (ftruncate(memfd, static_cast<off_t>(bytes)) != 0) {
    return ErrnoError(errno, "ftruncate", "flotilla-shard-ring");
  }
  if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return ErrnoError(errno, "seal", "flotilla-shard-ring");
  }
  ASSIGN_OR_RETURN(ring.fds_.data_ready, NewEventFd());
  ASSIGN_OR_RETURN(ring.fds_.space_ready, NewEventFd());
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (map == MAP_FAILED) return ErrnoError(errno, "mmap", "flotilla-shard-ring");
  ring.map_ = map;
  ring.map_bytes_ = bytes;
  // A fresh memfd is zero-filled: the atomics start at 0 without a
  // constructor, which is what placement-new would give them too.
  ring.header_ = new (map) RingHeader{};
  ring.header_->magic = kMagic;
  ring.header_->version = kVersion;
  ring.header_->capacity = capacity;
  ring.header_->max_message = options.max_message_bytes;
  ring.data_ = static_cast<char*>(map) + kHeaderBytes;
  ring.capacity_ = capacity;
  ring.max_message_ = options.max_message_bytes;
  ring.spin_iterations_ = options.spin_iterations;
  return ring;
}

absl::StatusOr<ShmRing> ShmRing::Attach(RingFds fds, int spin_iterations) {
  if (!fds.memory.valid() || !fds.data_ready.valid() || !fds.space_ready.valid()) {
    return absl::InvalidArgumentError("attach ring: a descriptor is missing");
  }
  struct stat st;
  if (fstat(fds.memory.get(), &st) != 0) return ErrnoError(errno, "fstat", "ring memfd");
  int seals = fcntl(fds.memory.get(), F_GET_SEALS);
  if (seals < 0) return ErrnoError(errno, "get seals", "ring memfd");
  if ((seals & F_SEAL_SHRINK) == 0) {
    // Without it the peer could truncate the file and crash us with SIGBUS.
    return absl::InvalidArgumentError("attach ring: the memfd is not sealed against shrinking");
  }
  size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes < kHeaderBytes + kMinCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("attach ring: memfd of ", bytes, " bytes is too small"));
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds.memory.get(), 0);
  if (map == MAP_FAILED) return ErrnoError(errno, "mmap", "ring memfd");
  ShmRing ring;
  ring.fds_ = std::move(fds);
  ring.map_ = map;
  ring.map_bytes_ = bytes;
  ring.header_ = static_cast<RingHeader*>(map);
  // Read each creator-written field once; validate the copies.
  uint64_t magic = ring.header_->magic;
  uint32_t version = ring.header_->version;
  uint64_t capacity = ring.header_->capacity;
  uint32_t max_message = ring.header_->max_message;
  if (magic != kMagic || version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("attach ring: not a version ", kVersion,
                                                   " Flotilla ring (magic ", magic, ", version ",
                                                   version, ")"));
  }
  if (!IsPowerOfTwo(capacity) || capacity < kMinCapacity || capacity + kHeaderBytes != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("attach ring: capacity ", capacity, " does not match the memfd size ", bytes));
  }
  if (max_message == 0 || max_message > capacity - kLengthBytes) {
    return absl::InvalidArgumentError(absl::StrCat("attach ring: max_message ", max_message,
                                                   " does not fit capacity ", capacity));
  }
  ring.data_ = static_cast<char*>(map) + kHeaderBytes;
  ring.capacity_ = capacity;
  ring.max_message_ = max_message;
  ring.spin_iterations_ = spin_iterations;
  return ring;
}

ShmRing::ShmRing(ShmRing&& other) noexcept { *this = std::move(other); }

ShmRing& ShmRing::operator=(ShmRing&& other) noexcept {
  if (this == &other) return *this;
  Unmap();
  fds_ = std::move(other.fds_);
  map_ = std::exchange(other.map_, nullptr);
  map_bytes_ = std::exchange(other.map_bytes_, 0);
  header_ = std::exchange(other.header_, nullptr);
  data_ = std::exchange(other.data_, nullptr);
  capacity_ = other.capacity_;
  max_message_ = other.max_message_;
  spin_iterations_ = other.spin_iterations_;
  return *this;
}

ShmRing::~ShmRing() { Unmap(); }

void ShmRing::Unmap() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
  map_ = nullptr;
  header_ = nullptr;
  data_ = nullptr;
}

absl::StatusOr<RingFds> ShmRing::DuplicateFds() const {
  RingFds out;
  ASSIGN_OR_RETURN(out.memory, Dup(fds_.memory, "ring memfd"));
  ASSIGN_OR_RETURN(out.data_ready, Dup(fds_.data_ready, "ring data eventfd"));
  ASSIGN_OR_RETURN(out.space_ready, Dup(fds_.space_ready, "ring space eventfd"));
  return out;
}

void ShmRing::WriteRecordHeaderForTest(uint64_t offset, uint32_t length) {
  HeaderAt(data_, capacity_, offset).store(HeaderFor(offset, length), std::memory_order_release);
}
void ShmRing::SetAckedForTest(uint64_t acked) {
  header_->acked.store(acked, std::memory_order_release);
}

// ---- Passing the descriptors

absl::Status SendRingFds(int unix_socket, const ShmRing& ring) {
  int fds[3] = {ring.fds_.memory.get(), ring.fds_.data_ready.get(), ring.fds_.space_ready.get()};
  char byte = 'R';
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(fds))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
  for (;;) {
    ssize_t n = sendmsg(unix_socket, &msg, MSG_NOSIGNAL);
    if (n == 1) return absl::OkStatus();
    if (n < 0 && errno == EINTR) continue;
    return ErrnoError(n < 0 ? errno : EIO, "sendmsg", "ring descriptors");
  }
}

absl::StatusOr<RingFds> ReceiveRingFds(int unix_socket, std::chrono::milliseconds timeout) {
  struct pollfd p = {unix_socket, POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(timeout.count(), 1 << 30)));
  if (ready < 0) return ErrnoError(errno, "poll", "ring descriptor socket");
  if (ready == 0) return absl::DeadlineExceededError("no ring descriptors within the timeout");
  char byte;
  struct iovec iov = {&byte, 1};
  // Room for more than three, so a sender that sends more is seen (and its
  // extras closed) rather than truncated silently.
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(unix_socket, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return ErrnoError(errno, "recvmsg", "ring descriptors");
  std::vector<UniqueFd> got;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      got.emplace_back(fd);
    }
  }
  if (n != 1 || got.size() != 3 || (msg.msg_flags & MSG_CTRUNC) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("expected 3 ring descriptors, got ", got.size(),
                                                   n == 0 ? " (peer closed)" : ""));
  }
  RingFds fds;
  fds.memory = std::move(got[0]);
  fds.data_ready = std::move(got[1]);
  fds.space_ready = std::move(got[2]);
  return fds;
}

// ---- RingProducer

RingProducer::RingProducer(ShmRing ring) : ring_(std::move(ring)) {
  head_ = ring_.header_->acked.load(std::memory_order_acquire);
  acked_cache_ = head_;
  if (head_ % 8 != 0) {
    broken_ = absl::DataLossError(
        absl::StrCat("ring corrupt: acknowledged offset ", head_, " is not a record boundary"));
  }
}

absl::StatusOr<RingProducer> RingProducer::Resume(ShmRing ring) {
  RingProducer producer(std::move(ring));
  if (!producer.broken_.ok()) return producer.broken_;
  const uint64_t acked = producer.head_;
  const uint64_t cap = producer.ring_.capacity_;
  char* data = producer.ring_.data_;
  uint64_t at = acked;
  while (at + kLengthBytes <= acked + cap) {
    uint64_t header = HeaderAt(data, cap, at).load(std::memory_order_acquire);
    if (static_cast<uint32_t>(header >> 32) != SequenceAt(at)) break;
    const uint32_t length = static_cast<uint32_t>(header);
    const uint64_t need = kLengthBytes + RoundUp8(length);
    if (length > producer.ring_.max_message_ || at + need > acked + cap) {
      return absl::DataLossError(absl::StrCat("ring corrupt: record at offset ", at, " claims ",
                                              length, " bytes while resuming its producer"));
    }
    at += need;
  }
  producer.head_ = at;
  return producer;
}

absl::Status RingProducer::CheckAcked(uint64_t acked) {
  if (acked > head_ || head_ - acked > ring_.capacity_) {
    return absl::DataLossError(
        absl::StrCat("ring corrupt: consumer acknowledged offset ", acked, " outside [",
                     head_ > ring_.capacity_ ? head_ - ring_.capacity_ : 0, ", ", head_, "]"));
  }
  return absl::OkStatus();
}

absl::Status RingProducer::TryWrite(std::string_view message) {
  if (!broken_.ok()) return broken_;
  if (message.size() > ring_.max_message_) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                   " bytes exceeds the ring's max_message_bytes ",
                                                   ring_.max_message_));
  }
  const uint64_t need = kLengthBytes + RoundUp8(message.size());
  if (head_ + need - acked_cache_ > ring_.capacity_) {
    uint64_t acked = ring_.header_->acked.load(std::memory_order_acquire);
    if (absl::Status st = CheckAcked(acked); !st.ok()) return broken_ = st;
    acked_cache_ = acked;
    if (head_ + need - acked_cache_ > ring_.capacity_) {
      return absl::ResourceExhaustedError("ring full: the consumer has not acknowledged enough");
    }
  }
  char* data = ring_.data_;
  const uint64_t cap = ring_.capacity_;
  CopyIn(data, cap, head_ + kLengthBytes, message.data(), message.size());
  static const char kZeros[8] = {};
  CopyIn(data, cap, head_ + kLengthBytes + message.size(), kZeros,
         RoundUp8(message.size()) - message.size());
  // Clear the next record's header slot before publishing this record: the
  // consumer polls that slot next, and what it holds now is an older lap's
  // bytes — possibly payload that happens to look like the header expected
  // there. Only inside free space: at acked + capacity sits the header of
  // an unacknowledged record (an older sequence, so never "ready").
  if (head_ + need < acked_cache_ + cap) {
    HeaderAt(data, cap, head_ + need).store(0, std::memory_order_relaxed);
  }
  // The header last: publishing it publishes the record. A locked exchange
  // is also the full barrier the wake-up handshake needs before reading
  // consumer_waiting (pairs with the consumer's seq_cst store of it and
  // re-check of this header), cheaper on x86 than a store and an mfence.
  HeaderAt(data, cap, head_)
      .exchange(HeaderFor(head_, static_cast<uint32_t>(message.size())), std::memory_order_seq_cst);
  head_ += need;
  if (ring_.header_->consumer_waiting.load(std::memory_order_relaxed) != 0) {
    Signal(ring_.fds_.data_ready.get());
  }
  return absl::OkStatus();
}

absl::Status RingProducer::Write(std::string_view message, std::chrono::nanoseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int spins = 0;
  RingHeader* h = ring_.header_;
  for (;;) {
    absl::Status st = TryWrite(message);
    if (!absl::IsResourceExhausted(st)) return st;
    if (spins < ring_.spin_iterations_) {
      ++spins;
      CpuRelax();
      continue;
    }
    auto left = deadline - Clock::now();
    if (left <= std::chrono::nanoseconds::zero()) {
      return absl::DeadlineExceededError(
          absl::StrCat("ring full for ", timeout.count() / 1000000,
                       " ms: the consumer is not keeping up (back-pressure)"));
    }
    h->producer_waiting.store(1, std::memory_order_seq_cst);
    uint64_t need = kLengthBytes + RoundUp8(message.size());
    uint64_t acked = h->acked.load(std::memory_order_seq_cst);
    if (head_ + need - acked > ring_.capacity_) WaitOn(ring_.fds_.space_ready.get(), left);
    h->producer_waiting.store(0, std::memory_order_relaxed);
  }
}

void RingProducer::Close() {
  ring_.header_->closed.exchange(1, std::memory_order_seq_cst);
  Signal(ring_.fds_.data_ready.get());
}

// ---- RingConsumer

RingConsumer::RingConsumer(ShmRing ring) : ring_(std::move(ring)) {
  acked_ = ring_.header_->acked.load(std::memory_order_acquire);
  read_ = acked_;
  if (acked_ % 8 != 0) {
    broken_ = absl::DataLossError(
        absl::StrCat("ring corrupt: acknowledged offset ", acked_, " is not a record boundary"));
  }
}

absl::Status RingConsumer::Fail(absl::Status status) {
  broken_ = status;
  return status;
}

// Returns true when `header`, read at `offset`, carries the sequence
// expected there.
static inline bool Ready(uint64_t header, uint64_t offset) {
  return static_cast<uint32_t>(header >> 32) == SequenceAt(offset);
}

absl::Status RingConsumer::WaitForData(std::chrono::nanoseconds timeout) {
  RingHeader* h = ring_.header_;
  auto header = HeaderAt(ring_.data_, ring_.capacity_, read_);
  const auto deadline = Clock::now() + timeout;
  int spins = 0;
  for (;;) {
    if (Ready(header.load(std::memory_order_acquire), read_)) return absl::OkStatus();
    if (h->closed.load(std::memory_order_acquire) != 0) {
      // The producer's last header store precedes its closed store.
      if (Ready(header.load(std::memory_order_acquire), read_)) return absl::OkStatus();
      return absl::OutOfRangeError("channel closed by the producer");
    }
    if (spins < ring_.spin_iterations_) {
      ++spins;
      CpuRelax();
      continue;
    }
    auto left = deadline - Clock::now();
    if (left <= std::chrono::nanoseconds::zero()) {
      return absl::DeadlineExceededError("no message within the timeout");
    }
    h->consumer_waiting.store(1, std::memory_order_seq_cst);
    if (!Ready(header.load(std::memory_order_seq_cst), read_) &&
        h->closed.load(std::memory_order_acquire) == 0) {
      WaitOn(ring_.fds_.data_ready.get(), left);
    }
    h->consumer_waiting.store(0, std::memory_order_relaxed);
  }
}

absl::StatusOr<size_t> RingConsumer::Read(char* out, size_t size,
                                          std::chrono::nanoseconds timeout) {
  if (!broken_.ok()) return broken_;
  // Read once: the producer may change the ring under us.
  uint64_t header = HeaderAt(ring_.data_, ring_.capacity_, read_).load(std::memory_order_acquire);
  if (!Ready(header, read_)) {
    RETURN_IF_ERROR(WaitForData(timeout));
    header = HeaderAt(ring_.data_, ring_.capacity_, read_).load(std::memory_order_acquire);
  }
  const uint32_t length = static_cast<uint32_t>(header);
  // The producer may fill [acked, acked + capacity); a record past that
  // would be bytes it must not have written.
  const uint64_t window_end = acked_ + ring_.capacity_;
  if (length > ring_.max_message_ || read_ + kLengthBytes + RoundUp8(length) > window_end) {
    return Fail(absl::DataLossError(absl::StrCat(
        "ring corrupt: record at offset ", read_, " claims ", length, " bytes; at most ",
        std::min<uint64_t>(ring_.max_message_, window_end - read_ - kLengthBytes),
        " are possible")));
  }
  if (length > size) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer of ", size, " bytes is too small for a ", length, "-byte message"));
  }
  CopyOut(ring_.data_, ring_.capacity_, read_ + kLengthBytes, out, length);
  read_ += kLengthBytes + RoundUp8(length);
  return static_cast<size_t>(length);
}

absl::StatusOr<std::string> RingConsumer::Read(std::chrono::nanoseconds timeout) {
  std::string out(ring_.max_message_, '\0');
  ASSIGN_OR_RETURN(size_t n, Read(out.data(), out.size(), timeout));
  out.resize(n);
  return out;
}

bool RingConsumer::ArmWait() {
  RingHeader* h = ring_.header_;
  h->consumer_waiting.store(1, std::memory_order_seq_cst);
  if (!broken_.ok()) return true;
  uint64_t header = HeaderAt(ring_.data_, ring_.capacity_, read_).load(std::memory_order_seq_cst);
  return Ready(header, read_) || h->closed.load(std::memory_order_acquire) != 0;
}

void RingConsumer::DisarmWait() {
  ring_.header_->consumer_waiting.store(0, std::memory_order_relaxed);
  uint64_t value;
  ssize_t ignored = read(ring_.fds_.data_ready.get(), &value, sizeof(value));  // non-blocking
  (void)ignored;
}

absl::Status RingConsumer::Ack(uint64_t offset) {
  if (!broken_.ok()) return broken_;
  if (offset < acked_ || offset > read_) {
    return absl::InvalidArgumentError(absl::StrCat("ack of offset ", offset, " outside [", acked_,
                                                   ", ", read_, "] (acknowledged, read)"));
  }
  acked_ = offset;
  RingHeader* h = ring_.header_;
  h->acked.exchange(acked_, std::memory_order_seq_cst);  // see RingProducer::TryWrite
  if (h->producer_waiting.load(std::memory_order_relaxed) != 0) {
    Signal(ring_.fds_.space_ready.get());
  }
  return absl::OkStatus();
}

}  // namespace flotilla::shard
