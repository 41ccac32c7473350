# SPDX-License-Identifier: MIT
#
#   make / make build   install missing packages, configure build/ once, build
#   make check          deps, then build/, build-asan/ (ASan+UBSan), build-fuzz/ (clang,
#                       libFuzzer), then tests/run-all.sh (unit, asan, fuzz, e2e)
#   make demo           zocd with two disks, a switch, a vNIC and an uplink; a guest runs fio, ping, iperf3
#   make clean          remove the build directories
#
# Each build directory is configured once (meson reconfigures itself when meson.build
# changes); delete it (or `make clean`) to configure from scratch.

SHELL := /bin/bash
MESON ?= meson
NINJA ?= ninja

BUILD      := build
BUILD_ASAN := build-asan
BUILD_FUZZ := build-fuzz

.PHONY: all build check demo clean deps build-main build-asan build-fuzz

all: build

deps:
	@scripts/deps.sh

build: deps build-main

build-main:
	@[ -f $(BUILD)/build.ninja ] || { echo "make: configuring $(BUILD)/ (debugoptimized)"; \
	  $(MESON) setup $(BUILD) --buildtype=debugoptimized; }
	@echo "make: building $(BUILD)/"
	@$(NINJA) -C $(BUILD)

build-asan:
	@[ -f $(BUILD_ASAN)/build.ninja ] || { echo "make: configuring $(BUILD_ASAN)/ (address,undefined sanitizers)"; \
	  $(MESON) setup $(BUILD_ASAN) --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false; }
	@echo "make: building $(BUILD_ASAN)/"
	@$(NINJA) -C $(BUILD_ASAN)

build-fuzz:
	@[ -f $(BUILD_FUZZ)/build.ninja ] || { echo "make: configuring $(BUILD_FUZZ)/ (clang, libFuzzer)"; \
	  CC=clang $(MESON) setup $(BUILD_FUZZ) --buildtype=debugoptimized -Dfuzz=true -Dtests=false; }
	@echo "make: building $(BUILD_FUZZ)/"
	@$(NINJA) -C $(BUILD_FUZZ)

check: deps
	@$(MAKE) --no-print-directory build-main
	@$(MAKE) --no-print-directory build-asan
	@$(MAKE) --no-print-directory build-fuzz
	@tests/run-all.sh

demo:
	@scripts/demo.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
