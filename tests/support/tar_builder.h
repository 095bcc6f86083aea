// TarBuilder: hand-made tar archives for the tests and the fuzz seeds of
// checkpoint/tar_check, including the malformed and hostile ones real tar
// would never write.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace flotilla::testing {

class TarBuilder {
 public:
  struct Entry {
    std::string name;
    char type = '0';
    std::string data;
    std::string link;
    unsigned mode = 0644;
    unsigned dev_major = 0;
    unsigned dev_minor = 0;
    std::string prefix;  // ustar prefix (POSIX magic only)
  };

  TarBuilder& Add(const Entry& e) {
    std::string block(512, '\0');
    Put(block, 0, 100, e.name);
    Octal(block, 100, 8, e.mode);
    Octal(block, 108, 8, 0);
    Octal(block, 116, 8, 0);
    Octal(block, 124, 12, e.data.size());
    Octal(block, 136, 12, 0);
    block[156] = e.type;
    Put(block, 157, 100, e.link);
    Put(block, 257, 8, std::string("ustar\0" "00", 8));
    Octal(block, 329, 8, e.dev_major);
    Octal(block, 337, 8, e.dev_minor);
    Put(block, 345, 155, e.prefix);
    Put(block, 148, 8, "        ");
    unsigned sum = 0;
    for (unsigned char c : block) sum += c;
    Octal(block, 148, 7, sum);
    out_ += block;
    out_ += e.data;
    out_.append((512 - e.data.size() % 512) % 512, '\0');
    return *this;
  }
  TarBuilder& File(const std::string& name, const std::string& data = "x") {
    return Add({.name = name, .type = '0', .data = data});
  }
  TarBuilder& Dir(const std::string& name) { return Add({.name = name, .type = '5', .mode = 0755}); }
  TarBuilder& Symlink(const std::string& name, const std::string& target) {
    return Add({.name = name, .type = '2', .link = target, .mode = 0777});
  }
  // A pax extended header ('x') with one record.
  TarBuilder& Pax(const std::string& key, const std::string& value) {
    std::string record = " " + key + "=" + value + "\n";
    size_t len = record.size() + 1;
    while (std::to_string(len).size() + record.size() != len) ++len;
    return Add({.name = "PaxHeader", .type = 'x', .data = std::to_string(len) + record});
  }
  std::string Finish() const { return out_ + std::string(1024, '\0'); }
  std::string Unterminated() const { return out_; }

 private:
  static void Put(std::string& block, size_t at, size_t size, const std::string& s) {
    block.replace(at, std::min(size, s.size()), s.substr(0, size));
  }
  static void Octal(std::string& block, size_t at, size_t size, uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%0*llo", static_cast<int>(size - 1),
                  static_cast<unsigned long long>(v));
    Put(block, at, size - 1, buf);
  }
  std::string out_;
};

}  // namespace flotilla::testing
