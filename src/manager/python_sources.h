// The Python programs the manager sends into sandboxes, embedded at build
// time from sdk/python/flotilla/: the runner of function pieces and the
// split analyzer. One copy of each lives in the SDK; the build embeds it.
#pragma once

namespace flotilla::manager {

const char* PythonRunnerSource();    // sdk/python/flotilla/_runner.py
const char* PythonAnalyzerSource();  // sdk/python/flotilla/_split.py

}  // namespace flotilla::manager
