#include "cli/forecast_command.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/output.h"
#include "predict/auto_forecaster.h"
#include "predict/forecaster.h"
#include "predict/metrics.h"
#include "predict/series_text.h"

namespace flotilla::cli {
namespace {

struct ForecastFlags {
  std::string model = "auto";
  int season = 0;
  int horizon = 0;
  double level = 0.95;
  std::string order;  // "p,d,q"
  bool json = false;
};

int FailForecast(const absl::Status& st) {
  std::fprintf(stderr, "flotilla forecast: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

// "2,1,0" -> p, d, q.
absl::Status ParseOrder(const std::string& text, predict::ForecasterSpec& spec) {
  std::vector<std::string> parts = absl::StrSplit(text, ',');
  int v[3];
  bool ok = parts.size() == 3;
  for (size_t i = 0; ok && i < 3; ++i) ok = absl::SimpleAtoi(parts[i], &v[i]);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("--order \"", text, "\": give three integers p,d,q, e.g. --order 2,1,0"));
  }
  spec.p = v[0];
  spec.d = v[1];
  spec.q = v[2];
  return absl::OkStatus();
}

std::string Number(double v) { return absl::StrFormat("%.6g", v); }

// The one-step in-sample MASE, scaled by the (seasonal) naive method; NaN
// when the model has no in-sample predictions.
double InSampleMase(const std::vector<double>& series, const std::vector<double>& fitted,
                    int season) {
  if (fitted.size() != series.size()) return std::nan("");
  auto mase = predict::MASE(series, fitted, series, std::max(season, 1));
  return mase.ok() ? *mase : std::nan("");
}

nlohmann::ordered_json JsonNumber(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

int RunForecast(const ForecastFlags& f, bool json, std::istream& in) {
  predict::ForecasterSpec spec;
  spec.model = f.model;
  spec.season = f.season;
  if (!f.order.empty()) {
    if (absl::Status st = ParseOrder(f.order, spec); !st.ok()) return FailForecast(st);
  }
  auto model = predict::MakeForecaster(spec);
  if (!model.ok()) return FailForecast(model.status());
  if (absl::Status st = predict::ValidateForecastRequest(f.horizon, f.level); !st.ok()) {
    return FailForecast(absl::InvalidArgumentError(
        absl::StrCat(st.message(), " (--horizon H is required: the number of steps to forecast)")));
  }

  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto series = predict::ParseSeries(text);
  if (!series.ok()) {
    return FailForecast(
        absl::InvalidArgumentError(absl::StrCat("stdin ", series.status().message())));
  }
  if (series->empty()) {
    return FailForecast(absl::InvalidArgumentError(
        "no numbers on stdin; pipe in a series, one number a line (oldest first)"));
  }
  if (absl::Status st = (*model)->Fit(*series); !st.ok()) return FailForecast(st);
  auto forecast = (*model)->Forecast(f.horizon, f.level);
  if (!forecast.ok()) return FailForecast(forecast.status());

  const std::vector<predict::FittedParameter> params = (*model)->Parameters();
  const double mase = InSampleMase(*series, (*model)->FittedValues(), f.season);
  const auto* chooser = dynamic_cast<const predict::AutoForecaster*>(model->get());

  if (json) {
    nlohmann::ordered_json out;
    out["model"] = (*model)->Name();
    out["observations"] = series->size();
    out["season"] = f.season;
    out["level"] = f.level;
    out["parameters"] = nlohmann::ordered_json::object();
    for (const auto& p : params) out["parameters"][p.name] = JsonNumber(p.value);
    out["in_sample_mase"] = JsonNumber(mase);
    if (chooser != nullptr) {
      out["holdout"] = chooser->holdout();
      out["candidates"] = nlohmann::ordered_json::array();
      for (const auto& s : chooser->scores()) {
        out["candidates"].push_back({{"model", s.model},
                                     {"fitted", s.fitted},
                                     {"holdout_mase", s.fitted ? JsonNumber(s.holdout_mase)
                                                               : nlohmann::ordered_json(nullptr)}});
      }
    }
    out["forecast"] = nlohmann::ordered_json::array();
    for (const auto& p : *forecast) {
      out["forecast"].push_back({{"step", p.step},
                                 {"mean", p.mean},
                                 {"stddev", p.stddev},
                                 {"lower", p.lower},
                                 {"upper", p.upper}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::string head = absl::StrCat("model: ", (*model)->Name(), "\n");
  if (chooser != nullptr) {
    std::vector<std::string> scores;
    for (const auto& s : chooser->scores()) {
      scores.push_back(s.fitted ? absl::StrCat(s.model, " ", Number(s.holdout_mase))
                                : absl::StrCat(s.model, " (too short)"));
    }
    absl::StrAppend(&head, "  chosen by MASE on the last ", chooser->holdout(),
                    " observations: ", absl::StrJoin(scores, ", "), "\n");
  }
  std::vector<std::string> shown;
  for (const auto& p : params) shown.push_back(absl::StrCat(p.name, "=", Number(p.value)));
  absl::StrAppend(&head, "parameters: ", absl::StrJoin(shown, " "), "\n");
  absl::StrAppend(&head, "observations: ", series->size(),
                  "; in-sample MASE: ", std::isfinite(mase) ? Number(mase) : std::string("n/a"),
                  " (one-step, scaled by the ", f.season > 1 ? "seasonal " : "", "naive method",
                  f.season > 1 ? absl::StrCat(", season ", f.season) : "", ")\n\n");
  const std::string pct = absl::StrFormat("%g%%", 100 * f.level);
  Table t({"STEP", "FORECAST", absl::StrCat("LOWER ", pct), absl::StrCat("UPPER ", pct)});
  for (const auto& p : *forecast) {
    t.Add({absl::StrCat(p.step), Number(p.mean), Number(p.lower), Number(p.upper)});
  }
  std::cout << head << t.Render() << std::flush;
  return 0;
}

}  // namespace

void AddForecastCommand(CLI::App& app, int* rc) {
  auto flags = std::make_shared<ForecastFlags>();
  CLI::App* cmd = app.add_subcommand(
      "forecast",
      "forecast a series read on stdin (one number a line) with naive, Holt-Winters or ARIMA, "
      "and print the forecast with its prediction interval");
  cmd->add_option("--model", flags->model, "naive, holt-winters, arima or auto")
      ->capture_default_str();
  cmd->add_option("--season", flags->season,
                  "seasonal period in observations (e.g. 12 for monthly data); 0: none")
      ->capture_default_str();
  cmd->add_option("--horizon", flags->horizon, "steps to forecast")->required();
  cmd->add_option("--level", flags->level, "prediction interval level, between 0 and 1")
      ->capture_default_str();
  cmd->add_option("--order", flags->order,
                  "ARIMA order p,d,q (with --model arima); without it the order is chosen on a "
                  "hold-out");
  cmd->add_flag("--json", flags->json, "print JSON instead of a table");
  cmd->callback([&app, flags, rc] {
    // `flotilla --json forecast` sets the global flag rather than ours.
    const CLI::Option* global_json = app.get_option_no_throw("--json");
    const bool json = flags->json || (global_json != nullptr && global_json->count() > 0);
    *rc = RunForecast(*flags, json, std::cin);
  });
}

}  // namespace flotilla::cli
