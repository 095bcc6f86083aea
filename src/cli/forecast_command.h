// `flotilla forecast`: fits a forecasting model (src/predict) to a series
// read on stdin, one number a line, and prints the model, its fitted
// parameters, the forecast with its prediction interval and the in-sample
// MASE, so that operators can try the models on their own data.
#pragma once

#include <CLI/CLI.hpp>

namespace flotilla::cli {

// Registers the `forecast` subcommand on `app`. Its callback sets `*rc` to
// the process exit status: 0, 2 when an option or the input is invalid, 1
// otherwise. `rc` must outlive app.parse().
void AddForecastCommand(CLI::App& app, int* rc);

}  // namespace flotilla::cli
