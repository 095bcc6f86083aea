# The two commands a user needs: `make demo` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo bench asan sanitize thread-safety ci-sanitize fuzz clean format

all: build

deps:
	@./scripts/install-deps

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	# No retries: a test that fails once is a bug to fix.
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	./scripts/demo.sh $(BUILD_DIR)/src/flotilla

bench: build
	./bench/run.sh $(BUILD_DIR)

asan:
	$(MAKE) BUILD_DIR=build-asan BUILD_TYPE=Asan test

# ASan+UBSan over the unit and integration tests, then TSan over the
# manager's, orchestrator's and agent's unit tests (scripts/sanitize).
sanitize: deps
	./scripts/sanitize all

# The reduced ASan+UBSan job CI runs: the unit tests of the control plane.
ci-sanitize: deps
	./scripts/sanitize ci

# clang's -Wthread-safety over every ABSL_GUARDED_BY annotation (an error
# where a guarded member is touched without its lock).
thread-safety: deps
	./scripts/sanitize thread-safety

# libFuzzer over the parsers of hostile input (tests/fuzz), FUZZ_SECONDS
# (60) each, in build-fuzz with clang (installed on demand by scripts/fuzz).
fuzz: deps
	./scripts/fuzz

format:
	find src tests bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz
