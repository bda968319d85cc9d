/* ember-snapshot: packs a snapshot directory into one LZ4 file for storage
 * and transfer, unpacks it, and verifies either form without restoring it.
 *
 *   ember-snapshot pack DIR FILE      DIR (as ember-vmm wrote it) -> FILE
 *   ember-snapshot unpack FILE DIR    FILE -> DIR, which must not exist
 *   ember-snapshot verify DIR|FILE    check; prints "ok: ..." on success
 *
 * Exit status: 0 success, 1 failure (one line "ember-snapshot: ..." on
 * stderr), 2 usage.  All the work is in pack.c; this file only parses
 * arguments and reports. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pack.h"

#define EXIT_USAGE 2

static const char usage_text[] = "usage: ember-snapshot pack DIR FILE\n"
				 "       ember-snapshot unpack FILE DIR\n"
				 "       ember-snapshot verify DIR|FILE\n";

static int usage(const char *problem)
{
	if (problem)
		fprintf(stderr, "ember-snapshot: %s\n", problem);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* Renders a byte count for people: "10932 bytes", "2.0 MiB", "16 GiB". */
static const char *human(uint64_t bytes, char *out, size_t size)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (bytes < 1024) {
		snprintf(out, size, "%llu bytes", (unsigned long long)bytes);
		return out;
	}
	double value = (double)bytes / 1024;
	unsigned unit = 0;
	while (value >= 1024 && unit + 1 < sizeof units / sizeof units[0]) {
		value /= 1024;
		unit++;
	}
	if (value == (double)(uint64_t)value)
		snprintf(out, size, "%llu %s", (unsigned long long)value, units[unit]);
	else
		snprintf(out, size, "%.1f %s", value, units[unit]);
	return out;
}

/* "state format 1, 10932 bytes; guest memory 128 MiB" */
static void describe_snapshot(const struct snap_pack_summary *s, char *out, size_t size)
{
	char memory[32];
	snprintf(out, size, "state format %u, %llu bytes; guest memory %s", s->state_version,
		 (unsigned long long)s->state_bytes, human(s->memory_bytes, memory, sizeof memory));
}

/* "2.0 MiB of data in 40 extents, packed 700.5 KiB (34.2% of the data)" */
static void describe_packing(const struct snap_pack_summary *s, char *out, size_t size)
{
	char data[32], packed[32];
	double percent = s->data_bytes ? 100.0 * (double)s->packed_bytes / (double)s->data_bytes : 0;
	snprintf(out, size, "%s of data in %llu extents, packed %s (%.1f%% of the data)",
		 human(s->data_bytes, data, sizeof data), (unsigned long long)s->extent_count,
		 human(s->packed_bytes, packed, sizeof packed), percent);
}

int main(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc < 2)
		return usage(NULL);
	const char *command = argv[1];
	struct ember_error err = {{0}};
	struct snap_pack_summary summary;
	char snapshot[160], packing[160];

	if (strcmp(command, "pack") == 0) {
		if (argc != 4)
			return usage("pack takes a snapshot directory and a file");
		if (snap_pack(argv[2], argv[3], &summary, &err) < 0)
			goto failed;
		describe_snapshot(&summary, snapshot, sizeof snapshot);
		describe_packing(&summary, packing, sizeof packing);
		printf("packed `%s` into `%s`: %s; %s\n", argv[2], argv[3], snapshot, packing);
		return 0;
	}
	if (strcmp(command, "unpack") == 0) {
		if (argc != 4)
			return usage("unpack takes a packed file and a new directory");
		if (snap_unpack(argv[2], argv[3], &summary, &err) < 0)
			goto failed;
		describe_snapshot(&summary, snapshot, sizeof snapshot);
		describe_packing(&summary, packing, sizeof packing);
		printf("unpacked `%s` into `%s`: %s; %s\n", argv[2], argv[3], snapshot, packing);
		return 0;
	}
	if (strcmp(command, "verify") == 0) {
		if (argc != 3)
			return usage("verify takes a snapshot directory or a packed file");
		const char *path = argv[2];
		struct stat st;
		if (stat(path, &st) < 0) {
			ember_error_errno(&err, errno, "verify `%s`", path);
			goto failed;
		}
		if (S_ISDIR(st.st_mode)) {
			if (snap_verify_dir(path, &summary, &err) < 0)
				goto failed;
			char allocated[32];
			describe_snapshot(&summary, snapshot, sizeof snapshot);
			printf("ok: snapshot `%s`: %s; %s on disk\n", path, snapshot,
			       human(summary.allocated_bytes, allocated, sizeof allocated));
			return 0;
		}
		if (snap_verify_packed(path, &summary, &err) < 0)
			goto failed;
		describe_snapshot(&summary, snapshot, sizeof snapshot);
		describe_packing(&summary, packing, sizeof packing);
		printf("ok: packed snapshot `%s`: %s; %s; checksums match\n", path, snapshot, packing);
		return 0;
	}
	return usage("unknown command");

failed:
	fprintf(stderr, "ember-snapshot: %s\n", err.message);
	return 1;
}
