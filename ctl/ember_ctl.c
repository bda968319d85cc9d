/* ember-ctl: sends one command to a running ember-vmm over its control
 * socket (vmm/control_protocol.h) and reports the answer.
 *
 *   ember-ctl [--timeout S] SOCK pause|resume|snapshot DIR|stats|quit
 *
 * Options may come anywhere; `--` ends them (for a DIR starting with '-').
 * Exit status: 0 when the VMM answered OK; 1 for a connection or protocol
 * error, the timeout included; 2 for a usage error; 3 when the VM's state
 * does not allow the command; 4 when the VMM refused the request as
 * malformed or tried and failed.  stats prints one JSON object on stdout;
 * every failure is reported once, on stderr, by main.  The VMM's messages
 * are escaped to printable ASCII before they reach a terminal. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control_client.h"

#define EXIT_OK                  0
#define EXIT_ERROR               1
#define EXIT_USAGE               2
#define EXIT_NOT_ALLOWED         3
#define EXIT_REFUSED             4
#define DEFAULT_TIMEOUT_SECONDS  10.0
#define SNAPSHOT_TIMEOUT_SECONDS 30.0
#define TIMEOUT_MAX_SECONDS      86400.0

/* The largest json_int_t: jansson's integers are long or long long. */
#if JSON_INTEGER_IS_LONG_LONG
#define JSON_INTEGER_LARGEST LLONG_MAX
#else
#define JSON_INTEGER_LARGEST LONG_MAX
#endif

struct command_name {
	const char *name;
	uint16_t command;
};

static const struct command_name commands[] = {
	{"pause", EMBER_CONTROL_PAUSE},       {"resume", EMBER_CONTROL_RESUME},
	{"snapshot", EMBER_CONTROL_SNAPSHOT}, {"stats", EMBER_CONTROL_STATS},
	{"quit", EMBER_CONTROL_QUIT},
};

struct options {
	const char *socket_path;
	const char *command_name;
	uint16_t command;
	const char *snapshot_dir; /* SNAPSHOT only */
	double timeout_seconds;   /* 0: the command's default */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ember-ctl [--timeout S] SOCK pause|resume|snapshot DIR|stats|quit\n"
		"Sends one command to the ember-vmm listening on SOCK (ember-vmm --control-sock SOCK)\n"
		"and reports its answer.\n"
		"  pause          stop the guest at a consistent point\n"
		"  resume         let a paused guest continue\n"
		"  snapshot DIR   save the paused VM into the new directory DIR; a relative DIR is\n"
		"                 taken from this command's working directory, not the VMM's\n"
		"  stats          print memory, dirty pages, system calls and state as one JSON object\n"
		"  quit           stop the VM and its VMM\n"
		"  -t, --timeout S  give up when the VMM has not answered within S seconds\n"
		"                   (default %g for snapshot, %g for every other command)\n"
		"  -h, --help       show this text\n"
		"Options may come anywhere; put -- before a DIR that starts with '-'.\n"
		"Exit status: 0 done; 1 connection or protocol error, or the timeout; 2 usage error;\n"
		"3 not allowed in the VM's current state; 4 refused as malformed, or failed.\n",
		SNAPSHOT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS);
}

/* Parses argv into `opt`.  Returns 0 to go on, 1 when --help was shown, or
 * -1 with a usage error in `err`. */
static int parse_options(int argc, char **argv, struct options *opt, struct ember_error *err)
{
	static const struct option long_options[] = {
		{"help", no_argument, NULL, 'h'},
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	memset(opt, 0, sizeof *opt);
	opterr = 0;
	int option;
	while ((option = getopt_long(argc, argv, "ht:", long_options, NULL)) != -1) {
		switch (option) {
		case 'h': usage(stdout); return 1;
		case 't': {
			char *end;
			errno = 0;
			double value = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(value > 0 && value <= TIMEOUT_MAX_SECONDS))
				return ember_error_set(
					err, "--timeout `%s`: expected seconds, more than 0 and at most %g",
					optarg, TIMEOUT_MAX_SECONDS);
			opt->timeout_seconds = value;
			break;
		}
		default:
			if (optopt == 't')
				return ember_error_set(err, "--timeout needs a number of seconds");
			if (optopt > 0 && optopt < 128)
				return ember_error_set(err, "unknown option `-%c`", optopt);
			return ember_error_set(err, "unknown option `%s`", argv[optind - 1]);
		}
	}
	int positional = argc - optind;
	if (positional < 2)
		return ember_error_set(err, positional == 0 ? "expected SOCK and a command"
							    : "expected a command");
	opt->socket_path = argv[optind];
	opt->command_name = argv[optind + 1];
	if (opt->socket_path[0] == '\0')
		return ember_error_set(err, "SOCK is empty");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(opt->command_name, commands[i].name) == 0)
			opt->command = commands[i].command;
	if (opt->command == 0)
		return ember_error_set(err, "unknown command `%s`", opt->command_name);
	int arguments = positional - 2;
	if (opt->command == EMBER_CONTROL_SNAPSHOT) {
		if (arguments != 1)
			return ember_error_set(err, "snapshot takes exactly one DIR");
		opt->snapshot_dir = argv[optind + 2];
		if (opt->snapshot_dir[0] == '\0')
			return ember_error_set(err, "snapshot: DIR is empty");
	} else if (arguments != 0) {
		return ember_error_set(err, "%s takes no argument", opt->command_name);
	}
	if (opt->timeout_seconds == 0)
		opt->timeout_seconds = opt->command == EMBER_CONTROL_SNAPSHOT ? SNAPSHOT_TIMEOUT_SECONDS
									      : DEFAULT_TIMEOUT_SECONDS;
	return 0;
}

