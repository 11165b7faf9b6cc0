# mproc - the front door.  Wraps CMake; each target first installs what is
# missing (scripts/deps.sh: apt-get as root, else it prints the command).
#
#   make demo      build and run the examples tour
#   make test      build with -Werror and run the whole suite under ctest
#   make bench     run every benchmark against its peers, one table
#   make install   PREFIX=/usr/local DESTDIR=  headers, libs, pkg-config, CMake package
#   make asan      the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make clang     the suite built with clang
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= $(JOBS)
CMAKE_ARGS ?=

configure = cmake -S . -B $(1) -DMPROC_WERROR=ON -DMPROC_TESTS=ON $(2) $(CMAKE_ARGS) >/dev/null

.PHONY: all build test demo bench install asan clang clean deps-test deps-bench

all: build

deps-%:
	@scripts/deps.sh $*

build: deps-test
	@$(call configure,$(BUILD),-DCMAKE_INSTALL_PREFIX=$(PREFIX))
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(CTEST_JOBS)

demo: deps-test
	@$(call configure,$(BUILD),-DCMAKE_INSTALL_PREFIX=$(PREFIX))
	cmake --build $(BUILD) -j$(JOBS)
	examples/demo.sh $(BUILD)

bench: deps-bench
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMPROC_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build build-bench -j$(JOBS)
	bench/run.sh build-bench

install: deps-test
	@$(call configure,$(BUILD),-DCMAKE_INSTALL_PREFIX=$(PREFIX))
	cmake --build $(BUILD) -j$(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

asan: deps-test
	@$(call configure,build-asan,-DMPROC_SANITIZER=address$(,)undefined -DCMAKE_BUILD_TYPE=Debug -DMP_TEST_TIMEOUT_MULTIPLIER=3)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ctest --output-on-failure -j$(CTEST_JOBS)

clang: deps-test
	@$(call configure,build-clang,-DCMAKE_C_COMPILER=clang)
	cmake --build build-clang -j$(JOBS)
	cd build-clang && ctest --output-on-failure -j$(CTEST_JOBS)

clean:
	rm -rf $(BUILD) build-asan build-clang build-bench

, := ,
