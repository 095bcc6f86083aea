// Shared-memory channel between two shards on one node: a single-producer
// single-consumer ring of length-prefixed messages.
//
// Memory. One memfd holds a 4 KiB header and a data area whose size is a
// power of two. Both sides map it (after fork, or after the fds went over a
// unix socket with SCM_RIGHTS: RingFds). The creator seals the memfd's size
// (F_SEAL_SHRINK|F_SEAL_GROW) and Attach refuses one without those seals,
// so a peer cannot truncate the file under the other's mapping (SIGBUS).
//
// Records. [u64 header][payload][zero padding to 8 bytes]. The header is
// (sequence << 32 | length), the sequence a non-zero function of the
// record's offset; the producer writes the payload, clears the next
// record's header slot, then publishes the header (a seq_cst exchange). A
// header is the record's own "published" flag: the consumer polls the
// header at its read offset and takes the record when the sequence is the
// one expected there; zero or an older lap's header means nothing new
// yet. So a message moves only its own cache lines between the cores: no
// shared head index bounces per message (such an index cost about 40% of a
// 64-byte message's time here; docs/benchmarks.md). Positions are 64-bit
// byte offsets that only grow; `offset % capacity` is where a byte lives.
// Headers are 8-aligned and never straddle the end; a payload may wrap
// around it.
//
// Acknowledgements and resume. The consumer reads with a private cursor and
// publishes `acked`, the offset up to which it is done. The producer reuses
// space only below `acked`, so everything after it is still in the ring: a
// consumer that restarts (RingConsumer over a fresh Attach) starts at
// `acked` and sees exactly the records after the last acknowledged one.
//
// Back-pressure. When the unacknowledged bytes plus a new record would
// exceed the capacity, TryWrite returns ResourceExhausted and Write waits
// (bounded by its timeout) for the consumer to acknowledge.
//
// Wake-ups. Each side spins briefly, then sleeps in poll() on an eventfd
// after setting a "waiting" flag in the header; the other side writes the
// eventfd only when that flag is set (a Dekker handshake under seq_cst), so
// a busy stream makes no system calls.
//
// Hostile peers. Neither side trusts anything the other can write, and
// each reads a shared word once and validates its copy (no double fetch).
// The consumer refuses a header whose length exceeds max_message or runs
// past the window the producer may fill (acked + capacity); the producer
// refuses an `acked` outside [head - capacity, head]. A violation is
// DataLoss, sticky for that endpoint; no index derived from the peer is
// used unchecked, so nothing is read or written outside the mapping. What
// the ring cannot do is tell a hostile producer's well-framed garbage from
// data: integrity of contents is the message format's job.
//
// Thread-safety: one thread per endpoint; RingProducer and RingConsumer are
// movable, not copyable.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::shard {

struct RingOptions {
  size_t capacity_bytes = 1 << 20;        // rounded up to a power of two, 4 KiB..4 GiB
  uint32_t max_message_bytes = 64 << 10;  // must fit: <= capacity - 8
  // Iterations of the busy loop before sleeping on the eventfd. Spinning
  // is what makes a 1-2 µs hop possible; it costs a core while it lasts.
  int spin_iterations = 20000;
};

// The three descriptors that make a channel; passed to the other side.
struct RingFds {
  UniqueFd memory;       // memfd
  UniqueFd data_ready;   // eventfd: producer -> consumer
  UniqueFd space_ready;  // eventfd: consumer -> producer
};

struct RingHeader;

// ShmRing: owns the mapping and the descriptors of one channel. Not an
// endpoint itself: hand it to a RingProducer or a RingConsumer.
class ShmRing {
 public:
  // Creates a new channel. InvalidArgument for impossible options; errno
  // errors name the call that failed.
  static absl::StatusOr<ShmRing> Create(const RingOptions& options);
  // Maps a channel created elsewhere. Validates the header against the
  // memfd's size and seals; InvalidArgument (naming what is wrong) if they
  // do not describe a sane ring.
  static absl::StatusOr<ShmRing> Attach(RingFds fds, int spin_iterations = 20000);

  ShmRing(ShmRing&& other) noexcept;
  ShmRing& operator=(ShmRing&& other) noexcept;
  ShmRing(const ShmRing&) = delete;
  ShmRing& operator=(const ShmRing&) = delete;
  ~ShmRing();

  // Duplicates the descriptors (close-on-exec) to send to another process.
  absl::StatusOr<RingFds> DuplicateFds() const;

  uint64_t capacity() const { return capacity_; }
  uint32_t max_message_bytes() const { return max_message_; }

  // Raw access for the hostile-peer tests: they corrupt the ring the way a
  // malicious peer could.
  char* DataForTest() { return data_; }
  RingHeader* HeaderForTest() { return header_; }
  void SetAckedForTest(uint64_t acked);
  // Stores a record header (sequence, length) at ring offset `offset`.
  void WriteRecordHeaderForTest(uint64_t offset, uint32_t length);

