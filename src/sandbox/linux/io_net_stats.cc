#include "sandbox/linux/io_net_stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sandbox/linux/fds.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace flotilla::sandbox::isolation {
namespace {


std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

}  // namespace

IoBytes ParseBlkioServiceBytes(absl::string_view content) {
  IoBytes out;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = Fields(line);
    int64_t v = 0;
    if (f.size() != 3 || !absl::SimpleAtoi(f[2], &v)) continue;  // "Total <n>" has 2
    if (f[1] == "Read") out.read += v;
    if (f[1] == "Write") out.written += v;
  }
  return out;
}

IoBytes ParseIoStat(absl::string_view content) {
  IoBytes out;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    for (absl::string_view kv : Fields(line)) {
      std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      int64_t v = 0;
      if (!absl::SimpleAtoi(p.second, &v)) continue;
      if (p.first == "rbytes") out.read += v;
      if (p.first == "wbytes") out.written += v;
    }
  }
  return out;
}

IoBytes ParseProcIo(absl::string_view content) {
  IoBytes out;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = Fields(line);
    int64_t v = 0;
    if (f.size() != 2 || !absl::SimpleAtoi(f[1], &v)) continue;
    if (f[0] == "read_bytes:") out.read = v;
    if (f[0] == "write_bytes:") out.written = v;
  }
  return out;
}

absl::StatusOr<NetBytes> ParseNetDev(absl::string_view content) {
  // Two header lines, then "<iface>: rx_bytes rx_packets ... (8 receive
  // fields) tx_bytes ...".
  NetBytes out;
  bool any = false;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    std::vector<absl::string_view> f = Fields(line.substr(colon + 1));
    int64_t rx = 0;
    int64_t tx = 0;
    if (f.size() < 16 || !absl::SimpleAtoi(f[0], &rx) || !absl::SimpleAtoi(f[8], &tx)) continue;
    out.rx += rx;
    out.tx += tx;
    any = true;
  }
  if (!any) return absl::InvalidArgumentError("net/dev has no interface line");
  return out;
}

absl::StatusOr<std::optional<IoBytes>> ReadCgroupIo(const std::string& blkio_dir,
                                     const std::string& unified_dir) {
  if (!blkio_dir.empty()) {
    ASSIGN_OR_RETURN(std::string text,
                     ReadWholeFile(absl::StrCat(blkio_dir, "/blkio.throttle.io_service_bytes")));
    return ParseBlkioServiceBytes(text);
  }
  if (!unified_dir.empty()) {
    const std::string path = absl::StrCat(unified_dir, "/io.stat");
    if (access(path.c_str(), F_OK) == 0) {
      ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
      return ParseIoStat(text);
    }
  }
  return std::nullopt;
}

absl::StatusOr<IoBytes> SumProcIo(const std::string& proc_dir, const std::string& procs_file) {
  ASSIGN_OR_RETURN(std::string procs, ReadWholeFile(procs_file));
  IoBytes sum;
  for (absl::string_view line : absl::StrSplit(procs, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(line, &pid) || pid <= 0) continue;
    auto text = ReadWholeFile(absl::StrCat(proc_dir, "/", pid, "/io"));
    if (!text.ok()) continue;  // exited since the listing
    IoBytes one = ParseProcIo(*text);
    sum.read += one.read;
    sum.written += one.written;
  }
  return sum;
}

absl::StatusOr<NetBytes> ReadNetDev(const std::string& proc_dir, pid_t pid) {
  const std::string path = absl::StrCat(proc_dir, "/", pid, "/net/dev");
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto parsed = ParseNetDev(text);
  if (!parsed.ok()) return Annotate(parsed.status(), absl::StrCat("parse `", path, "`"));
  return parsed;
}

}  // namespace flotilla::sandbox::isolation
