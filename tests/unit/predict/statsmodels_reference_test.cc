// Reference test: our fits against statsmodels' on the same series.
//
// The test writes the series to a temporary JSON file, runs Debian's
// /usr/bin/python3 (the interpreter that sees python3-statsmodels; the
// pyenv python3 on PATH does not) with the script below, and compares.
//
// What is compared, and why these tolerances:
//   - Holt-Winters: ExponentialSmoothing(trend="add", seasonal="add" or
//     None) with the heuristic initial states held fixed: statsmodels
//     0.13's fit() uses "heuristic" (and even "known") states only as
//     starting values and re-estimates them along with the smoothing
//     weights, and only an initialization_method="estimated" model lets
//     fix_params() pin them, so the script computes them with "heuristic"
//     and pins them on an "estimated" model. That is the same model, initialisation,
//     objective (SSE) and constraints as ours, with a different optimiser
//     (SLSQP from a grid versus our grid + Nelder–Mead). The heuristic
//     initial states are a closed form: equal to 1e-9 of the range. Our SSE may not exceed
//     statsmodels' by more than 0.1% (either optimiser may stop a hair short of the optimum, and
//     ours may find a better one). Point forecasts within 0.5% of the series' range (the brief
//     allowed 2%; the fits agree to 4 digits): where the SSE surface is flat near its optimum two
//     optimisers may stop at slightly different (α, β, γ). They are compared with Hyndman's
//     forecast computed from statsmodels' own final states, and with statsmodels' forecast() at
//     every step but h = m, 2m, ...: there statsmodels 0.13 uses the seasonal state of one season
//     earlier, s[n-m], instead of the last one, s[n] (statsmodels issue #9538, fixed upstream by PR
//     #10230); ours follows Hyndman & Athanasopoulos.
//     Intervals: statsmodels has no closed form for ExponentialSmoothing, so
//     its simulate() (20000 paths of additive normal errors, with the same σ
//     = sqrt(SSE / (n - k))) gives the 2.5% and 97.5% quantiles; ours come
//     from the closed-form variance. statsmodels 0.13's simulate() applies
//     smoothing_trend as the error-correction weight (b += β·e) whereas its
//     fit() and forecast() use b += α·β·e, so the script hands simulate()
//     α·β to make it simulate the model that was fitted (without that, its
//     paths fan out faster than the fitted model's own recursions imply). The Monte-Carlo standard
//     error of those quantiles is about 0.02 σₕ; we allow 0.15 σₕ plus the point difference.
//   - Pure AR (and ARIMA(p,1,0)): CSS on an AR model is ordinary least
//     squares, which is exactly statsmodels' AutoReg with trend "c" (on the
//     differenced series for d = 1, where the constant is the drift). Coefficients within 1e-4,
//     σ² and forecasts within 1e-4 relative, intervals (AutoReg's
//     get_prediction, d = 0) within 1e-3 relative. The brief allowed 0.05;
//     the agreement is far closer because the problem is the same
//     least-squares problem.
//   - ARMA(1,1): statsmodels no longer has a CSS estimator for MA terms
//     (statsmodels.tsa.arima_model is gone), so we compare with exact
//     maximum likelihood, ARIMA(order=(1,0,1), trend="c").fit(). CSS and
//     MLE differ by O(1/n); with n = 1000 we allow 0.05 on φ, θ and 0.05·sd
//     on the mean.
//
// When /usr/bin/python3 or statsmodels is missing the test is skipped with
// a loud reason rather than passing silently.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "predict/arima.h"
#include "predict/holt_winters.h"
#include "test_series.h"

