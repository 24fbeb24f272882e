# jobq — one GNU Makefile.
#
#   make            build/jobqd (server), build/jobq (CLI), build/jobq-bench
#   make run        install missing Debian packages, build, start jobqd on ./jobq-data
#   make test       unit + API tests, then the same on an ASan/UBSan build
#   make bench      every benchmark workload against a fresh server
#   make fuzz       the cron fuzzer for FUZZ_TIME seconds (libFuzzer, clang)
#
# BUILD=dir selects the output folder; SAN=1 builds with -fsanitize=address,undefined.

BUILD ?= build
SAN ?=
CC ?= cc
PYTHON ?= /usr/bin/python3

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Werror
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE $(WARN) -g -MMD -MP -Isrc -Iinclude
ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else
OPT := -O2
LDSAN :=
endif

SERVER_PKGS := libuv libmicrohttpd jansson sqlite3 glib-2.0 libcurl openssl
CLIENT_PKGS := libcurl jansson
BENCH_PKGS := libuv jansson
UNIT_PKGS := criterion jansson glib-2.0 sqlite3 openssl

pc_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pc_libs = $(shell pkg-config --libs $(1) 2>/dev/null)

ENGINE_SRC := $(wildcard src/engine/*.c) $(wildcard src/util/*.c)
STORE_SRC := $(wildcard src/store/*.c)
SERVER_SRC := $(ENGINE_SRC) $(STORE_SRC) $(wildcard src/http/*.c) $(wildcard src/api/*.c) src/jobqd.c
CLIENT_SRC := $(wildcard src/client/*.c)
CLI_SRC := $(CLIENT_SRC) $(wildcard src/cli/*.c)
BENCH_SRC := $(wildcard bench/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

all: $(BUILD)/jobqd $(BUILD)/jobq $(BUILD)/jobq-bench

$(BUILD)/obj/src/%.o: CFLAGS_EXTRA = $(call pc_cflags,$(SERVER_PKGS) $(CLIENT_PKGS))
$(BUILD)/obj/bench/%.o: CFLAGS_EXTRA = $(call pc_cflags,$(BENCH_PKGS))
$(BUILD)/obj/tests/%.o: CFLAGS_EXTRA = $(call pc_cflags,$(UNIT_PKGS))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(OPT) $(CFLAGS_EXTRA) $(CFLAGS) -c $< -o $@

$(BUILD)/jobqd: $(call obj,$(SERVER_SRC))
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(call pc_libs,$(SERVER_PKGS)) -lwslay -lpthread -lm

$(BUILD)/jobq: $(call obj,$(CLI_SRC))
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(call pc_libs,$(CLIENT_PKGS)) -lpthread -lm

$(BUILD)/jobq-bench: $(call obj,$(BENCH_SRC))
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(call pc_libs,$(BENCH_PKGS)) -lpthread -lm

$(BUILD)/test-unit: $(call obj,$(UNIT_SRC) $(ENGINE_SRC) $(STORE_SRC))
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(call pc_libs,$(UNIT_PKGS)) -lpthread -lm

# Fuzzing (clang's libFuzzer with ASan/UBSan): tests/fuzz/fuzz_*.c, seed corpora in
# tests/fuzz/corpus/. `fuzz-smoke` (part of `make test`) replays the seeds and runs briefly.
FUZZ_CC ?= clang
FUZZ_TIME ?= 300
FUZZ_RUNS ?= 300000
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -Isrc $(call pc_cflags,glib-2.0)

build-fuzz/fuzz_cron: tests/fuzz/fuzz_cron.c src/util/cron.c src/util/cron.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_cron.c src/util/cron.c $(call pc_libs,glib-2.0)

fuzz: build-fuzz/fuzz_cron
	@mkdir -p build-fuzz/corpus-cron
	./build-fuzz/fuzz_cron -max_total_time=$(FUZZ_TIME) -max_len=300 build-fuzz/corpus-cron \
	    tests/fuzz/corpus/cron

fuzz-smoke: build-fuzz/fuzz_cron
	./build-fuzz/fuzz_cron -runs=0 tests/fuzz/corpus/cron
	rm -rf build-fuzz/corpus-smoke && mkdir -p build-fuzz/corpus-smoke
	./build-fuzz/fuzz_cron -runs=$(FUZZ_RUNS) -max_len=300 -seed=1 build-fuzz/corpus-smoke \
	    tests/fuzz/corpus/cron

deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/jobqd --data ./jobq-data

unit: $(BUILD)/test-unit
	LSAN_OPTIONS=suppressions=$(abspath tests/unit/lsan.supp) ./$(BUILD)/test-unit -j2 --ascii

api: all
	JOBQD=$(abspath $(BUILD)/jobqd) JOBQ=$(abspath $(BUILD)/jobq) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/api

# The whole suite: plain build first, then the sanitizer build of the same tests.
test: deps
	@$(MAKE) --no-print-directory unit api
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 unit api

bench: deps
	@$(MAKE) --no-print-directory all
	scripts/bench.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all deps run unit api test bench clean fuzz fuzz-smoke

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