 private:
  friend class RingProducer;
  friend class RingConsumer;
  friend absl::Status SendRingFds(int unix_socket, const ShmRing& ring);
  ShmRing() = default;
  void Unmap();

  RingFds fds_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  RingHeader* header_ = nullptr;
  char* data_ = nullptr;
  uint64_t capacity_ = 0;  // private copies: never re-read from the header
  uint32_t max_message_ = 0;
  int spin_iterations_ = 0;
};

// Sends the channel's three descriptors over a connected unix socket
// (SCM_RIGHTS), so a process that did not fork from the creator — a shard
// in its own sandbox — can Attach. Blocking; the caller bounds it with the
// socket's own timeouts.
absl::Status SendRingFds(int unix_socket, const ShmRing& ring);
// Receives what SendRingFds sent, waiting up to `timeout`. Anything but
// exactly three descriptors is InvalidArgument, and whatever did arrive is
// closed (a hostile sender cannot leak descriptors into us).
absl::StatusOr<RingFds> ReceiveRingFds(int unix_socket, std::chrono::milliseconds timeout);

class RingProducer {
 public:
  // Takes over `ring`. A producer is the channel's only writer for its
  // life: it starts at the ring's acknowledged offset, which is where a
  // fresh ring's is (0); a restarted producer needs a new ring.
  explicit RingProducer(ShmRing ring);

  // Takes over `ring` from a producer that died: finds where it stopped by
  // walking the published records from the acknowledged offset (each
  // header carries the sequence of its own offset, so the walk stops at the
  // first slot that holds no record of this lap). A record the dead
  // producer had not published is not there; one it had is. This is what
  // lets the shard runtime restart a producing shard on the same ring.
  // DataLoss when a record in the window is malformed.
  static absl::StatusOr<RingProducer> Resume(ShmRing ring);

  // Appends one message without waiting. ResourceExhausted when the ring is
  // full (back-pressure), InvalidArgument when the message is larger than
  // max_message_bytes, DataLoss when the consumer corrupted the ring.
  absl::Status TryWrite(std::string_view message);
  // As TryWrite, but waits up to `timeout` for space; DeadlineExceeded then.
  absl::Status Write(std::string_view message, std::chrono::nanoseconds timeout);
  // Tells the consumer no more messages come: once it has read everything,
  // its Read returns OutOfRange.
  void Close();

  uint64_t head() const { return head_; }  // offset after the last record written

 private:
  absl::Status CheckAcked(uint64_t acked);

  ShmRing ring_;
  uint64_t head_ = 0;
  uint64_t acked_cache_ = 0;  // last `acked` seen; refreshed only when short of space
  absl::Status broken_;
};

class RingConsumer {
 public:
  // Takes over `ring`; starts reading at the ring's acknowledged offset.
  explicit RingConsumer(ShmRing ring);

  // Reads the next message into `out` (up to `size` bytes) and returns its
  // length. DeadlineExceeded when none came within `timeout`; OutOfRange
  // when the producer closed and everything was read; InvalidArgument when
  // `size` is too small (the record stays unread); DataLoss when the ring
  // is corrupt (sticky).
  absl::StatusOr<size_t> Read(char* out, size_t size, std::chrono::nanoseconds timeout);
  absl::StatusOr<std::string> Read(std::chrono::nanoseconds timeout);

  // Offset of the next record to read; acknowledging it acknowledges every
  // record read so far.
  uint64_t read_offset() const { return read_; }
  uint64_t acked_offset() const { return acked_; }
  // Publishes `offset` as acknowledged: it must lie in [acked_offset(),
  // read_offset()] (InvalidArgument otherwise) and should be a value
  // read_offset() had after some Read — a record boundary; a restarted
  // consumer resumes there. Frees the space below it for the producer.
  absl::Status Ack(uint64_t offset);
  absl::Status AckAll() { return Ack(read_); }

  // Waiting on several channels at once (one poll() over their eventfds):
  // ArmWait raises this side's "waiting" flag and returns true when a
  // record or the close is already there (then do not sleep); otherwise
  // sleep until data_ready_fd() is readable, then DisarmWait. The flag is
  // what makes the producer signal the eventfd; without it the producer
  // never wakes a sleeper.
  bool ArmWait();
  void DisarmWait();
  int data_ready_fd() const { return ring_.fds_.data_ready.get(); }

 private:
  absl::Status Fail(absl::Status status);
  absl::Status WaitForData(std::chrono::nanoseconds timeout);

  ShmRing ring_;
  uint64_t read_ = 0;
  uint64_t acked_ = 0;
  absl::Status broken_;
};

}  // namespace flotilla::shard
