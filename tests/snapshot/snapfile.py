#!/usr/bin/env python3
"""Reads, edits and rewrites Ember snapshot state files, for tests only.

A mirror of snapshot/snap_state.c's encoder (its encode_* functions, field
by field, in the same order): decode() turns a state file into plain Python
values and encode() writes them back byte for byte, with a fresh header and
CRC-32.  The snapshot suite (tests/snapshot/suite.sh) uses it to make
hostile state files that are well-formed where they need to be — right
CRC, right lengths — so that ember-vmm's own validator is what must catch
the flaw.  It checks only what it needs to parse; it is not a validator.

The format (snap_state.h): header of 32 bytes — magic "EMBERSNP", u32
version, u32 header size, u64 body length, u32 CRC-32 of the body, u32
section count — then sections {u32 type, u32 reserved, u64 length,
payload}: cpu, vcpu, process, memory, tmpfs, pipes, files, fds, clock.
Everything little-endian; a string is a u32 length and its bytes.

Usage: snapfile.py COMMAND STATE [ARGS...]   (edits STATE in place)
  dump STATE                      print the decoded state as JSON (no blobs)
  roundtrip STATE                 exit 1 unless decode+encode gives STATE back
  fix-crc STATE                   recompute the body CRC in the header
  set-version STATE N             header version := N, CRC fixed
  set-section-length STATE NAME N the length field of section NAME := N (the
                                  payload is left as it is), CRC fixed
  set-rip STATE VALUE             vCPU rip := VALUE (0x... accepted), re-encoded
  set-file-path STATE OLD NEW     every open file whose path is OLD gets NEW,
                                  re-encoded; exit 1 when none had OLD
  set-cpu STATE [vendor=V] [signature=N]   the saved CPU identity, re-encoded
  flip STATE OFFSET               XOR byte OFFSET with 0xff (no CRC fix)
  edit STATE CODE                 runs the Python statements CODE with `s` the
                                  decoded state (a dict of sections, as dump
                                  shows them, blobs as bytes) and the helpers
                                  set_register(s["vcpu"], NAME, VALUE) and
                                  FILE_KINDS; then re-encodes
"""
import json
import struct
import sys
import zlib

MAGIC = b"EMBERSNP"
HEADER_SIZE = 32
SECTIONS = ["cpu", "vcpu", "process", "memory", "tmpfs", "pipes", "files", "fds", "clock"]
SIGNALS = 64
FILE_KINDS = ["HOST", "HOST_DIR", "STDIO", "MEMFS", "MEMFS_DIR", "PIPE_READ", "PIPE_WRITE",
              "NULL", "ZERO", "RANDOM", "SYNTHETIC", "SYNTHETIC_DIR", "SOCKET"]
REGISTERS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "rflags"]


class Reader:
    """Little-endian reader over bytes; raises ValueError on overrun."""

    def __init__(self, data):
        self.data = data
        self.position = 0

    def take(self, n):
        if n < 0 or n > len(self.data) - self.position:
            raise ValueError("%d bytes needed at offset %d, %d left"
                             % (n, self.position, len(self.data) - self.position))
        chunk = self.data[self.position:self.position + n]
        self.position += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u32()).decode("latin-1")

    def sized(self):
        """A u32 size and that many bytes (the vCPU records)."""
        return self.take(self.u32())

    def done(self):
        return self.position == len(self.data)


class Writer:
    def __init__(self):
        self.parts = []

    def bytes(self, b):
        self.parts.append(bytes(b))

    def u8(self, v):
        self.parts.append(struct.pack("<B", v))

    def u32(self, v):
        self.parts.append(struct.pack("<I", v & 0xffffffff))

    def u64(self, v):
        self.parts.append(struct.pack("<Q", v & 0xffffffffffffffff))

    def string(self, s):
        b = s.encode("latin-1")
        self.u32(len(b))
        self.bytes(b)

    def sized(self, b):
        self.u32(len(b))
        self.bytes(b)

    def value(self):
        return b"".join(self.parts)


# ---- sections: decode_X(Reader) -> dict, encode_X(Writer, dict) -------------
# Each encode_X mirrors snap_state.c's encode_X exactly.

def decode_cpu(r):
    return {"vendor": r.take(12).decode("latin-1"), "signature": r.u32(),
            "features": [r.u32() for _ in range(6)], "xcr0": r.u64(),
            "kvm_api_version": r.u32(), "stub_user_mode": r.u32()}


def encode_cpu(w, c):
    vendor = c["vendor"].encode("latin-1")[:12]
    w.bytes(vendor + b"\0" * (12 - len(vendor)))
    w.u32(c["signature"])
    for f in c["features"]:
        w.u32(f)
    w.u64(c["xcr0"])
    w.u32(c["kvm_api_version"])
    w.u32(c["stub_user_mode"])


