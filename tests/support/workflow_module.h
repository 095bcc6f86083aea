// Python functions the workflow integration tests deploy (REST and gRPC),
// and Heavy(), which computes what heavy() returns, to check results.
#pragma once

#include <cstdint>

namespace flotilla::testing {

// heavy(n) is CPU work; its results are easy to compute here too.
constexpr const char* kModule = R"py(
import time
import flotilla

def heavy(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def sleepy(x, seconds):
    time.sleep(seconds)
    return x * 10

@flotilla.splitable
def fan(xs):
    out = [heavy(x) for x in xs]
    return sum(out)

@flotilla.splitable
def diamond(n):
    a = heavy(n)
    b = heavy(n + 1)
    return (a, b, a + b)

@flotilla.splitable
def slow_fan(xs, seconds):
    out = [sleepy(x, seconds) for x in xs]
    return sum(out)

@flotilla.splitable
def branch_fails(n):
    a = heavy(n)
    b = int("not a number") if n > 0 else 0
    return a + b

def where(_):
    import socket
    return socket.gethostname()

def nap(seconds):
    time.sleep(seconds)
    return "rested"
)py";

inline int64_t Heavy(int64_t n) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += i * i;
  return s;
}

}  // namespace flotilla::testing
