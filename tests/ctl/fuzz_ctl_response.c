/* libFuzzer target for the validators of ctl/control_client.c — what
 * ember-ctl does with bytes a broken or hostile VMM sends, and with the
 * snapshot path it is given.  It aborts when an accepted response header
 * promises more payload than the client's buffer (or the wrong size for
 * stats), when an escaped message holds anything but printable ASCII or
 * overruns its buffer, or when ctl_absolute_path() returns a path that is
 * not absolute and tidy (leading '/', no "//", no "." component, no
 * trailing '/' except "/", at most EMBER_CONTROL_PATH_MAX bytes).
 *
 * Input: byte 0 selects the command (1..5 after reduction, sometimes out of
 * range), bytes 1..16 are the response header, the rest is the payload;
 * the payload also serves as "cwd\0path" for the path builder.
 *
 * Build: clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Icommon -Ivmm -Ictl
 *        -fsanitize=fuzzer,address,undefined tests/ctl/fuzz_ctl_response.c
 *        ctl/control_client.c common/error.c -o build/fuzz/fuzz_ctl_response
 * Run:   build/fuzz/fuzz_ctl_response -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *path)
{
	size_t length = strlen(path);
	if (path[0] != '/' || length > EMBER_CONTROL_PATH_MAX)
		abort();
	if (length > 1 && path[length - 1] == '/')
		abort();
	if (strstr(path, "//") || strstr(path, "/./"))
		abort();
	if (length >= 2 && strcmp(path + length - 2, "/.") == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 + sizeof(struct ember_control_header))
		return 0;
	uint16_t command = (uint16_t)(data[0] % 7); /* 0 and 6 are out of range */
	const uint8_t *header = data + 1;
	const uint8_t *payload = header + sizeof(struct ember_control_header);
	size_t payload_size = size - 1 - sizeof(struct ember_control_header);
	struct ember_error err;

	uint16_t status;
	uint32_t length;
	if (ctl_parse_response_header(header, command, &status, &length, &err) == 0) {
		if (length > CTL_RESPONSE_PAYLOAD_MAX || status > EMBER_CONTROL_FAILED)
			abort();
		if (command == EMBER_CONTROL_STATS && status == EMBER_CONTROL_OK &&
		    length != sizeof(struct ember_control_stats))
			abort();
		size_t available = length < payload_size ? length : payload_size;
		struct ember_control_stats stats;
		if (command == EMBER_CONTROL_STATS && status == EMBER_CONTROL_OK &&
		    ctl_parse_stats(payload, available, &stats, &err) == 0)
			(void)ctl_state_name(stats.state);
	}

	static char escaped[CTL_ESCAPED_MESSAGE_MAX];
	size_t message_size = payload_size < EMBER_CONTROL_MESSAGE_MAX ? payload_size : EMBER_CONTROL_MESSAGE_MAX;
	size_t written = ctl_escape_message(payload, message_size, escaped, 1 + data[0] % sizeof escaped);
	if (escaped[written] != '\0' || strlen(escaped) != written)
		abort();
	for (size_t i = 0; i < written; i++)
		if (escaped[i] < 0x20 || escaped[i] > 0x7e)
			abort();
	/* The full-size buffer always holds a whole message. */
	size_t expected = 0;
	for (size_t i = 0; i < message_size; i++)
		expected += payload[i] == '\\' ? 2 : payload[i] >= 0x20 && payload[i] <= 0x7e ? 1 : 4;
	if (ctl_escape_message(payload, message_size, escaped, sizeof escaped) != expected)
		abort();

	/* "cwd\0path" from the payload, both NUL-terminated copies. */
	char *text = malloc(payload_size + 2);
	if (!text)
		return 0;
	memcpy(text, payload, payload_size);
	text[payload_size] = text[payload_size + 1] = '\0';
	const char *cwd = text, *path = text + strlen(text) + 1;
	if (path > text + payload_size)
		path = text + payload_size;
	char out[EMBER_CONTROL_PATH_MAX + 1];
	if (ctl_absolute_path(cwd, path, out, sizeof out, &err) == 0)
		check_path(out);
	free(text);
	return 0;
}
