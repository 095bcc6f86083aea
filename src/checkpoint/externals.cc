#include "checkpoint/externals.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace flotilla::checkpoint {
namespace {

// Mountinfo escapes blanks and backslashes as \ooo.
std::string Unescape(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = field[i + j];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoError(errno, "open", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool NoBlank(absl::string_view s) { return s.find_first_of(" \t\n") == absl::string_view::npos; }

absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) return ErrnoError(errno, "readlink", path);
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

bool IsOwnFilesystem(absl::string_view fstype) {
  static const std::set<std::string, std::less<>> kOwn = {"tmpfs", "proc",   "devpts", "mqueue",
                                                          "sysfs", "cgroup", "cgroup2"};
  return kOwn.count(fstype) > 0;
}

absl::StatusOr<std::vector<ExternalMount>> ParseExternalMounts(absl::string_view mountinfo,
                                                               absl::string_view host_root_dev) {
  std::vector<ExternalMount> out;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t dash = 0;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (fields.size() < 6 || dash + 1 >= fields.size()) {
      return absl::InvalidArgumentError(absl::StrCat("mountinfo line `", line, "` is malformed"));
    }
    const std::string mountpoint = Unescape(fields[4]);
    if (mountpoint == "/" || IsOwnFilesystem(fields[dash + 1])) continue;
    if (fields[2] != host_root_dev) {
      return absl::UnimplementedError(absl::StrCat(
          "unsupported resource: mount `", mountpoint, "` (", fields[dash + 1], " ", fields[2],
          ") is not a bind from the host's root filesystem (", host_root_dev, ")"));
    }
    std::string host_path = Unescape(fields[3]);
    if (!NoBlank(mountpoint) || !NoBlank(host_path)) {
      return absl::UnimplementedError(
          absl::StrCat("unsupported resource: mount `", mountpoint, "` has blanks in its path"));
    }
    out.push_back({absl::StrCat("m", out.size()), mountpoint, host_path});
  }
  return out;
}

std::string Manifest::Serialize() const {
  std::string out = "flotilla-checkpoint 1\n";
  absl::StrAppend(&out, "channel ", channel_inode, "\n", "netns ", netns_inode, "\n",
                  "root_bytes ", root_bytes, "\n");
  for (const ExternalMount& m : mounts) {
    absl::StrAppend(&out, "mount ", m.key, " ", m.mountpoint, " ", m.host_path, "\n");
  }
  for (const ExternalFile& f : files) absl::StrAppend(&out, "file ", f.key, " ", f.path, "\n");
  return out;
}

absl::StatusOr<Manifest> Manifest::Parse(absl::string_view text) {
  Manifest m;
  bool header = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    auto bad = [&] {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint manifest line `", line, "` is malformed"));
    };
    if (f[0] == "flotilla-checkpoint") {
      if (f.size() != 2 || f[1] != "1") {
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint manifest version `", line, "` is not supported (want 1)"));
      }
      header = true;
    } else if (f[0] == "channel" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &m.channel_inode)) return bad();
    } else if (f[0] == "netns" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &m.netns_inode)) return bad();
    } else if (f[0] == "root_bytes" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &m.root_bytes)) return bad();
    } else if (f[0] == "mount" && f.size() == 4) {
      m.mounts.push_back({f[1], f[2], f[3]});
    } else if (f[0] == "file" && f.size() == 3) {
      m.files.push_back({f[1], f[2]});
    } else {
      return bad();
    }
  }
  if (!header) return absl::InvalidArgumentError("checkpoint manifest has no header line");
  if (m.channel_inode == 0 || m.netns_inode == 0) {
    return absl::InvalidArgumentError("checkpoint manifest lacks the channel or netns inode");
  }
  return m;
}

namespace {

// An absolute path with no empty, `.` or `..` component, no blank or
// control character (CRIU's option syntax and our manifest's lines split on
// them) and no `[`, `]` or `:` (CRIU's --external syntax).
bool CleanAbsolute(absl::string_view path) {
  if (path.size() < 2 || path.size() > 4096 || path.front() != '/' || path.back() == '/') {
    return false;
  }
  for (char c : path) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f || c == '[' || c == ']' || c == ':' || c == '\\') return false;
  }
  for (absl::string_view part : absl::StrSplit(path.substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool AtOrBelow(absl::string_view path, absl::string_view base) {
  return path == base || (absl::StartsWith(path, base) && path.size() > base.size() &&
                          (base == "/" || path[base.size()] == '/'));
}

bool AllOf(absl::string_view s, absl::string_view chars) {
  return !s.empty() && s.find_first_not_of(chars) == absl::string_view::npos;
}

}  // namespace

ManifestPolicy DefaultManifestPolicy() {
  ManifestPolicy policy;
  policy.bind_sources = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
                         "/etc/ld.so.cache", "/etc/alternatives"};
  return policy;
}

