# Ember's one Makefile.  `make` installs missing build dependencies (deps),
# builds every binary into build/bin and the runtime roots into
# build/rootfs; `make test` runs every suite and ends with one line
# "N passed, N failed".  V=1 shows commands; SANITIZE=1 builds with
# AddressSanitizer and UndefinedBehaviorSanitizer.

BUILD   ?= build
BIN     := $(BUILD)/bin
OBJ     := $(BUILD)/obj
CC      := gcc
CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Wformat=2 -Wshadow \
           -Wmissing-prototypes -Wstrict-prototypes -Werror -Wno-format-truncation \
           -D_GNU_SOURCE -Icommon -Ivmm -Ivmm/kernel -Ivmm/platform -Ivmm/loader -Isnapshot -I$(BUILD)/gen
LDFLAGS :=
LDLIBS  :=

ifeq ($(SANITIZE),1)
BUILD   := build/sanitize
BIN     := $(BUILD)/bin
OBJ     := $(BUILD)/obj
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all deps rootfs test bench clean format format-check
all: deps $(BIN)/ember-vmm $(BIN)/ember-ctl $(BIN)/ember-snapshot $(BIN)/ember-build-fn $(BIN)/ember-invoke \
     guests rootfs

# ---- set-up: build dependencies from Debian, once -------------------------
DEPS_STAMP := build/.deps-installed
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	$(Q)bash scripts/deps.sh
	$(Q)mkdir -p build && touch $@

