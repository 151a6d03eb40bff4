# A thin driver of CMake and CTest. Every target installs missing packages first.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all bootstrap build demo check asan valgrind bench install format format-check clean

all: build

bootstrap:
	@./scripts/bootstrap

$(BUILD)/build.ninja: | bootstrap
	cmake -S . -B $(BUILD) -G Ninja -DTLSOCK_WERROR=ON $(CMAKE_FLAGS)

build: bootstrap $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/tools/tlsock/tlsock demo

check: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DTLSOCK_WERROR=ON -DTLSOCK_SANITIZE=ON \
		-DTLSOCK_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

# The TLS suite under valgrind's memcheck: any leak or error fails the test.
valgrind: build
	ctest --test-dir $(BUILD) --output-on-failure -L '^tls$$' -T memcheck --overwrite MemoryCheckCommand=$$(command -v valgrind) \
		--overwrite MemoryCheckCommandOptions="--leak-check=full --error-exitcode=99 --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect"

bench: build
	./$(BUILD)/bench/tlsock-bench

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
