# A thin driver of CMake and CTest. Every target installs missing packages first.
BUILD ?= build
ASAN_BUILD ?= build-asan
OPENSSL_ONLY_BUILD ?= build-openssl-only
GNUTLS_ONLY_BUILD ?= build-gnutls-only
FUZZ_BUILD ?= build-fuzz
FUZZ_COV_BUILD ?= build-fuzz-cov
DEB_BUILD ?= build-deb
JOBS ?= $(shell nproc)
# Tests run at once by `make check` and the single-implementation builds. Those suites wait on
# sockets, timers and child programs about half the time (at one test per CPU, 2 CPUs ran 4 min
# of CPU in 4 min), so they run two tests per CPU. The sanitizer and valgrind suites keep the CPUs
# busy at one test per CPU, and run JOBS at once.
TEST_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
# The implementation pairs `make valgrind` runs: `all` (the definition of done), or `same`, only
# openssl-openssl and gnutls-gnutls, which exercise each implementation's code in both roles at
# half the time (.ci/run; the cross pairs run in `make check` and `make asan` there).
VALGRIND_PAIRS ?= all
ifeq ($(filter all same,$(VALGRIND_PAIRS)),)
$(error VALGRIND_PAIRS is all or same, not '$(VALGRIND_PAIRS)')
endif
VALGRIND_EXCLUDE_same = -LE '^(openssl-gnutls|gnutls-openssl)$$'
CMAKE_FLAGS ?=
# Fuzzing (docs/FUZZING.md): seconds per harness, and the compiler (clang, for libFuzzer).
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 15
FUZZ_CC ?= clang-14
FUZZ_CMAKE_FLAGS = -DCMAKE_C_COMPILER=$(FUZZ_CC) -DTLSOCK_BUILD_FUZZ=ON -DTLSOCK_WERROR=ON \
	-DTLSOCK_BUILD_TESTS=OFF -DTLSOCK_BUILD_BENCH=OFF -DTLSOCK_WITH_UV=OFF $(CMAKE_FLAGS)
# The single-implementation builds run their whole suite (one implementation pair: a fraction of
# the default build's time); SINGLE_IMPL_TESTS=subset runs only the unit tests, the fuzz corpus
# and these TLS tests.
SINGLE_IMPL_TESTS ?= all
SUBSET_LABELS = ^(unit|fuzz)$$
SUBSET_TLS = ^(data|verify|close|memory|detach|transport|uv_conn|example-memory-mode|interop-demo)$$

.PHONY: all bootstrap bootstrap-fuzz bootstrap-bench build demo check asan valgrind bench bench-chart \
	install format \
	format-check clean deb abi-check abi-baseline check-openssl-only check-gnutls-only single-impl \
	fuzz-build fuzz fuzz-ci fuzz-coverage

all: build

bootstrap:
	@./scripts/bootstrap

bootstrap-fuzz:
	@./scripts/bootstrap fuzz

bootstrap-bench:
	@./scripts/bootstrap bench

$(BUILD)/build.ninja: | bootstrap
	cmake -S . -B $(BUILD) -G Ninja -DTLSOCK_WERROR=ON $(CMAKE_FLAGS)

build: bootstrap $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/tools/tlsock/tlsock demo

check: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(TEST_JOBS)

asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DTLSOCK_WERROR=ON -DTLSOCK_SANITIZE=ON \
		-DTLSOCK_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

# The TLS suite under valgrind's memcheck: any leak or error fails the test. VALGRIND_PAIRS=same
# leaves out the cross pairs.
valgrind: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L '^tls$$' \
		$(VALGRIND_EXCLUDE_$(VALGRIND_PAIRS)) \
		-T memcheck --overwrite MemoryCheckCommand=$$(command -v valgrind) \
		--overwrite MemoryCheckCommandOptions="--leak-check=full --error-exitcode=99 --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect"