def decode_vcpu(r):
    v = {"regs": r.sized(), "sregs": r.sized(), "xsave": r.sized(), "xcrs": r.sized()}
    v["msrs"] = [(r.u32(), r.u64()) for _ in range(r.u32())]
    count = r.u32()
    v["cpuid_entry_size"] = r.u32()
    v["cpuid"] = r.take(count * v["cpuid_entry_size"])
    v["cpuid_count"] = count
    return v


def encode_vcpu(w, v):
    w.sized(v["regs"])
    w.sized(v["sregs"])
    w.sized(v["xsave"])
    w.sized(v["xcrs"])
    w.u32(len(v["msrs"]))
    for index, data in v["msrs"]:
        w.u32(index)
        w.u64(data)
    w.u32(v["cpuid_count"])
    w.u32(v["cpuid_entry_size"])
    w.bytes(v["cpuid"])


def get_registers(v):
    """The 18 u64s of struct kvm_regs, by name."""
    return dict(zip(REGISTERS, struct.unpack("<18Q", v["regs"][:144])))


def set_register(v, name, value):
    values = list(struct.unpack("<18Q", v["regs"][:144]))
    values[REGISTERS.index(name)] = value & 0xffffffffffffffff
    v["regs"] = struct.pack("<18Q", *values) + v["regs"][144:]


def decode_process(r):
    p = {"root_path": r.string(), "task_path": r.string(), "cwd": r.string(),
         "exe_path": r.string(), "umask": r.u32(), "tid_address": r.u64(), "fs_base": r.u64(),
         "gs_base": r.u64(), "signal_mask": r.u64()}
    p["actions"] = [[r.u64(), r.u64(), r.u64(), r.u64()] for _ in range(SIGNALS)]
    p["altstack"] = [r.u64() for _ in range(3)]
    p["thread_name"] = r.take(16)
    return p


def encode_process(w, p):
    for key in ("root_path", "task_path", "cwd", "exe_path"):
        w.string(p[key])
    w.u32(p["umask"])
    for key in ("tid_address", "fs_base", "gs_base", "signal_mask"):
        w.u64(p[key])
    for action in p["actions"]:
        for field in action:
            w.u64(field)
    for value in p["altstack"]:
        w.u64(value)
    w.bytes(p["thread_name"])


def decode_memory(r):
    m = {key: r.u64() for key in ("mem_size", "brk_start", "brk_current", "stack_low",
                                   "stack_top", "mmap_top")}
    m["regions"] = [{"start": r.u64(), "end": r.u64(), "prot": r.u32(), "flags": r.u32()}
                    for _ in range(r.u32())]
    return m


def encode_memory(w, m):
    for key in ("mem_size", "brk_start", "brk_current", "stack_low", "stack_top", "mmap_top"):
        w.u64(m[key])
    w.u32(len(m["regions"]))
    for g in m["regions"]:
        w.u64(g["start"])
        w.u64(g["end"])
        w.u32(g["prot"])
        w.u32(g["flags"])


def decode_tmpfs(r):
    nodes = []
    for _ in range(r.u32()):
        n = {"parent": r.u32(), "name": r.string(), "is_dir": r.u8(), "mode": r.u32(),
             "mtime_sec": r.u64(), "mtime_nsec": r.u64()}
        n["data"] = r.take(r.u64())
        nodes.append(n)
    return nodes


def encode_tmpfs(w, nodes):
    w.u32(len(nodes))
    for n in nodes:
        w.u32(n["parent"])
        w.string(n["name"])
        w.u8(n["is_dir"])
        w.u32(n["mode"])
        w.u64(n["mtime_sec"])
        w.u64(n["mtime_nsec"])
        w.u64(len(n["data"]))
        w.bytes(n["data"])


def decode_pipes(r):
    return [r.take(r.u64()) for _ in range(r.u32())]


def encode_pipes(w, pipes):
    w.u32(len(pipes))
    for p in pipes:
        w.u64(len(p))
        w.bytes(p)


FILE_U32_TAIL = ("stdio_fd", "node", "pipe", "socket_domain", "socket_type", "socket_connected")


def decode_files(r):
    files = []
    for _ in range(r.u32()):
        f = {"kind": r.u32(), "flags": r.u32(), "offset": r.u64(), "path": r.string(),
             "host_size": r.u64(), "host_mtime_sec": r.u64(), "host_mtime_nsec": r.u64()}
        for key in FILE_U32_TAIL:
            f[key] = r.u32()
        f["data"] = r.take(r.u64())
        files.append(f)
    return files


def encode_files(w, files):
    w.u32(len(files))
    for f in files:
        w.u32(f["kind"])
        w.u32(f["flags"])
        w.u64(f["offset"])
        w.string(f["path"])
        w.u64(f["host_size"])
        w.u64(f["host_mtime_sec"])
        w.u64(f["host_mtime_nsec"])
        for key in FILE_U32_TAIL:
            w.u32(f[key])
        w.u64(len(f["data"]))
        w.bytes(f["data"])


def decode_fds(r):
    return [{"fd": r.u32(), "file": r.u32(), "cloexec": r.u8()} for _ in range(r.u32())]