namespace flotilla::predict {
namespace {

using nlohmann::json;

constexpr char kPython[] = "/usr/bin/python3";

constexpr char kScript[] = R"PY(
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from statsmodels.tsa.ar_model import AutoReg
from statsmodels.tsa.arima.model import ARIMA

cases = json.load(open(sys.argv[1]))
out = {}
for c in cases:
    y = np.asarray(c["series"], dtype=float)
    h = c["horizon"]
    r = {}
    if c["kind"] == "holt-winters":
        m = c["season"]
        kw = dict(trend="add", seasonal="add" if m > 1 else None,
                  seasonal_periods=m if m > 1 else None)
        init = ExponentialSmoothing(y, initialization_method="heuristic", **kw)
        # fit() treats heuristic (and even "known") states as starting values
        # and re-estimates them; only an "estimated" model accepts fixed
        # initial states, so fix the heuristic ones there: then only alpha,
        # beta and gamma are fitted, as in ours.
        fixed = {"initial_level": init._initial_level, "initial_trend": init._initial_trend}
        if m > 1:
            for i, s in enumerate(init._initial_seasonal):
                fixed[f"initial_seasonal.{i}"] = s
        mod = ExponentialSmoothing(y, initialization_method="estimated", **kw)
        with mod.fix_params(fixed):
            res = mod.fit()
        p = dict(res.params)
        forecast = list(res.forecast(h))
        # Hyndman's forecast from statsmodels' own final states: l[n] + h b[n]
        # + s[n+h-m(k+1)]. statsmodels 0.13's forecast() uses s[n-m] instead of
        # s[n] at h = m, 2m, ... (statsmodels issue #9538, fixed in PR #10230).
        lvl, slope = np.asarray(res.level)[-1], np.asarray(res.trend)[-1]
        season = np.asarray(res.season)[-m:] if m > 1 else np.zeros(1)
        from_states = [lvl + k * slope + season[(k - 1) % len(season)] for k in range(1, h + 1)]
        # simulate() applies smoothing_trend as the error-correction weight
        # (b += beta * e) while fit() and forecast() use b += alpha * beta * e:
        # give simulate alpha * beta so that it simulates the fitted model.
        res.params["smoothing_trend"] = p["smoothing_level"] * p["smoothing_trend"]
        sim = np.asarray(res.simulate(h, repetitions=20000, error="add",
                                      random_state=12345)).reshape(h, -1)
        r = dict(alpha=p["smoothing_level"], beta=p["smoothing_trend"],
                 gamma=(p["smoothing_seasonal"] if m > 1 else 0.0),
                 initial_level=p["initial_level"], initial_trend=p["initial_trend"],
                 initial_seasons=(list(np.atleast_1d(p["initial_seasons"])) if m > 1 else []),
                 sse=res.sse, forecast=forecast, from_states=from_states,
                 lower=list(np.quantile(sim, 0.025, axis=1)),
                 upper=list(np.quantile(sim, 0.975, axis=1)))
    elif c["kind"] == "ar":
        p, d = c["p"], c["d"]
        w = np.diff(y, n=d) if d else y
        res = AutoReg(w, lags=p, trend="c" if d <= 1 else "n", old_names=False).fit()
        params = np.asarray(res.params)
        ar = params[1:] if d <= 1 else params
        mean = float(params[0]) / (1 - ar.sum()) if d <= 1 else 0.0
        fc = np.asarray(res.forecast(h))
        if d == 0:
            f = res.get_prediction(start=len(w), end=len(w) + h - 1).summary_frame(alpha=0.05)
            r.update(lower=list(f["mean_ci_lower"]), upper=list(f["mean_ci_upper"]))
        else:
            fc = y[-1] + np.cumsum(fc)
        r.update(ar=list(ar), mean=mean, sigma2=float(res.sigma2), forecast=list(fc))
    elif c["kind"] == "arma-mle":
        res = ARIMA(y, order=(c["p"], 0, c["q"]), trend="c").fit()
        params = np.asarray(res.params)
        r = dict(mean=float(params[0]), ar=list(params[1:1 + c["p"]]),
                 ma=list(params[1 + c["p"]:1 + c["p"] + c["q"]]),
                 forecast=list(res.forecast(h)))
    out[c["name"]] = r
json.dump(out, open(sys.argv[2], "w"))
)PY";

struct Case {
  std::string name;
  std::string kind;
  std::vector<double> series;
  int horizon = 12;
  int season = 0;
  int p = 0, d = 0, q = 0;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  cases.push_back({"airline", "holt-winters", testing::AirlinePassengers(), 24, 12});
  cases.push_back(
      {"weekly", "holt-winters", testing::Seasonal(140, 7, 50, 0.3, 10, 1.5, /*seed=*/11), 14, 7});
  cases.push_back({"holt", "holt-winters", testing::Seasonal(120, 1000, 20, 0.5, 0, 2, 12), 10, 0});
  Case ar2{"ar2", "ar", testing::Arma({0.6, -0.3}, {}, 10, 1, 500, /*seed=*/21), 8};
  ar2.p = 2;
  cases.push_back(ar2);
  Case ar3{"ar3", "ar", testing::Arma({0.5, 0.2, -0.25}, {}, -3, 2, 400, 22), 6};
  ar3.p = 3;
  cases.push_back(ar3);
  Case ari{"ari210", "ar", testing::Integrate(testing::Arma({0.5, -0.2}, {}, 0.1, 1, 300, 23), 100),
           8};
  ari.p = 2;
  ari.d = 1;
  cases.push_back(ari);
  Case arma{"arma11", "arma-mle", testing::Arma({0.7}, {0.4}, 5, 1, 1000, 24), 6};
  arma.p = 1;
  arma.q = 1;
  cases.push_back(arma);
  return cases;
}

class StatsmodelsReferenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new json();
    if (std::system((std::string(kPython) + " -c 'import statsmodels' >/dev/null 2>&1").c_str()) !=
        0) {
      skip_reason_ = new std::string(
          "LOUD SKIP: /usr/bin/python3 with statsmodels is not available "
          "(apt-get install python3-statsmodels); the forecasts were NOT checked against it");
      return;
    }
    char dir_template[] = "/tmp/flotilla-predict-ref-XXXXXX";
    const char* dir = mkdtemp(dir_template);
    if (dir == nullptr) {
      error_ = new std::string("mkdtemp failed");
      return;
    }
    const std::string base = dir;
    json cases = json::array();
    for (const Case& c : Cases()) {
      cases.push_back({{"name", c.name},
                       {"kind", c.kind},
                       {"series", c.series},
                       {"horizon", c.horizon},
                       {"season", c.season},
                       {"p", c.p},
                       {"d", c.d},
                       {"q", c.q}});
    }
    std::ofstream(base + "/cases.json") << cases.dump();
    std::ofstream(base + "/reference.py") << kScript;
    const std::string cmd = std::string(kPython) + " " + base + "/reference.py " + base +
                            "/cases.json " + base + "/out.json 2>" + base + "/stderr.txt";
    const int rc = std::system(cmd.c_str());
    std::stringstream err;
    err << std::ifstream(base + "/stderr.txt").rdbuf();
    if (rc != 0) {
      error_ = new std::string("the statsmodels reference script failed (exit status " +
                               std::to_string(rc) + "): " + err.str());
    } else {
      std::ifstream in(base + "/out.json");
      *reference_ = json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (reference_->is_discarded()) error_ = new std::string("unreadable reference JSON");
    }
    std::system(("rm -rf " + base).c_str());
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete skip_reason_;
    delete error_;
    reference_ = nullptr;
    skip_reason_ = nullptr;
    error_ = nullptr;
  }
  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << *skip_reason_;
    if (error_ != nullptr) FAIL() << *error_;
  }

  static const Case& Find(const std::string& name) {
    static const std::vector<Case> cases = Cases();
    for (const Case& c : cases) {
      if (c.name == name) return c;
    }
    std::abort();
  }

  static void CheckHoltWinters(const std::string& name) {
    const Case& c = Find(name);
    const json& ref = (*reference_)[name];
    HoltWintersForecaster model(c.season);
    ASSERT_TRUE(model.Fit(c.series).ok());
    const HoltWintersParams& p = model.params();
    const double range = *std::max_element(c.series.begin(), c.series.end()) -
                         *std::min_element(c.series.begin(), c.series.end());

    // Initial states: a closed form, so equal.
    EXPECT_NEAR(p.initial_level, ref["initial_level"].get<double>(), 1e-9 * range);
    EXPECT_NEAR(p.initial_trend, ref["initial_trend"].get<double>(), 1e-9 * range);
    const auto seasons = ref["initial_seasons"].get<std::vector<double>>();
    ASSERT_EQ(p.initial_seasonals.size(), seasons.size());
    for (size_t i = 0; i < seasons.size(); ++i) {
      EXPECT_NEAR(p.initial_seasonals[i], seasons[i], 1e-9 * range) << "season " << i;
    }

    const double ref_sse = ref["sse"].get<double>();
    EXPECT_LE(model.sse(), ref_sse * 1.001) << name;

    auto forecast = model.Forecast(c.horizon, 0.95);
    ASSERT_TRUE(forecast.ok());
    const auto sm_forecast = ref["forecast"].get<std::vector<double>>();
    const auto mean = ref["from_states"].get<std::vector<double>>();
    const auto lower = ref["lower"].get<std::vector<double>>();
    const auto upper = ref["upper"].get<std::vector<double>>();
    double worst_point = 0, worst_interval = 0;
    for (int h = 0; h < c.horizon; ++h) {
      const ForecastPoint& f = (*forecast)[h];
      const double point_diff = std::abs(f.mean - mean[h]);
      EXPECT_LE(point_diff, 0.005 * range) << name << " step " << h + 1;
      if (c.season == 0 || (h + 1) % c.season != 0) {
        EXPECT_LE(std::abs(f.mean - sm_forecast[h]), 0.005 * range) << name << " step " << h + 1;
      }
      const double tol = 0.15 * f.stddev + point_diff;
      EXPECT_NEAR(f.lower, lower[h], tol) << name << " step " << h + 1;
      EXPECT_NEAR(f.upper, upper[h], tol) << name << " step " << h + 1;
      worst_point = std::max(worst_point, point_diff / range);
      worst_interval =
          std::max(worst_interval,
                   std::max(std::abs(f.lower - lower[h]), std::abs(f.upper - upper[h])) / f.stddev);
    }
    std::printf(
        "[%s] ours: alpha %.4f beta %.4f gamma %.4f SSE %.2f | statsmodels: alpha %.4f beta %.4f "
        "gamma %.4f SSE %.2f | max point diff %.1e of range, max interval diff %.3f sd\n",
        name.c_str(), p.alpha, p.beta, p.gamma, model.sse(), ref["alpha"].get<double>(),
        ref["beta"].get<double>(), ref["gamma"].get<double>(), ref_sse, worst_point,
        worst_interval);
  }

  static void CheckAr(const std::string& name) {
    const Case& c = Find(name);
    const json& ref = (*reference_)[name];
    ArimaForecaster model({c.p, c.d, 0});
    ASSERT_TRUE(model.Fit(c.series).ok());
    const auto ar = ref["ar"].get<std::vector<double>>();
    ASSERT_EQ(model.ar().size(), ar.size());
    double worst_coef = 0;
    for (size_t i = 0; i < ar.size(); ++i) {
      EXPECT_NEAR(model.ar()[i], ar[i], 1e-4) << name << " ar" << i + 1;
      worst_coef = std::max(worst_coef, std::abs(model.ar()[i] - ar[i]));
    }
    if (c.d <= 1) {
      EXPECT_NEAR(model.mean(), ref["mean"].get<double>(), 1e-4);
    }
    EXPECT_NEAR(model.sigma2(), ref["sigma2"].get<double>(), 1e-4 * ref["sigma2"].get<double>());
    auto forecast = model.Forecast(c.horizon, 0.95);
    ASSERT_TRUE(forecast.ok());
    const auto mean = ref["forecast"].get<std::vector<double>>();
    double worst_point = 0, worst_interval = 0;
    for (int h = 0; h < c.horizon; ++h) {
      const ForecastPoint& f = (*forecast)[h];
      EXPECT_NEAR(f.mean, mean[h], 1e-4 * std::max(1.0, std::abs(mean[h])))
          << name << " step " << h + 1;
      worst_point = std::max(worst_point, std::abs(f.mean - mean[h]));
      if (c.d == 0) {
        const double lo = ref["lower"][h].get<double>(), hi = ref["upper"][h].get<double>();
        EXPECT_NEAR(f.lower, lo, 1e-3 * (hi - lo)) << name << " step " << h + 1;
        EXPECT_NEAR(f.upper, hi, 1e-3 * (hi - lo)) << name << " step " << h + 1;
        worst_interval = std::max({worst_interval, std::abs(f.lower - lo), std::abs(f.upper - hi)});
      }
    }
    std::printf(
        "[%s] max |coef diff| vs AutoReg %.2e, max |forecast diff| %.2e, max |interval bound "
        "diff| %.2e\n",
        name.c_str(), worst_coef, worst_point, worst_interval);
  }

  static json* reference_;
  static std::string* skip_reason_;
  static std::string* error_;
};

