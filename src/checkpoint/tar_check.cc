#include "checkpoint/tar_check.h"

#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sandbox/linux/mounts.h"

namespace flotilla::checkpoint {
namespace {

constexpr size_t kBlock = 512;
// A root skeleton's names are short; a longer one is an attack on whoever
// handles it next, not a real file.
constexpr size_t kMaxName = 4096;

// The fields of a ustar header (POSIX.1-1988, with GNU's extensions).
struct Field {
  size_t at, size;
};
constexpr Field kName{0, 100}, kMode{100, 8}, kSize{124, 12}, kChecksum{148, 8},
    kLinkName{157, 100}, kMagic{257, 8}, kDevMajor{329, 8}, kDevMinor{337, 8}, kPrefix{345, 155};
constexpr size_t kTypeFlag = 156;

absl::string_view Raw(absl::string_view block, Field f) { return block.substr(f.at, f.size); }

// A NUL-terminated field, or the whole field when it has no NUL.
std::string Text(absl::string_view block, Field f) {
  absl::string_view raw = Raw(block, f);
  return std::string(raw.substr(0, raw.find('\0')));
}

// Octal ASCII (padded with blanks or NULs) or GNU's base-256 (first byte's
// high bit set). Returns false for anything else or a value past 2^62.
bool Number(absl::string_view raw, uint64_t* out) {
  uint64_t value = 0;
  if (!raw.empty() && (static_cast<unsigned char>(raw[0]) & 0x80) != 0) {
    if (static_cast<unsigned char>(raw[0]) != 0x80) return false;  // negative or huge
    for (size_t i = 1; i < raw.size(); ++i) {
      if (value >> 54) return false;
      value = (value << 8) | static_cast<unsigned char>(raw[i]);
    }
    *out = value;
    return true;
  }
  size_t i = 0;
  while (i < raw.size() && raw[i] == ' ') ++i;
  bool digits = false;
  for (; i < raw.size() && raw[i] >= '0' && raw[i] <= '7'; ++i) {
    if (value >> 59) return false;
    value = value * 8 + static_cast<uint64_t>(raw[i] - '0');
    digits = true;
  }
  for (; i < raw.size(); ++i) {
    if (raw[i] != ' ' && raw[i] != '\0') return false;
  }
  *out = value;
  return digits || raw.find_first_not_of(std::string(" \0", 2)) == absl::string_view::npos;
}

bool ChecksumMatches(absl::string_view block) {
  uint64_t want = 0;
  if (!Number(Raw(block, kChecksum), &want)) return false;
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChecksum.at && i < kChecksum.at + kChecksum.size;
    sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum == want;
}

bool AllZero(absl::string_view block) {
  return block.find_first_not_of('\0') == absl::string_view::npos;
}

// Normalizes an archive member name into its components below the archive
// root ("./a//b/." -> {a, b}). Returns false for absolute names and `..`.
bool Components(absl::string_view name, std::vector<std::string>* parts) {
  parts->clear();
  if (name.empty() || name.front() == '/' || name.size() > kMaxName) return false;
  if (name.find('\0') != absl::string_view::npos) return false;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return false;
    parts->emplace_back(part);
  }
  return true;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) absl::StrAppend(&out, "/", p);
  return out.empty() ? "/" : out;
}

// Resolves a symlink's target as the container will: absolute targets from
// the archive root, relative ones from the link's directory. Returns false
// when a `..` climbs above the root. Symlinks inside the target are not
// followed: a target naming an earlier symlink is checked when the later
// entries are, and nothing is written below a symlink at all.
bool TargetStaysInside(const std::vector<std::string>& link_parts, absl::string_view target) {
  if (target.empty() || target.size() > kMaxName || target.find('\0') != absl::string_view::npos) {
    return false;
  }
  std::vector<std::string> at;
  if (target.front() != '/') at.assign(link_parts.begin(), link_parts.end() - 1);
  for (absl::string_view part : absl::StrSplit(target, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (at.empty()) return false;
      at.pop_back();
      continue;
    }
    at.emplace_back(part);
  }
  return true;
}

