#include "predict/nelder_mead.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace flotilla::predict {
namespace {

// NaN compares false with everything; treat it as the worst value so the
// simplex moves away from it.
double Sanitise(double v) { return std::isnan(v) ? std::numeric_limits<double>::infinity() : v; }

}  // namespace

NelderMeadResult NelderMead(absl::FunctionRef<double(std::span<const double>)> f,
                            std::vector<double> start, const NelderMeadOptions& options) {
  const size_t n = start.size();
  NelderMeadResult result;
  if (n == 0) {
    result.x = start;
    result.value = Sanitise(f(start));
    result.evaluations = 1;
    result.converged = true;
    return result;
  }
  int evals = 0;
  auto eval = [&](const std::vector<double>& x) {
    ++evals;
    return Sanitise(f(x));
  };

  std::vector<std::vector<double>> simplex(n + 1, start);
  for (size_t i = 0; i < n; ++i) simplex[i + 1][i] += options.initial_step;
  std::vector<double> values(n + 1);
  for (size_t i = 0; i <= n; ++i) values[i] = eval(simplex[i]);

  std::vector<size_t> order(n + 1);
  std::vector<double> centroid(n), trial(n), trial2(n);
  auto point = [&](double t, std::vector<double>& out) {
    // centroid + t · (centroid − worst)
    const std::vector<double>& worst = simplex[order[n]];
    for (size_t j = 0; j < n; ++j) out[j] = centroid[j] + t * (centroid[j] - worst[j]);
  };

  bool converged = false;
  while (evals < options.max_evaluations) {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return values[a] < values[b]; });
    const double best = values[order[0]];
    const double worst = values[order[n]];
    double size = 0;
    for (size_t i = 1; i <= n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        size = std::max(size, std::abs(simplex[order[i]][j] - simplex[order[0]][j]));
      }
    }
    if (std::isfinite(worst) &&
        worst - best <= options.ftol_abs + options.ftol_rel * std::abs(best) &&
        size <= options.xtol) {
      converged = true;
      break;
    }
    if (size <= options.xtol * 1e-3) {  // collapsed onto a point: nothing left to learn
      converged = true;
      break;
    }

    std::fill(centroid.begin(), centroid.end(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) centroid[j] += simplex[order[i]][j] / n;
    }
    const double second_worst = values[order[n - 1]];

    point(1.0, trial);
    const double fr = eval(trial);
    if (fr < best) {
      point(2.0, trial2);
      const double fe = eval(trial2);
      if (fe < fr) {
        simplex[order[n]] = trial2;
        values[order[n]] = fe;
      } else {
        simplex[order[n]] = trial;
        values[order[n]] = fr;
      }
      continue;
    }
    if (fr < second_worst) {
      simplex[order[n]] = trial;
      values[order[n]] = fr;
      continue;
    }
    // Contract: outside when the reflection beat the worst, inside otherwise.
    const bool outside = fr < worst;
    point(outside ? 0.5 : -0.5, trial2);
    const double fc = eval(trial2);
    if (fc < (outside ? fr : worst)) {
      simplex[order[n]] = trial2;
      values[order[n]] = fc;
      continue;
    }
    // Shrink towards the best vertex.
    const std::vector<double> b = simplex[order[0]];
    for (size_t i = 1; i <= n; ++i) {
      std::vector<double>& v = simplex[order[i]];
      for (size_t j = 0; j < n; ++j) v[j] = b[j] + 0.5 * (v[j] - b[j]);
      values[order[i]] = eval(v);
    }
  }

  const size_t best = std::min_element(values.begin(), values.end()) - values.begin();
  result.x = simplex[best];
  result.value = values[best];
  result.evaluations = evals;
  result.converged = converged;
  return result;
}

}  // namespace flotilla::predict