def encode_fds(w, fds):
    w.u32(len(fds))
    for d in fds:
        w.u32(d["fd"])
        w.u32(d["file"])
        w.u8(d["cloexec"])


def decode_clock(r):
    return {"monotonic_ns": r.u64(), "realtime_ns": r.u64()}


def encode_clock(w, c):
    w.u64(c["monotonic_ns"])
    w.u64(c["realtime_ns"])


# ---- whole files ----------------------------------------------------------------

def split(data):
    """Header fields and the raw sections [(type, reserved, payload)]."""
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise ValueError("not a state file")
    version, header_size, body_length, crc, count = struct.unpack("<IIQII", data[8:32])
    r = Reader(data[HEADER_SIZE:])
    sections = []
    for _ in range(count):
        kind, reserved, length = r.u32(), r.u32(), r.u64()
        sections.append((kind, reserved, r.take(length)))
    if not r.done():
        raise ValueError("bytes after the last section")
    header = {"version": version, "header_size": header_size, "body_length": body_length,
              "crc": crc, "section_count": count}
    return header, sections


def decode(data):
    """The whole state as {section name: value}; raises ValueError."""
    header, sections = split(data)
    if [kind for kind, _, _ in sections] != list(range(1, len(SECTIONS) + 1)):
        raise ValueError("sections out of order")
    state = {"header": header}
    for (kind, _, payload), name in zip(sections, SECTIONS):
        r = Reader(payload)
        state[name] = globals()["decode_" + name](r)
        if not r.done():
            raise ValueError("section %s: %d unread bytes" % (name, len(payload) - r.position))
    return state


def assemble(sections, version=1):
    """A state file from [(type, reserved, payload)], with the right CRC."""
    body = b"".join(struct.pack("<IIQ", kind, reserved, len(payload)) + payload
                    for kind, reserved, payload in sections)
    return (MAGIC + struct.pack("<IIQII", version, HEADER_SIZE, len(body),
                                zlib.crc32(body) & 0xffffffff, len(sections)) + body)


def encode(state):
    sections = []
    for number, name in enumerate(SECTIONS, 1):
        w = Writer()
        globals()["encode_" + name](w, state[name])
        sections.append((number, 0, w.value()))
    return assemble(sections, state["header"]["version"])


def fix_crc(data):
    body = data[HEADER_SIZE:]
    return data[:24] + struct.pack("<I", zlib.crc32(body) & 0xffffffff) + data[28:]


def printable(value):
    if isinstance(value, (bytes, bytearray)):
        return "<%d bytes>" % len(value)
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    command, path, args = argv[1], argv[2], argv[3:]
    with open(path, "rb") as f:
        data = f.read()
    if command == "dump":
        state = decode(data)
        state["registers"] = get_registers(state["vcpu"])
        for f in state["files"]:
            f["kind_name"] = FILE_KINDS[f["kind"]] if f["kind"] < len(FILE_KINDS) else "?"
        print(json.dumps(printable(state), indent=1))
        return 0
    if command == "roundtrip":
        again = encode(decode(data))
        if again != data:
            sys.stderr.write("snapfile.py: re-encoding differs (%d vs %d bytes)\n"
                             % (len(again), len(data)))
            return 1
        return 0
    if command == "fix-crc":
        data = fix_crc(data)
    elif command == "set-version":
        data = fix_crc(data[:8] + struct.pack("<I", int(args[0], 0)) + data[12:])
    elif command == "set-section-length":
        header, sections = split(data)
        number = SECTIONS.index(args[0]) + 1
        offset = HEADER_SIZE
        for kind, _, payload in sections:
            if kind == number:
                break
            offset += 16 + len(payload)
        data = data[:offset + 8] + struct.pack("<Q", int(args[1], 0)) + data[offset + 16:]
        data = fix_crc(data)
    elif command == "set-rip":
        state = decode(data)
        set_register(state["vcpu"], "rip", int(args[0], 0))
        data = encode(state)
    elif command == "set-file-path":
        state = decode(data)
        changed = 0
        for f in state["files"]:
            if f["path"] == args[0]:
                f["path"] = args[1]
                changed += 1
        if not changed:
            sys.stderr.write("snapfile.py: no open file has the path %s\n" % args[0])
            return 1
        data = encode(state)
    elif command == "set-cpu":
        state = decode(data)
        for arg in args:
            key, _, value = arg.partition("=")
            state["cpu"][key] = value if key == "vendor" else int(value, 0)
        data = encode(state)
    elif command == "edit":
        state = decode(data)
        exec(args[0], {"s": state, "set_register": set_register, "FILE_KINDS": FILE_KINDS,
                       "REGISTERS": REGISTERS})
        data = encode(state)
    elif command == "flip":
        offset = int(args[0], 0)
        data = data[:offset] + bytes([data[offset] ^ 0xff]) + data[offset + 1:]
    else:
        sys.stderr.write("snapfile.py: unknown command %s\n" % command)
        return 2
    with open(path, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