# ---- ember-vmm -------------------------------------------------------------
VMM_SRCS := $(wildcard vmm/*.c vmm/kernel/*.c vmm/loader/*.c vmm/platform/*.c vmm/platform/kvm/*.c) \
            vmm/platform/systrap/systrap.c vmm/platform/systrap/systrap_stub.c \
            $(wildcard snapshot/snap_*.c) common/error.c common/durable.c
VMM_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(VMM_SRCS)) $(OBJ)/vmm/vdso/vdso_blob.o \
            $(OBJ)/vmm/platform/systrap/stub_blob.o

$(OBJ)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/gen/syscall_names.h: scripts/syscall-names.sh
	@mkdir -p $(dir $@)
	$(Q)bash scripts/syscall-names.sh > $@
$(OBJ)/vmm/kernel/syscall.o: $(BUILD)/gen/syscall_names.h

$(BIN)/ember-vmm: $(VMM_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The vDSO: a freestanding shared object, embedded into ember-vmm.
VDSO_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -fPIC -fno-stack-protector \
               -fno-builtin -nostdlib -ffreestanding -fno-asynchronous-unwind-tables \
               -mno-red-zone -Ivmm
$(BUILD)/vdso/vdso.so: vmm/vdso/vdso.c vmm/vdso/vdso.lds vmm/vdso/vvar.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  VDSO    $@")
	$(Q)$(CC) $(VDSO_CFLAGS) -shared -Wl,-T,vmm/vdso/vdso.lds -Wl,--hash-style=both \
	    -Wl,-soname=linux-vdso.so.1 -Wl,--build-id=none -o $@ vmm/vdso/vdso.c
$(OBJ)/vmm/vdso/vdso_blob.o: vmm/vdso/vdso_blob.S $(BUILD)/vdso/vdso.so
	@mkdir -p $(dir $@)
	$(Q)$(CC) -c -DVDSO_PATH='"$(BUILD)/vdso/vdso.so"' -o $@ $<

# The systrap stub: a freestanding static program at a fixed address,
# embedded into ember-vmm and run from a memfd (vmm/platform/systrap).
STUB_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -static -nostdlib -ffreestanding -fno-builtin \
               -fno-stack-protector -fpie -no-pie -fno-asynchronous-unwind-tables -mno-red-zone \
               -Ivmm/platform -Ivmm/platform/systrap
$(BUILD)/stub/ember-stub: vmm/platform/systrap/stub.c vmm/platform/systrap/stub.lds \
		vmm/platform/systrap/stub_abi.h vmm/platform/guest_layout.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  STUB    $@")
	$(Q)$(CC) $(STUB_CFLAGS) -Wl,-T,vmm/platform/systrap/stub.lds -Wl,--build-id=none -o $@ \
	    vmm/platform/systrap/stub.c
$(OBJ)/vmm/platform/systrap/stub_blob.o: vmm/platform/systrap/stub_blob.S $(BUILD)/stub/ember-stub
	@mkdir -p $(dir $@)
	$(Q)$(CC) -c -DSTUB_PATH='"$(BUILD)/stub/ember-stub"' -o $@ $<

# ---- ember-snapshot: pack, unpack and verify snapshots (liblz4) ------------
SNAPSHOT_TOOL_SRCS := snapshot/ember_snapshot.c snapshot/pack.c snapshot/pack_archive.c \
                      snapshot/snap_state.c snapshot/snap_buffer.c common/error.c common/durable.c
$(BIN)/ember-snapshot: $(patsubst %.c,$(OBJ)/%.o,$(SNAPSHOT_TOOL_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -llz4

# ---- ember-ctl: the control-socket client ----------------------------------
CTL_SRCS := $(wildcard ctl/*.c) common/error.c
CTL_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(CTL_SRCS))
$(BIN)/ember-ctl: $(CTL_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljansson

# Its tests (tests/ctl): a scripted fake VMM, unit tests, a fuzz target.
CTL_TEST_BINS := $(BUILD)/tests/ctl_fake_server $(BUILD)/tests/ctl_unit
CTL_CLIENT := ctl/control_client.c ctl/control_client.h vmm/control_protocol.h common/error.c
$(BUILD)/tests/ctl_fake_server: tests/ctl/fake_server.c vmm/control_protocol.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $<
$(BUILD)/tests/ctl_unit: tests/ctl/test_control_client.c $(CTL_CLIENT) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  UNIT    $@")
	$(Q)$(CC) $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -Ictl -o $@ $< $(filter %.c,$(CTL_CLIENT))
$(BUILD)/fuzz/fuzz_ctl_response: tests/ctl/fuzz_ctl_response.c $(CTL_CLIENT) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Icommon -Ivmm -Ictl \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(filter %.c,$(CTL_CLIENT))

# ---- functions: ember-build-fn (pool-manager/) and ember-invoke (worker/) ----
RAPI_SRCS := worker/runtime_api.c
BUILD_FN_SRCS := pool-manager/ember_build_fn.c pool-manager/bundle.c ctl/control_client.c $(RAPI_SRCS) \
                 common/child.c common/function_config.c common/durable.c common/error.c
INVOKE_SRCS := worker/ember_invoke.c $(RAPI_SRCS) ctl/control_client.c common/child.c \
               common/function_config.c common/durable.c common/error.c
FN_CFLAGS := -Iworker -Ipool-manager -Ictl
$(BIN)/ember-build-fn: $(patsubst %.c,$(OBJ)/%.o,$(BUILD_FN_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -larchive -lz -ljansson -lmicrohttpd -lpthread
$(BIN)/ember-invoke: $(patsubst %.c,$(OBJ)/%.o,$(INVOKE_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ljansson -lmicrohttpd -lpthread
$(OBJ)/worker/%.o $(OBJ)/pool-manager/%.o: CFLAGS += $(FN_CFLAGS)

# ---- the Runtime API server's tests (tests/rapi) -----------------------------
RAPI_TEST_SRCS := tests/rapi/test_runtime_api.c worker/runtime_api.c common/error.c
$(BUILD)/tests/rapi_test: $(RAPI_TEST_SRCS) worker/runtime_api.h common/error.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  UNIT    $@")
	$(Q)$(CC) $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	    -fno-omit-frame-pointer -Iworker -o $@ $(RAPI_TEST_SRCS) -lmicrohttpd -lpthread

# ---- guest test programs (static, run inside the VM) -----------------------
GUEST_SRCS := $(wildcard tests/guest/*.c)
GUEST_BINS := $(patsubst tests/guest/%.c,$(BUILD)/guest/%,$(GUEST_SRCS))
.PHONY: guests
guests: $(GUEST_BINS)
$(BUILD)/guest/%: tests/guest/%.c tests/guest/guest_test.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GUEST   $@")
	$(Q)$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -static -o $@ $<

# ---- host-side unit tests and fuzz targets ----------------------------------
# Unit tests always build with the sanitizers: they exist to catch misuse.
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
VMM_TESTABLE := vmm/kernel/memory_map.c vmm/kernel/memfs.c vmm/kernel/pipe.c vmm/kernel/file_layers.c \
                vmm/kernel/fdtable.c vmm/platform/vm.c vmm/kernel/clock.c snapshot/snap_state.c snapshot/snap_buffer.c snapshot/pack_archive.c common/error.c common/durable.c
.PHONY: units fuzzers
units: $(UNIT_BINS) $(CTL_TEST_BINS) $(BUILD)/tests/bundle_test $(BUILD)/tests/rapi_test
$(BUILD)/unit/%: tests/unit/%.c tests/unit/unit_test.h $(VMM_TESTABLE) $(BUILD)/gen/syscall_names.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  UNIT    $@")
	$(Q)$(CC) $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -o $@ $< $(VMM_TESTABLE)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
fuzzers: $(FUZZ_BINS) $(BUILD)/fuzz/fuzz_ctl_response
$(BUILD)/fuzz/%: tests/fuzz/%.c $(VMM_TESTABLE) $(BUILD)/gen/syscall_names.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang -std=gnu11 -g -O1 -Wall -Wextra -Wno-gnu-variable-sized-type-not-at-end -D_GNU_SOURCE \
	    -Icommon -Ivmm -Ivmm/kernel -Ivmm/platform -Ivmm/loader -Isnapshot -I$(BUILD)/gen \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(VMM_TESTABLE)

# The packed-snapshot fuzz target also needs the LZ4 layer (snapshot/pack.c).
$(BUILD)/fuzz/fuzz_snapshot_archive: tests/fuzz/fuzz_snapshot_archive.c snapshot/pack.c $(VMM_TESTABLE) \
		$(BUILD)/gen/syscall_names.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang -std=gnu11 -g -O1 -Wall -Wextra -Wno-gnu-variable-sized-type-not-at-end -D_GNU_SOURCE \
	    -Icommon -Ivmm -Ivmm/kernel -Ivmm/platform -Ivmm/loader -Isnapshot -I$(BUILD)/gen \
	    -fsanitize=fuzzer,address,undefined -o $@ $< snapshot/pack.c \
	    $(VMM_TESTABLE) -llz4

# ---- pool-manager: bundle unpacking, its unit tests and fuzz target --------
BUNDLE_SRCS := pool-manager/bundle.c pool-manager/bundle.h common/error.c common/error.h
BUNDLE_LIBS := -larchive -lz
$(BUILD)/tests/bundle_test: tests/bundle/test_bundle.c $(BUNDLE_SRCS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  UNIT    $@")
	$(Q)$(CC) $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -Ipool-manager -o $@ $< $(filter %.c,$(BUNDLE_SRCS)) $(BUNDLE_LIBS)
$(BUILD)/fuzz/fuzz_bundle: tests/fuzz/fuzz_bundle.c $(BUNDLE_SRCS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Icommon -Ipool-manager \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(filter %.c,$(BUNDLE_SRCS)) $(BUNDLE_LIBS)

# ---- runtime roots from Debian packages -----------------------------------
ROOTFS := build/rootfs
rootfs: $(ROOTFS)/python3/.complete $(ROOTFS)/base/.complete
.SECONDEXPANSION:
$(ROOTFS)/%/.complete: runtimes/%/packages runtimes/build-root.sh \
		$$(wildcard runtimes/$$*/*) | $(DEPS_STAMP)
	$(Q)bash runtimes/build-root.sh $* $(ROOTFS)/$*

# ---- tests and benchmarks --------------------------------------------------
test: all units fuzzers
	$(Q)BUILD=$(BUILD) bash tests/run-all.sh

bench: all
	$(Q)BUILD=$(BUILD) bash bench/run-all.sh

# The project's own C (tests and benchmarks follow it loosely; not checked).
FORMATTED := $(wildcard vmm/*.[ch] vmm/*/*.[ch] vmm/platform/*/*.[ch] common/*.[ch] snapshot/*.[ch] ctl/*.[ch] \
                        worker/*.[ch] pool-manager/*.[ch])
format:
	$(Q)clang-format -i $(FORMATTED)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf build/bin build/obj build/vdso build/stub build/guest build/unit build/fuzz build/gen build/bench build/tests build/sanitize

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