json* StatsmodelsReferenceTest::reference_ = nullptr;
std::string* StatsmodelsReferenceTest::skip_reason_ = nullptr;
std::string* StatsmodelsReferenceTest::error_ = nullptr;

TEST_F(StatsmodelsReferenceTest, HoltWintersAirlinePassengers) { CheckHoltWinters("airline"); }
TEST_F(StatsmodelsReferenceTest, HoltWintersSyntheticWeekly) { CheckHoltWinters("weekly"); }
TEST_F(StatsmodelsReferenceTest, HoltLinearWithoutSeason) { CheckHoltWinters("holt"); }
TEST_F(StatsmodelsReferenceTest, Ar2MatchesAutoReg) { CheckAr("ar2"); }
TEST_F(StatsmodelsReferenceTest, Ar3MatchesAutoReg) { CheckAr("ar3"); }
TEST_F(StatsmodelsReferenceTest, Arima210MatchesAutoRegOnDifferences) { CheckAr("ari210"); }

TEST_F(StatsmodelsReferenceTest, Arma11CssCloseToExactMle) {
  const Case& c = Find("arma11");
  const json& ref = (*reference_)["arma11"];
  ArimaForecaster model({1, 0, 1});
  ASSERT_TRUE(model.Fit(c.series).ok());
  const double phi = ref["ar"][0].get<double>(), theta = ref["ma"][0].get<double>();
  EXPECT_NEAR(model.ar()[0], phi, 0.05);
  EXPECT_NEAR(model.ma()[0], theta, 0.05);
  EXPECT_NEAR(model.mean(), ref["mean"].get<double>(), 0.05 * std::sqrt(model.sigma2()));
  auto forecast = model.Forecast(c.horizon, 0.95);
  ASSERT_TRUE(forecast.ok());
  const auto mean = ref["forecast"].get<std::vector<double>>();
  double worst = 0;
  for (int h = 0; h < c.horizon; ++h) {
    worst = std::max(worst, std::abs((*forecast)[h].mean - mean[h]));
    EXPECT_NEAR((*forecast)[h].mean, mean[h], 0.1 * std::sqrt(model.sigma2()));
  }
  std::printf(
      "[arma11] CSS: phi %.4f theta %.4f mean %.4f | MLE: phi %.4f theta %.4f mean %.4f | max "
      "|forecast diff| %.4f (sd %.3f)\n",
      model.ar()[0], model.ma()[0], model.mean(), phi, theta, ref["mean"].get<double>(), worst,
      std::sqrt(model.sigma2()));
}

}  // namespace
}  // namespace flotilla::predict
