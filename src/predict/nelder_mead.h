// Nelder–Mead simplex minimisation of a function of a few variables, used
// to fit the smoothing parameters of Holt-Winters (and available to any
// model whose objective has no convenient derivative).
//
// Standard coefficients (reflection 1, expansion 2, contraction 0.5, shrink
// 0.5; Lagarias et al. 1998). The search stops when the spread of f over the
// simplex falls below ftol_abs + ftol_rel·|f_best| and the simplex is smaller
// than xtol in every coordinate, or after max_evaluations calls of f.
// Constraints are the caller's: map an unconstrained x onto the feasible set
// inside f, or return +infinity outside it.
//
// Pure and deterministic: the same f and start give the same result.
#pragma once

#include <span>
#include <vector>

#include "absl/functional/function_ref.h"

namespace flotilla::predict {

struct NelderMeadOptions {
  double initial_step = 0.1;  // the simplex's edge along each axis
  double ftol_rel = 1e-12;
  double ftol_abs = 1e-14;
  double xtol = 1e-9;
  int max_evaluations = 4000;
};

struct NelderMeadResult {
  std::vector<double> x;
  double value = 0;
  int evaluations = 0;
  bool converged = false;  // false: stopped by max_evaluations
};

NelderMeadResult NelderMead(absl::FunctionRef<double(std::span<const double>)> f,
                            std::vector<double> start, const NelderMeadOptions& options = {});

}  // namespace flotilla::predict