// The records of a pax extended header: "<len> <key>=<value>\n".
absl::Status ParsePax(absl::string_view data, std::string* path, std::string* linkpath,
                      uint64_t* size, bool* has_size) {
  while (!data.empty()) {
    const size_t space = data.find(' ');
    uint64_t len = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtoi(data.substr(0, space), &len) ||
        len <= space + 1 || len > data.size() || data[len - 1] != '\n') {
      return absl::InvalidArgumentError("a pax header record is malformed");
    }
    absl::string_view record = data.substr(space + 1, len - space - 2);
    data.remove_prefix(len);
    const size_t eq = record.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError("a pax header record has no `=`");
    }
    absl::string_view key = record.substr(0, eq);
    absl::string_view value = record.substr(eq + 1);
    if (key == "path") {
      *path = std::string(value);
    } else if (key == "linkpath") {
      *linkpath = std::string(value);
    } else if (key == "size") {
      if (!absl::SimpleAtoi(value, size)) {
        return absl::InvalidArgumentError("a pax `size` record is not a number");
      }
      *has_size = true;
    } else if (absl::StartsWith(key, "GNU.sparse")) {
      return absl::InvalidArgumentError("sparse files are not allowed");
    } else if (absl::StartsWith(key, "SCHILY.xattr.") || absl::StartsWith(key, "LIBARCHIVE.xattr.")) {
      absl::string_view name = key.substr(key.find(".xattr.") + 7);
      // A file capability would survive nosuid and no_new_privs only if the
      // sandbox ever ran as root, but nothing legitimate in a root skeleton
      // carries one; trusted.* is for the host's daemons.
      if (name == "security.capability" || absl::StartsWith(name, "trusted.")) {
        return absl::InvalidArgumentError(absl::StrCat("xattr `", name, "` is not allowed"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

TarPolicy RootSkeletonTarPolicy() {
  TarPolicy policy;
  for (const auto& d : sandbox::isolation::SandboxDeviceNodes()) {
    policy.char_devices.push_back({d.path, d.major, d.minor});
  }
  return policy;
}

absl::Status CheckTarArchive(absl::string_view archive, const TarPolicy& policy) {
  std::set<std::string> symlinks;       // "/a/b", declared so far
  std::set<std::string> regular_files;  // hard link targets
  std::vector<std::string> parts;
  // Carried from GNU long-name ('L', 'K') and pax ('x') headers to the
  // entry they describe.
  std::string long_name, long_link, pax_path, pax_link;
  uint64_t pax_size = 0;
  bool has_pax_size = false;
  uint64_t entries = 0;
  size_t at = 0;
  while (true) {
    if (at + kBlock > archive.size()) {
      return absl::InvalidArgumentError("the archive is truncated (no end-of-archive block)");
    }
    absl::string_view block = archive.substr(at, kBlock);
    at += kBlock;
    if (AllZero(block)) return absl::OkStatus();
    if (++entries > policy.max_entries) {
      return absl::InvalidArgumentError(
          absl::StrCat("the archive has more than ", policy.max_entries, " entries"));
    }
    const std::string header_name = Text(block, kName);
    auto refuse = [&](absl::string_view why, absl::string_view name) {
      return absl::InvalidArgumentError(absl::StrCat("archive entry `", name, "`: ", why));
    };
    if (!ChecksumMatches(block)) return refuse("bad header checksum", header_name);
    uint64_t size = 0;
    if (!Number(Raw(block, kSize), &size)) return refuse("bad size field", header_name);
    const char type = block[kTypeFlag];
    const bool meta = type == 'L' || type == 'K' || type == 'x' || type == 'g';
    if (has_pax_size && !meta) size = pax_size;
    const uint64_t padded = (size + kBlock - 1) / kBlock * kBlock;
    if (size > archive.size() || padded > archive.size() - at) {
      return refuse("data runs past the end of the archive", header_name);
    }
    absl::string_view data = archive.substr(at, size);
    at += padded;

    if (meta) {
      if (size > kMaxName * 4) return refuse("extended header is too long", header_name);
      if (type == 'L') {
        long_name = std::string(data.substr(0, data.find('\0')));
      } else if (type == 'K') {
        long_link = std::string(data.substr(0, data.find('\0')));
      } else if (type == 'x') {
        absl::Status st = ParsePax(data, &pax_path, &pax_link, &pax_size, &has_pax_size);
        if (!st.ok()) return refuse(st.message(), header_name);
      } else {
        // A global header applies to every later entry; GNU tar never
        // writes one, and honouring its path-like keys would be a second
        // path parser.
        return refuse("global pax headers are not allowed", header_name);
      }
      continue;
    }

    std::string name = header_name;
    const absl::string_view magic = Raw(block, kMagic);
    // Only POSIX ustar keeps a prefix there; old GNU headers keep times.
    if (magic == absl::string_view("ustar\0" "00", 8)) {
      const std::string prefix = Text(block, kPrefix);
      if (!prefix.empty()) name = absl::StrCat(prefix, "/", name);
    }
    if (!long_name.empty()) name = long_name;
    if (!pax_path.empty()) name = pax_path;
    std::string link = Text(block, kLinkName);
    if (!long_link.empty()) link = long_link;
    if (!pax_link.empty()) link = pax_link;
    long_name.clear();
    long_link.clear();
    pax_path.clear();
    pax_link.clear();
    has_pax_size = false;

    if (!Components(name, &parts)) return refuse("absolute path or `..` component", name);
    const std::string path = Join(parts);
    // Every proper prefix: a symlink there would be followed by tar.
    for (size_t i = 1; i < parts.size(); ++i) {
      std::vector<std::string> prefix(parts.begin(), parts.begin() + static_cast<long>(i));
      if (symlinks.count(Join(prefix))) {
        return refuse(absl::StrCat("lies below the symlink `", Join(prefix), "`"), name);
      }
    }
    if (symlinks.count(path)) return refuse("replaces a symlink of the archive", name);
    uint64_t mode = 0;
    if (!Number(Raw(block, kMode), &mode)) return refuse("bad mode field", name);

    switch (type) {
      case '0':
      case '\0':
      case '7':
        if (parts.empty()) return refuse("the root is not a directory", name);
        if ((mode & 06000) != 0) return refuse("setuid or setgid bit", name);
        regular_files.insert(path);
        break;
      case '5':
        break;
      case '2':
        if (parts.empty()) return refuse("the root is a symlink", name);
        if (!TargetStaysInside(parts, link)) {
          return refuse(absl::StrCat("symlink target `", link, "` leaves the root"), name);
        }
        symlinks.insert(path);
        regular_files.erase(path);
        break;
      case '1': {
        std::vector<std::string> target;
        if (!Components(link, &target) || !regular_files.count(Join(target))) {
          return refuse(absl::StrCat("hard link to `", link,
                                     "`, which is not an earlier regular file of the archive"),
                        name);
        }
        break;
      }
      case '3': {
        uint64_t major = 0, minor = 0;
        if (!Number(Raw(block, kDevMajor), &major) || !Number(Raw(block, kDevMinor), &minor)) {
          return refuse("bad device number", name);
        }
        bool allowed = false;
        for (const AllowedDevice& d : policy.char_devices) {
          allowed = allowed || (d.path == path && d.major == major && d.minor == minor);
        }
        if (!allowed) {
          return refuse(absl::StrCat("character device ", major, ":", minor,
                                     " is not one a sandbox gets"),
                        name);
        }
        break;
      }
      case '4':
        return refuse("block device", name);
      case '6':
        return refuse("fifo", name);
      case 'S':
        return refuse("sparse file", name);
      default:
        return refuse(absl::StrCat("entry type `", absl::CEscape(std::string(1, type)),
                                   "` is not allowed"),
                      name);
    }
  }
}

}  // namespace flotilla::checkpoint
