// Series shared by the predict/ tests: deterministic generators (a fixed
// seed and our own Box–Muller, so every platform sees the same numbers) and
// the classic airline passengers data.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace flotilla::predict::testing {

// Standard normal draws from mt19937_64 via Box–Muller: unlike
// std::normal_distribution, the sequence is fixed by the standard.
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  double operator()() {
    const double u1 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53;
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
  }

 private:
  std::mt19937_64 rng_;
};

// y[t] = mean + Σ φᵢ (y[t-i] - mean) + e[t] + Σ θⱼ e[t-j], e ~ N(0, sd²),
// after a burn-in of 200 steps.
inline std::vector<double> Arma(const std::vector<double>& phi, const std::vector<double>& theta,
                                double mean, double sd, int n, uint64_t seed) {
  Normal normal(seed);
  const int burn = 200;
  std::vector<double> x(n + burn, 0.0), e(n + burn, 0.0);
  for (int t = 0; t < n + burn; ++t) {
    e[t] = sd * normal();
    double v = e[t];
    for (size_t i = 1; i <= phi.size(); ++i) {
      if (t >= static_cast<int>(i)) v += phi[i - 1] * x[t - i];
    }
    for (size_t j = 1; j <= theta.size(); ++j) {
      if (t >= static_cast<int>(j)) v += theta[j - 1] * e[t - j];
    }
    x[t] = v;
  }
  std::vector<double> y(x.begin() + burn, x.end());
  for (double& v : y) v += mean;
  return y;
}

// Cumulative sum starting at `start`: integrates a stationary series once.
inline std::vector<double> Integrate(const std::vector<double>& w, double start) {
  std::vector<double> y;
  double level = start;
  for (double v : w) {
    level += v;
    y.push_back(level);
  }
  return y;
}

// level + slope·t + amplitude·sin(2πt/season) + noise·N(0,1).
inline std::vector<double> Seasonal(int n, int season, double level, double slope, double amplitude,
                                    double noise, uint64_t seed) {
  Normal normal(seed);
  std::vector<double> y(n);
  for (int t = 0; t < n; ++t) {
    y[t] = level + slope * t + amplitude * std::sin(2 * M_PI * t / season) + noise * normal();
  }
  return y;
}

// Box & Jenkins' monthly international airline passengers, 1949-1960
// (thousands): the classic test series for seasonal models.
inline std::vector<double> AirlinePassengers() {
  return {112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149,
          170, 170, 158, 133, 114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166,
          171, 180, 193, 181, 183, 218, 230, 242, 209, 191, 172, 194, 196, 196, 236, 235, 229, 243,
          264, 272, 237, 211, 180, 201, 204, 188, 235, 227, 234, 264, 302, 293, 259, 229, 203, 229,
          242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278, 284, 277, 317, 313, 318, 374,
          413, 405, 355, 306, 271, 306, 315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336,
          340, 318, 362, 348, 363, 435, 491, 505, 404, 359, 310, 337, 360, 342, 406, 396, 420, 472,
          548, 559, 463, 407, 362, 405, 417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432};
}

// A usage trace with three regimes (idle ≈ 5, steady ≈ 40, burst ≈ 90, sd
// 2): runs of `run` steps cycling idle → steady → burst → steady → idle...
// `states` receives the true regime of each step.
inline std::vector<double> ThreeRegimes(int n, int run, uint64_t seed, std::vector<int>* states) {
  Normal normal(seed);
  const int cycle[] = {0, 1, 2, 1};
  const double means[] = {5, 40, 90};
  std::vector<double> y(n);
  states->assign(n, 0);
  for (int t = 0; t < n; ++t) {
    const int s = cycle[(t / run) % 4];
    (*states)[t] = s;
    y[t] = means[s] + 2 * normal();
  }
  return y;
}

}  // namespace flotilla::predict::testing
