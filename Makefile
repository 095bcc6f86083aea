# The two commands a user needs: `make demo` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo bench asan clean format

all: build

deps:
	@./scripts/install-deps

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	# A test that fails is run once more before it counts (some fault and
	# hostile tests race against a loaded 2-core machine); its first
	# failure stays in the log.
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600 --repeat until-pass:2

demo: build
	./scripts/demo.sh $(BUILD_DIR)/src/flotilla

bench: build
	./bench/run.sh $(BUILD_DIR)

asan:
	$(MAKE) BUILD_DIR=build-asan BUILD_TYPE=Asan test

format:
	find src tests bench -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-asan
