/* The ember-vmm control socket protocol, version 1.
 *
 * A VMM started with --control-sock PATH listens on a Unix stream socket.
 * A client sends requests and reads one response per request, in order,
 * on the same connection; it may send several.  Every frame is a fixed
 * 16-byte little-endian header followed by `payload_length` bytes:
 *
 *   request:  magic "EMBC" | version 1 | command | payload_length | reserved 0
 *             payload: the snapshot directory for SNAPSHOT (no NUL, at most
 *             EMBER_CONTROL_PATH_MAX bytes), empty otherwise.
 *   response: magic "EMBR" | version 1 | status  | payload_length | reserved 0
 *             payload: struct ember_control_stats for STATS with status OK;
 *             otherwise a human-readable message (may be empty).
 *
 * States and transitions: RUNNING --pause--> PAUSED --resume--> RUNNING;
 * snapshot only while PAUSED; stats and quit always.  A request the state
 * forbids answers EMBER_CONTROL_NOT_ALLOWED and changes nothing.  A frame
 * with a wrong magic, version, command or length answers BAD_REQUEST and
 * the VMM closes that connection.  Snapshots are written to a temporary
 * directory beside DIR, fsynced, and renamed into place.
 *
 * This header is self-contained: clients include it alone. */
#ifndef EMBER_CONTROL_PROTOCOL_H
#define EMBER_CONTROL_PROTOCOL_H

#include <stdint.h>

#define EMBER_CONTROL_REQUEST_MAGIC  0x43424d45u /* "EMBC" */
#define EMBER_CONTROL_RESPONSE_MAGIC 0x52424d45u /* "EMBR" */
#define EMBER_CONTROL_VERSION        1
#define EMBER_CONTROL_PATH_MAX       4096
#define EMBER_CONTROL_MESSAGE_MAX    4096

enum ember_control_command {
	EMBER_CONTROL_PAUSE = 1,
	EMBER_CONTROL_RESUME = 2,
	EMBER_CONTROL_SNAPSHOT = 3,
	EMBER_CONTROL_STATS = 4,
	EMBER_CONTROL_QUIT = 5,
};

enum ember_control_status {
	EMBER_CONTROL_OK = 0,
	EMBER_CONTROL_NOT_ALLOWED = 1, /* the VM's state forbids it */
	EMBER_CONTROL_BAD_REQUEST = 2, /* malformed frame */
	EMBER_CONTROL_FAILED = 3,      /* allowed, but it failed: see the message */
};

enum ember_control_vm_state {
	EMBER_VM_RUNNING = 1,
	EMBER_VM_PAUSED = 2,
	EMBER_VM_EXITED = 3,
};

struct ember_control_header {
	uint32_t magic;
	uint16_t version;
	uint16_t code; /* command in a request, status in a response */
	uint32_t payload_length;
	uint32_t reserved; /* 0 */
};

struct ember_control_stats {
	uint64_t guest_memory_bytes; /* size of guest memory (the cap) */
	uint64_t host_rss_bytes;     /* resident set of the VMM process (and its stub) */
	uint64_t host_private_bytes; /* of which not shared (private dirty + anonymous) */
	uint64_t dirty_pages;        /* guest pages written since start or restore */
	uint64_t syscalls;           /* system calls served since start or restore */
	uint32_t state;              /* enum ember_control_vm_state */
	uint32_t platform;           /* enum ember_control_platform: what runs the guest */
};

enum ember_control_platform {
	EMBER_CONTROL_PLATFORM_KVM = 1,
	EMBER_CONTROL_PLATFORM_SYSTRAP = 2,
};

_Static_assert(sizeof(struct ember_control_header) == 16, "control frame header is 16 bytes");
_Static_assert(sizeof(struct ember_control_stats) == 48, "stats payload is 48 bytes");

#endif