/* Adds `value` to `object` under `key` as a JSON integer, which jansson
 * holds signed: a value past its range is an error, never a wrapped one. */
static int set_unsigned(json_t *object, const char *key, uint64_t value, struct ember_error *err)
{
	if (value > (uint64_t)JSON_INTEGER_LARGEST)
		return ember_error_set(err, "stats: %s %llu is past the JSON integer range", key,
				       (unsigned long long)value);
	if (json_object_set_new(object, key, json_integer((json_int_t)value)) < 0)
		return ember_error_set(err, "stats: build JSON: out of memory");
	return 0;
}

/* Renders `stats` as one JSON object on one line.  Returns a string the
 * caller frees with free(), or NULL with `err` set. */
static char *stats_to_json(const struct ember_control_stats *stats, struct ember_error *err)
{
	json_t *object = json_object();
	char *text = NULL;
	if (!object) {
		ember_error_set(err, "stats: build JSON: out of memory");
		return NULL;
	}
	if (set_unsigned(object, "guest_memory_bytes", stats->guest_memory_bytes, err) < 0 ||
	    set_unsigned(object, "host_rss_bytes", stats->host_rss_bytes, err) < 0 ||
	    set_unsigned(object, "host_private_bytes", stats->host_private_bytes, err) < 0 ||
	    set_unsigned(object, "dirty_pages", stats->dirty_pages, err) < 0 ||
	    set_unsigned(object, "syscalls", stats->syscalls, err) < 0)
		goto out;
	if (json_object_set_new(object, "state", json_string(ctl_state_name(stats->state))) < 0 ||
	    json_object_set_new(object, "platform", json_string(ctl_platform_name(stats->platform))) < 0) {
		ember_error_set(err, "stats: build JSON: out of memory");
		goto out;
	}
	text = json_dumps(object, JSON_PRESERVE_ORDER);
	if (!text)
		ember_error_set(err, "stats: render JSON: out of memory");
out:
	json_decref(object);
	return text;
}

/* Reports a refusal or failure answered by the VMM; returns the exit status. */
static int report_status(const struct options *opt, const struct ctl_response *response)
{
	static char message[CTL_ESCAPED_MESSAGE_MAX];
	ctl_escape_message(response->payload, response->payload_length, message, sizeof message);
	const char *what = response->status == EMBER_CONTROL_NOT_ALLOWED   ? "not allowed"
			   : response->status == EMBER_CONTROL_BAD_REQUEST ? "bad request"
									   : "failed";
	fprintf(stderr, "ember-ctl: %s: %s%s%s\n", opt->command_name, what, message[0] ? ": " : "", message);
	return response->status == EMBER_CONTROL_NOT_ALLOWED ? EXIT_NOT_ALLOWED : EXIT_REFUSED;
}

/* Prints the answer to a command the VMM carried out; returns the exit status. */
static int report_ok(const struct options *opt, const struct ctl_response *response)
{
	struct ember_error err;
	if (opt->command == EMBER_CONTROL_STATS) {
		struct ember_control_stats stats;
		char *json;
		if (ctl_parse_stats(response->payload, response->payload_length, &stats, &err) < 0 ||
		    !(json = stats_to_json(&stats, &err))) {
			fprintf(stderr, "ember-ctl: stats on `%s`: %s\n", opt->socket_path, err.message);
			return EXIT_ERROR;
		}
		printf("%s\n", json);
		free(json);
	} else if (response->payload_length > 0) {
		static char message[CTL_ESCAPED_MESSAGE_MAX];
		ctl_escape_message(response->payload, response->payload_length, message, sizeof message);
		printf("%s\n", message);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "ember-ctl: write standard output: %s\n", strerror(errno));
		return EXIT_ERROR;
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct ember_error err;
	struct options opt;
	int parsed = parse_options(argc, argv, &opt, &err);
	if (parsed > 0)
		return EXIT_OK;
	if (parsed < 0) {
		fprintf(stderr, "ember-ctl: %s\n", err.message);
		usage(stderr);
		return EXIT_USAGE;
	}

	/* The VMM resolves paths against its own working directory, not ours. */
	static char snapshot_path[EMBER_CONTROL_PATH_MAX + 1];
	size_t payload_length = 0;
	if (opt.command == EMBER_CONTROL_SNAPSHOT) {
		static char cwd[PATH_MAX + 1];
		if (opt.snapshot_dir[0] != '/' && !getcwd(cwd, sizeof cwd)) {
			fprintf(stderr, "ember-ctl: snapshot `%s`: find the working directory: %s\n",
				opt.snapshot_dir, strerror(errno));
			return EXIT_ERROR;
		}
		if (ctl_absolute_path(cwd, opt.snapshot_dir, snapshot_path, sizeof snapshot_path, &err) < 0) {
			fprintf(stderr, "ember-ctl: snapshot `%s`: %s\n", opt.snapshot_dir, err.message);
			return EXIT_USAGE;
		}
		payload_length = strlen(snapshot_path);
	}

	struct ctl_connection connection;
	if (ctl_connect(&connection, opt.socket_path, opt.timeout_seconds, &err) < 0) {
		fprintf(stderr, "ember-ctl: %s\n", err.message);
		return EXIT_ERROR;
	}
	static struct ctl_response response;
	if (ctl_send_request(&connection, opt.command, payload_length ? snapshot_path : NULL, payload_length,
			     &err) < 0 ||
	    ctl_receive_response(&connection, opt.command, &response, &err) < 0) {
		fprintf(stderr, "ember-ctl: %s on `%s`: %s\n", opt.command_name, opt.socket_path,
			err.message);
		ctl_close(&connection);
		return EXIT_ERROR;
	}
	ctl_close(&connection);
	if (response.status != EMBER_CONTROL_OK)
		return report_status(&opt, &response);
	return report_ok(&opt, &response);
}