# Builds with one TLS implementation each (-Werror), and runs their tests (both implementations
# generate certificates, so everything runs). A test CTest reports as not run fails the target:
# in these builds every selected test must run.
check-openssl-only: bootstrap
	$(MAKE) single-impl SINGLE_BUILD=$(OPENSSL_ONLY_BUILD) SINGLE_FLAGS=-DTLSOCK_WITH_GNUTLS=OFF

check-gnutls-only: bootstrap
	$(MAKE) single-impl SINGLE_BUILD=$(GNUTLS_ONLY_BUILD) SINGLE_FLAGS=-DTLSOCK_WITH_OPENSSL=OFF

single-impl:
	cmake -S . -B $(SINGLE_BUILD) -G Ninja -DTLSOCK_WERROR=ON -DTLSOCK_BUILD_BENCH=OFF \
		$(SINGLE_FLAGS) $(CMAKE_FLAGS)
	cmake --build $(SINGLE_BUILD) -j $(JOBS)
ifeq ($(SINGLE_IMPL_TESTS),all)
	./scripts/ctest-all-run --test-dir $(SINGLE_BUILD) --output-on-failure -j $(TEST_JOBS)
else
	./scripts/ctest-all-run --test-dir $(SINGLE_BUILD) --output-on-failure -j $(TEST_JOBS) \
		-L '$(SUBSET_LABELS)'
	./scripts/ctest-all-run --test-dir $(SINGLE_BUILD) --output-on-failure -j $(TEST_JOBS) \
		-R '$(SUBSET_TLS)'
endif

# libFuzzer harnesses (clang, ASan, UBSan) in their own build directory; `make fuzz` runs each
# for FUZZ_SECONDS, `make fuzz-ci` for FUZZ_CI_SECONDS. See docs/FUZZING.md.
fuzz-build: bootstrap-fuzz
	cmake -S . -B $(FUZZ_BUILD) -G Ninja $(FUZZ_CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz

fuzz: fuzz-build
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-ci: fuzz-build
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_CI_SECONDS)

# Source-based coverage of src/ over the committed corpus and what `make fuzz` found.
fuzz-coverage: bootstrap-fuzz
	cmake -S . -B $(FUZZ_COV_BUILD) -G Ninja $(FUZZ_CMAKE_FLAGS) -DTLSOCK_FUZZ_COVERAGE=ON
	cmake --build $(FUZZ_COV_BUILD) -j $(JOBS) --target fuzz
	./fuzz/coverage.sh $(FUZZ_COV_BUILD) $(FUZZ_BUILD)/fuzz-work

# The shared library's ABI against the baseline in abi/ (docs/ABI.md); abi-baseline rewrites the
# baseline on purpose (refused for an incompatible change unless the soname was bumped).
abi-check: build
	./scripts/check-abi $(BUILD)

abi-baseline: build
	./scripts/check-abi --update $(BUILD)

# Every case with 2 s runs, its results kept in docs/bench.tsv and drawn in docs/bench.svg
# (docs/BENCHMARKS.md); bench-chart draws the kept results again.
bench: build bootstrap-bench
	./$(BUILD)/bench/tlsock-bench --seconds 2 --rounds 7 --data docs/bench.tsv
	./scripts/bench-chart docs/bench.tsv docs/bench.svg

bench-chart: bootstrap-bench
	./scripts/bench-chart docs/bench.tsv docs/bench.svg

install: build
	cmake --install $(BUILD)

# Debian packages libtlsock0, libtlsock-dev and tlsock in $(DEB_BUILD) (a /usr build of the
# library and tool), checked: contents, dependencies, installable, examples build against them.
deb: bootstrap
	./scripts/check-deb $(DEB_BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(OPENSSL_ONLY_BUILD) $(GNUTLS_ONLY_BUILD) $(FUZZ_BUILD) \
		$(FUZZ_COV_BUILD) $(DEB_BUILD)