absl::Status ValidateManifest(const Manifest& m, const ManifestPolicy& policy) {
  auto refuse = [](absl::string_view field, absl::string_view value, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint manifest: ", field, " `",
                                                   absl::CHexEscape(value), "` ", why));
  };
  if (m.root_bytes < 4096 || m.root_bytes > policy.max_root_bytes) {
    return refuse("root_bytes", absl::StrCat(m.root_bytes),
                  absl::StrCat("is outside 4096..", policy.max_root_bytes));
  }
  if (m.mounts.size() > policy.max_mounts) {
    return refuse("mount", absl::StrCat(m.mounts.size(), " entries"),
                  absl::StrCat("exceeds ", policy.max_mounts));
  }
  std::set<std::string> keys;
  for (const ExternalMount& mount : m.mounts) {
    absl::string_view key = mount.key;
    if (!absl::ConsumePrefix(&key, "m") || key.size() > 6 || !AllOf(key, "0123456789") ||
        !keys.insert(mount.key).second) {
      return refuse("mount key", mount.key, "is not a unique m<number>");
    }
    if (!CleanAbsolute(mount.mountpoint)) {
      return refuse("mount point", mount.mountpoint,
                    "is not a clean absolute path inside the sandbox's root");
    }
    for (const char* own : {"/proc", "/sys", "/dev"}) {
      if (AtOrBelow(mount.mountpoint, own)) {
        return refuse("mount point", mount.mountpoint,
                      absl::StrCat("lies in ", own, ", which the sandbox makes for itself"));
      }
    }
    bool allowed = false;
    for (const std::string& source : policy.bind_sources) {
      allowed = allowed || AtOrBelow(mount.host_path, source);
    }
    if (!CleanAbsolute(mount.host_path) || !allowed) {
      return refuse("mount host path", mount.host_path,
                    "is not a path this agent binds into sandboxes");
    }
  }
  for (const ExternalFile& f : m.files) {
    absl::string_view key = f.key;
    const size_t colon = key.find(':');
    if (!absl::ConsumePrefix(&key, "file[") || !absl::ConsumeSuffix(&key, "]") ||
        colon == absl::string_view::npos || key.size() > 40 ||
        !AllOf(key.substr(0, key.find(':')), "0123456789abcdef") ||
        !AllOf(key.substr(key.find(':') + 1), "0123456789abcdef")) {
      return refuse("file key", f.key, "is not file[<hex>:<hex>]");
    }
    if (f.path != "/dev/null") {
      return refuse("file path", f.path, "is not /dev/null, the one host file a sandbox holds");
    }
  }
  if (m.files.size() > 3) {
    return refuse("file", absl::StrCat(m.files.size(), " entries"), "exceeds 3 (stdio)");
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> FindExternals(const std::string& proc_dir, pid_t init_pid,
                                       int channel_fd) {
  const std::string pid_dir = absl::StrCat(proc_dir, "/", init_pid);
  Manifest manifest;

  struct stat root_st;
  if (stat("/", &root_st) != 0) return ErrnoError(errno, "stat", "/");
  const std::string root_dev = absl::StrCat(major(root_st.st_dev), ":", minor(root_st.st_dev));
  ASSIGN_OR_RETURN(std::string mountinfo, ReadFile(pid_dir + "/mountinfo"));
  ASSIGN_OR_RETURN(manifest.mounts, ParseExternalMounts(mountinfo, root_dev));
  std::set<std::string> own_mount_ids;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    own_mount_ids.insert(std::string(line.substr(0, line.find(' '))));
  }

  ASSIGN_OR_RETURN(std::string channel_link, ReadLink(absl::StrCat(pid_dir, "/fd/", channel_fd)));
  absl::string_view channel = channel_link;
  if (!absl::ConsumePrefix(&channel, "socket:[") || !absl::ConsumeSuffix(&channel, "]") ||
      !absl::SimpleAtoi(channel, &manifest.channel_inode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("fd ", channel_fd, " of pid ", init_pid, " is not the guest's socket"));
  }
  struct stat netns;
  if (stat((pid_dir + "/ns/net").c_str(), &netns) != 0) {
    return ErrnoError(errno, "stat", pid_dir + "/ns/net");
  }
  manifest.netns_inode = netns.st_ino;

  // The init's stdio was opened on the host before pivot_root.
  for (int fd = 0; fd <= 2; ++fd) {
    const std::string link = absl::StrCat(pid_dir, "/fd/", fd);
    auto target = ReadLink(link);
    if (!target.ok()) continue;  // closed
    ASSIGN_OR_RETURN(std::string fdinfo, ReadFile(absl::StrCat(pid_dir, "/fdinfo/", fd)));
    std::string mnt_id;
    for (absl::string_view line : absl::StrSplit(fdinfo, '\n')) {
      if (absl::ConsumePrefix(&line, "mnt_id:")) mnt_id = std::string(absl::StripAsciiWhitespace(line));
    }
    if (mnt_id.empty() || own_mount_ids.count(mnt_id)) continue;
    if (*target != "/dev/null") {
      return absl::UnimplementedError(absl::StrCat("unsupported resource: fd ", fd, " of pid ",
                                                   init_pid, " (", *target,
                                                   ") is a file from outside the sandbox"));
    }
    struct stat st;
    if (stat(link.c_str(), &st) != 0) return ErrnoError(errno, "stat", link);
    int mnt = 0;
    if (!absl::SimpleAtoi(mnt_id, &mnt)) return absl::InternalError("bad mnt_id in " + link);
    std::string key = absl::StrCat("file[", absl::Hex(mnt), ":", absl::Hex(st.st_ino), "]");
    bool seen = false;
    for (const ExternalFile& f : manifest.files) seen = seen || f.key == key;
    if (!seen) manifest.files.push_back({key, *target});
  }
  return manifest;
}

}  // namespace flotilla::checkpoint
