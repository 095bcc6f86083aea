// PhaseModel: a behaviour model of an execution's phases — a Gaussian hidden
// Markov model with K states over one usage series (cpu, memory...) — used
// to tell which phase an execution is in now and which it is likely to be in
// next (seed 003: "state machine learning or hidden Markov models").
//
// Model. A hidden phase z[t] ∈ {0..K-1} follows a Markov chain with
// transition matrix A and initial distribution π; the observed usage is
// y[t] | z[t] = k ~ N(μₖ, σₖ²).
//
// Fit: Baum–Welch (EM) with the scaled forward–backward recursions (Rabiner
// 1989), at most max_iterations rounds, stopping early once the
// log-likelihood gains less than tolerance·(1 + |log L|). Deterministic
// initialisation, no randomness: μₖ = the (k + ½)/K quantile of the series,
// σₖ² = the variance of the values nearest to μₖ (a one-pass k-means-like
// split at the midpoints between sorted means), A = 0.9 on the diagonal and
// the rest spread evenly, π uniform. Each σₖ² is floored at
// 1e-4·var(y) + 1e-12 so that a state cannot collapse onto one repeated
// value. After fitting, states are renumbered by increasing mean, so with
// K = 3 state 0 is "idle", 1 "steady" and 2 "burst".
//
// Decoding: Viterbi gives the most likely state path; the current phase is
// its last state. NextPhaseDistribution is P(z[n+1] | y[1..n]) = (filtered
// P(z[n] | y[1..n]))ᵀ A.
//
// Pure; thread-compatible.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::predict {

struct PhaseModelOptions {
  int states = 3;
  int max_iterations = 100;
  double tolerance = 1e-8;
};

class PhaseModel {
 public:
  explicit PhaseModel(PhaseModelOptions options = {}) : options_(options) {}

  // Fits the model to `series`. InvalidArgument when states is outside
  // 1..10, max_iterations < 1, the series has fewer than 3·K observations
  // or holds a NaN/infinity.
  absl::Status Fit(std::span<const double> series);

  // The most likely state path of `series` under the fitted model (Viterbi).
  // FailedPrecondition before Fit; InvalidArgument for an empty series or a
  // non-finite value.
  absl::StatusOr<std::vector<int>> Decode(std::span<const double> series) const;

  // The last state of the Viterbi path of the fitted series.
  int CurrentPhase() const { return current_phase_; }

  // P(next phase = k) after the fitted series, or after `recent` (a newer
  // stretch of the same execution's usage, decoded with the fitted model).
  std::vector<double> NextPhaseDistribution() const { return next_; }
  absl::StatusOr<std::vector<double>> NextPhaseDistribution(std::span<const double> recent) const;

  // The mean usage expected at the next step: Σₖ P(next = k) μₖ.
  double ExpectedNextValue() const;

  const std::vector<double>& means() const { return mu_; }
  const std::vector<double>& variances() const { return var_; }
  const std::vector<std::vector<double>>& transitions() const { return a_; }
  const std::vector<double>& initial() const { return pi_; }
  double log_likelihood() const { return log_likelihood_; }
  int iterations() const { return iterations_; }
  bool fitted() const { return fitted_; }

  // "idle", "steady", "burst" for K = 3; "low"/"high" for K = 2; "phase k"
  // otherwise.
  std::string PhaseName(int state) const;

 private:
  // Scaled forward pass; fills alpha (n×K, each row sums to 1) and returns
  // log P(y).
  double Forward(std::span<const double> y, std::vector<double>& alpha) const;
  double Emission(int k, double y) const;

  PhaseModelOptions options_;
  bool fitted_ = false;
  std::vector<double> mu_, var_, pi_;
  std::vector<std::vector<double>> a_;
  double log_likelihood_ = 0;
  int iterations_ = 0;
  int current_phase_ = 0;
  std::vector<double> next_;
};

}  // namespace flotilla::predict
