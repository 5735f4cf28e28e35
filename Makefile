# The README's two commands: `make demo` and `make test`. Everything else is CMake.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)

.PHONY: all deps build build-asan build-tsan build-fuzz demo deb test test-unit test-e2e fuzz bench soak format format-check clean

all: build

deps:
	@deploy/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMPGW_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMPGW_WERROR=ON -DCMPGW_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# ThreadSanitizer, a developer tool outside `make test` (docs/architecture.md, "Checking them with
# ThreadSanitizer"): clang, -O1 -g for readable stacks at a bearable speed. Its tests run with
# ctest --test-dir $(TSAN_BUILD).
build-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE= -DCMAKE_C_FLAGS="-O1 -g" \
		-DCMPGW_WERROR=ON -DCMPGW_SANITIZE=thread >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)

# libFuzzer needs clang; -O1 -g keeps the fuzzer fast and its reports readable, asserts stay on.
build-fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE= -DCMAKE_C_FLAGS="-O1 -g" \
		-DCMPGW_WERROR=ON -DCMPGW_FUZZ=ON -DCMPGW_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

demo: build
	@deploy/demo.sh $(BUILD)

# The Debian package, $(BUILD)/deb/cmpgw_<version>_<arch>.deb: a release build of its own (deploy/deb.sh).
deb: deps
	@deploy/deb.sh $(BUILD)

# Every test on the release build, then the whole suite again under ASan+UBSan.
test: format-check build build-asan
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	@ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

test-unit: build
	@ctest --test-dir $(BUILD) --output-on-failure -L unit

test-e2e: build
	@ctest --test-dir $(BUILD) --output-on-failure -L e2e

# Each fuzz target FUZZ_SECONDS on its growing corpus (tests/fuzz/README.md); fails on a crash.
fuzz: build-fuzz
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	@tests/bench/run.sh $(BUILD)

soak: build
	@tests/bench/soak.sh $(BUILD)

C_SOURCES = base/*.[ch] gateway/*.[ch] gateway/cmp/*.[ch] upstream/*.[ch] mappings/*.[ch] tests/unit/*.c tests/bench/*.c tests/e2e/*.c \
            tests/fuzz/*.[ch]

format-check: deps
	@clang-format --dry-run --Werror $(C_SOURCES)

format:
	@clang-format -i $(C_SOURCES)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
