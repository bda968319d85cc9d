/* ember-vmm: runs one Linux program in a new kernel-less microVM, or
 * resumes one from a snapshot, on the KVM or the systrap platform.
 *
 *   ember-vmm run [--platform P] [--mem MiB] [--root DIR] [--task DIR] [--env K=V ...]
 *                 [--timeout S] [--trace] [--control-sock PATH] -- PROGRAM [ARGS...]
 *   ember-vmm restore DIR [--platform P] [--control-sock PATH] [--timeout S] [--paused] [--trace]
 *
 * P is kvm, systrap or auto (the default: KVM where /dev/kvm works).
 *
 * Exit status: the guest's own; 128+N when the guest was killed by signal
 * N; 124 when --timeout expired; 125 for a usage or host error; 126 when
 * the program cannot be loaded (not a valid ELF); 127 when it does not
 * exist.  Every failure is reported once, on stderr, by main. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "elf_loader.h"
#include "guest_layout.h"
#include "memfs.h"
#include "platform.h"
#include "process.h"
#include "snapshot.h"
#include "vcpu_loop.h"

#define EXIT_TIMEOUT        124
#define EXIT_HOST_ERROR     125
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND      127
#define DEFAULT_MEM_MIB     128
#define MAX_ENV             256
#define STACK_MAX           (8ULL << 20)
#define SYMLINK_DEPTH_MAX   40

extern const uint8_t vmm_vdso_image_start[], vmm_vdso_image_end[];

struct options {
	bool restore;
	const char *snapshot_dir;
	const char *control_sock;
	const char *runtime_api;
	const char *hot_pages;
	const char *platform;
	bool paused;
	bool pretouch;
	uint64_t mem_mib;
	const char *root;
	const char *task;
	const char *env[MAX_ENV];
	int env_count;
	double timeout;
	bool trace;
	int argc;
	char **argv;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ember-vmm run [--platform P] [--mem MiB] [--root DIR] [--task DIR] [--env K=V ...]\n"
		"                     [--timeout S] [--trace] [--control-sock PATH] [--runtime-api PATH]\n"
		"                     -- PROGRAM [ARGS...]\n"
		"       ember-vmm restore DIR [--platform P] [--root DIR] [--task DIR] [--control-sock PATH]\n"
		"                     [--runtime-api PATH] [--timeout S]\n"
		"                     [--paused] [--pretouch] [--hot-pages FILE] [--trace]\n"
		"       ember-vmm platforms   (which platforms can run on this host, and why not)\n"
		"Runs PROGRAM (a path inside the guest) in a new microVM, or resumes the VM saved\n"
		"in snapshot DIR, and exits with the guest's status.\n"
		"  --platform P  what runs the guest's instructions: kvm (a KVM VM), systrap (a stub\n"
		"                process under seccomp traps) or auto (default: kvm where /dev/kvm\n"
		"                works, else systrap; the environment's EMBER_PLATFORM if set);\n"
		"                --trace names the choice\n"
		"  --mem MiB     guest memory and memory cap, 16..16384 (default %d)\n"
		"  --root DIR    read-only root layer, the guest's / (default: build/rootfs/base beside\n"
		"                this binary)\n"
		"  --task DIR    read-only layer mounted at /var/task (the working directory)\n"
		"                (restore: the layers to use instead of those the snapshot recorded;\n"
		"                give them when the snapshot comes from elsewhere)\n"
		"  --env K=V     a guest environment variable (repeatable)\n"
		"  --timeout S   stop the guest after S seconds (exit 124)\n"
		"  --trace       name unimplemented and failing system calls on stderr\n"
		"  --control-sock PATH  serve pause/resume/snapshot/stats/quit on a Unix socket\n"
		"  --runtime-api PATH   forward the guest's TCP connections to 127.0.0.1:9001 (the AWS\n"
		"                Lambda Runtime API) to this host Unix socket\n"
		"  --paused      (restore) wait, fully set up, for `resume` on the control socket\n"
		"  --pretouch    (restore) map the snapshot's memory in before the guest runs\n"
		"  --hot-pages FILE  (restore) copy ahead the pages FILE lists (written by ember-invoke)\n",
		DEFAULT_MEM_MIB);
}

static int parse_number(const char *text, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (errno || end == text || *end || value < min || value > max)
		return -1;
	*out = value;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *opt, struct ember_error *err)
{
	memset(opt, 0, sizeof *opt);
	opt->mem_mib = DEFAULT_MEM_MIB;
	if (argc < 2 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "restore") != 0))
		return ember_error_set(err, "expected the `run` or `restore` command");
	int i = 2;
	if (strcmp(argv[1], "restore") == 0) {
		opt->restore = true;
		if (argc < 3 || argv[2][0] == '-')
			return ember_error_set(err, "restore needs a snapshot directory");
		opt->snapshot_dir = argv[2];
		i = 3;
	}
	for (; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		} else if (strcmp(arg, "--trace") == 0) {
			opt->trace = true;
			continue;
		} else if (strcmp(arg, "--paused") == 0 && opt->restore) {
			opt->paused = true;
			continue;
		} else if (strcmp(arg, "--pretouch") == 0 && opt->restore) {
			opt->pretouch = true;
			continue;
		} else if (arg[0] != '-' || arg[1] != '-') {
			break; /* the program: `--` is optional */
		}
		if (!value)
			return ember_error_set(err, "option %s needs a value", arg);
		i++;
		if (strcmp(arg, "--control-sock") == 0) {
			opt->control_sock = value;
		} else if (strcmp(arg, "--runtime-api") == 0) {
			opt->runtime_api = value;
		} else if (strcmp(arg, "--hot-pages") == 0 && opt->restore) {
			opt->hot_pages = value;
		} else if (strcmp(arg, "--platform") == 0) {
			if (strcmp(value, "kvm") != 0 && strcmp(value, "systrap") != 0 &&
			    strcmp(value, "auto") != 0)
				return ember_error_set(err, "--platform %s: expected kvm, systrap or auto",
						       value);
			opt->platform = value;
		} else if (opt->restore && strcmp(arg, "--timeout") != 0 &&
			   strcmp(arg, "--runtime-api") != 0 && strcmp(arg, "--root") != 0 &&
			   strcmp(arg, "--task") != 0) {
			return ember_error_set(err, "option %s does not apply to restore", arg);
		} else if (strcmp(arg, "--mem") == 0) {
			double mib;
			if (parse_number(value, 16, 16384, &mib) < 0 || mib != (double)(uint64_t)mib)
				return ember_error_set(
					err, "--mem %s: expected a whole number of MiB from 16 to 16384",
					value);
			opt->mem_mib = (uint64_t)mib;
		} else if (strcmp(arg, "--root") == 0) {
			opt->root = value;
		} else if (strcmp(arg, "--task") == 0) {
			opt->task = value;
		} else if (strcmp(arg, "--env") == 0) {
			if (!strchr(value, '=') || value[0] == '=')
				return ember_error_set(err, "--env %s: expected KEY=VALUE", value);
			if (opt->env_count == MAX_ENV)
				return ember_error_set(err, "more than %d --env options", MAX_ENV);
			opt->env[opt->env_count++] = value;
		} else if (strcmp(arg, "--timeout") == 0) {
			if (parse_number(value, 0.001, 86400 * 365, &opt->timeout) < 0)
				return ember_error_set(err, "--timeout %s: expected seconds greater than 0",
						       value);
		} else {
			return ember_error_set(err, "unknown option %s", arg);
		}
	}
	if (opt->restore) {
		if (i < argc)
			return ember_error_set(err, "unexpected argument `%s` after the snapshot directory",
					       argv[i]);
		if (opt->paused && !opt->control_sock)
			return ember_error_set(err, "--paused needs --control-sock to be resumed");
		return 0;
	}
	if (i >= argc)
		return ember_error_set(err, "no program given");
	opt->argc = argc - i;
	opt->argv = argv + i;
	return 0;
}

/* build/bin/../rootfs/base, or build/sanitize/bin/../../rootfs/base. */
static char *default_root(void)
{
	static char path[VMM_PATH_MAX];
	char self[VMM_PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return NULL;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	static const char *const candidates[] = {"../rootfs/base", "../../rootfs/base"};
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", self, candidates[i]);
		if (access(path, F_OK) == 0)
			return path;
	}
	return NULL;
}

/* Builds the guest environment: defaults a Lambda function would see,
 * overridden by --env.  Later entries win. */
static int build_environment(const struct options *opt, char **envp)
{
	static const char *defaults[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp"};
	int count = 0;
	for (size_t d = 0; d < sizeof defaults / sizeof defaults[0]; d++) {
		size_t key_len = strchr(defaults[d], '=') - defaults[d] + 1;
		bool overridden = false;
		for (int e = 0; e < opt->env_count; e++)
			if (strncmp(opt->env[e], defaults[d], key_len) == 0)
				overridden = true;
		if (!overridden)
			envp[count++] = (char *)defaults[d];
	}
	for (int e = 0; e < opt->env_count; e++) {
		size_t key_len = strchr(opt->env[e], '=') - opt->env[e] + 1;
		bool later = false;
		for (int f = e + 1; f < opt->env_count; f++)
			if (strncmp(opt->env[f], opt->env[e], key_len) == 0)
				later = true;
		if (!later)
			envp[count++] = (char *)opt->env[e];
	}
	return count;
}

/* Resolves PROGRAM to an absolute guest path: searched in PATH when it has
 * no slash, symlinks followed (for /proc/self/exe).  0 or -errno. */
static int resolve_program(struct vmm_process *process, const char *program, char *out)
{
	char candidate[VMM_PATH_MAX];
	struct stat st;
	int rc = -ENOENT;
	if (!strchr(program, '/')) {
		static const char *const dirs[] = {"/usr/local/bin", "/usr/bin", "/bin"};
		for (size_t d = 0; d < 3 && rc < 0; d++) {
			snprintf(candidate, sizeof candidate, "%s/%s", dirs[d], program);
			rc = vmm_path_stat(&process->layers, candidate, true, &st);
		}
	} else {
		rc = vmm_path_join(process->cwd, program, candidate);
		if (rc == 0)
			rc = vmm_path_stat(&process->layers, candidate, true, &st);
	}
	if (rc < 0)
		return rc;
	if (!S_ISREG(st.st_mode))
		return -EACCES;
	for (int depth = 0; depth < SYMLINK_DEPTH_MAX; depth++) {
		char target[VMM_PATH_MAX];
		int64_t n = vmm_path_readlink(&process->layers, candidate, target, sizeof target - 1);
		if (n < 0)
			break;
		target[n] = '\0';
		char *slash = strrchr(candidate, '/');
		slash[slash == candidate ? 1 : 0] = '\0';
		char next[VMM_PATH_MAX];
		if (vmm_path_join(candidate, target, next) < 0)
			return -ENAMETOOLONG;
		memcpy(candidate, next, sizeof candidate);
	}
	memcpy(out, candidate, VMM_PATH_MAX);
	return 0;
}

static int install_stdio(struct vmm_process *process, struct ember_error *err)
{
	for (int fd = 0; fd < 3; fd++) {
		struct vmm_file *file = vmm_file_new(VMM_FILE_STDIO, O_RDWR);
		if (!file)
			return ember_error_set(err, "allocate stdio: out of memory");
		file->host_fd = fd;
		vmm_fd_install_at(&process->fds, file, fd, false);
	}
	return 0;
}

static int set_up(struct vmm_process *process, const struct options *opt, int *exit_code,
		  struct ember_error *err)
{
	*exit_code = EXIT_HOST_ERROR;
	const char *root = opt->root ? opt->root : default_root();
	if (!root)
		return ember_error_set(err, "no --root given and the default root cannot be found");
	size_t vdso_size = (size_t)(vmm_vdso_image_end - vmm_vdso_image_start);
	if (vmm_vm_create(&process->vm, process->platform, opt->mem_mib << 20, vmm_vdso_image_start, vdso_size,
			  err) < 0)
		return -1;
	vmm_mm_init(&process->mm, &process->vm);
	if (vmm_layers_open(&process->layers, root, opt->task, err) < 0)
		return -1;
	if (vmm_memfs_init(&process->layers.tmp, &process->mm) < 0)
		return ember_error_set(err, "create /tmp: out of memory");
	snprintf(process->cwd, sizeof process->cwd, "%s", opt->task ? "/var/task" : "/");
	process->umask = 022;
	process->trace = opt->trace;
	if (install_stdio(process, err) < 0)
		return -1;

	uint64_t stack_size = process->mm.limit_bytes / 8;
	if (stack_size > STACK_MAX)
		stack_size = STACK_MAX;
	stack_size &= ~(GUEST_PAGE_SIZE - 1);
	int rc = vmm_mm_setup_process(&process->mm, stack_size, 0);
	if (rc < 0)
		return ember_error_errno(err, -rc, "map the %llu KiB stack",
					 (unsigned long long)(stack_size >> 10));

	rc = resolve_program(process, opt->argv[0], process->layers.exe_path);
	if (rc < 0) {
		*exit_code = rc == -ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
		return ember_error_errno(err, -rc, "program `%s` in root `%s`", opt->argv[0], root);
	}
	struct vmm_exec_image image;
	if (vmm_elf_load(process, process->layers.exe_path, &image, err) < 0) {
		*exit_code = EXIT_CANNOT_EXECUTE;
		return -1;
	}
	process->mm.brk_start = process->mm.brk_current =
		(image.program_end + GUEST_PAGE_SIZE - 1) & ~(GUEST_PAGE_SIZE - 1);

	char *envp[MAX_ENV + 8];
	int envc = build_environment(opt, envp);
	uint64_t rsp;
	if (vmm_stack_setup(process, &image, opt->argc, opt->argv, envc, envp, process->layers.exe_path, &rsp,
			    err) < 0)
		return -1;
	if (process->vm.platform->set_entry(&process->vm, image.entry, rsp, err) < 0)
		return -1;
	struct vmm_tsc_source tsc;
	if (process->vm.platform->tsc(&process->vm, &tsc, err) < 0 ||
	    vmm_clock_init(&process->clock, &tsc, err) < 0)
		return -1;
	vmm_clock_publish(&process->clock, process->vm.vvar);
	if (vmm_timeout_arm(process, opt->timeout, err) < 0)
		return -1;
	return 0;
}

static const char *signal_name(int signal)
{
	const char *abbrev = sigabbrev_np(signal);
	static char name[32];
	snprintf(name, sizeof name, "SIG%s", abbrev ? abbrev : "?");
	return name;
}

/* `ember-vmm platforms`: one line per platform, "NAME available" or
 * "NAME unavailable: why", best first (the order auto tries them in). */
static int list_platforms(void)
{
	const struct vmm_platform *const platforms[] = {&vmm_platform_kvm, &vmm_platform_systrap};
	for (size_t i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
		struct ember_error why;
		if (platforms[i]->available(&why) == 1)
			printf("%s available\n", platforms[i]->name);
		else
			printf("%s unavailable: %s\n", platforms[i]->name, why.message);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "platforms") == 0)
		return list_platforms();
	struct ember_error err;
	struct options opt;
	if (parse_options(argc, argv, &opt, &err) < 0) {
		fprintf(stderr, "ember-vmm: %s\n", err.message);
		usage(stderr);
		return EXIT_HOST_ERROR;
	}
	signal(SIGPIPE, SIG_IGN); /* a closed stdout is the guest's EPIPE, not our death */

	static struct vmm_process process;
	static struct vmm_control control;
	int exit_code = EXIT_HOST_ERROR;
	struct timespec start, ready;
	clock_gettime(CLOCK_MONOTONIC, &start);
	process.runtime_api_path = opt.runtime_api;
	process.pretouch = opt.pretouch;
	process.hot_pages_path = opt.hot_pages;
	if (opt.restore) {
		process.restore_root = opt.root;
		process.restore_task = opt.task;
	}
	int rc = vmm_interrupt_install(&err);
	if (rc == 0) {
		const char *from_environment = getenv("EMBER_PLATFORM");
		const char *name = opt.platform                               ? opt.platform
				   : from_environment && from_environment[0] ? from_environment
									     : "auto";
		process.platform = vmm_platform_choose(name, &err);
		rc = process.platform ? 0 : -1;
	}
	if (rc == 0 && opt.trace)
		fprintf(stderr, "ember-vmm: platform %s\n", process.platform->name);
	if (rc == 0 && opt.restore) {
		rc = vmm_snapshot_restore(&process, opt.snapshot_dir, &err);
		process.trace = opt.trace;
		if (rc == 0)
			rc = vmm_timeout_arm(&process, opt.timeout, &err);
	} else if (rc == 0) {
		rc = set_up(&process, &opt, &exit_code, &err);
	}
	if (rc == 0 && opt.control_sock) {
		rc = vmm_control_start(&control, &process, opt.control_sock, opt.paused, &err);
		if (rc == 0)
			process.control = &control;
	}
	if (rc < 0) {
		fprintf(stderr, "ember-vmm: %s\n", err.message);
		return exit_code;
	}
	clock_gettime(CLOCK_MONOTONIC, &ready);
	if (opt.trace)
		fprintf(stderr, "ember-vmm: VM %s in %ld us\n",
			opt.restore ? "restored" : "created and program loaded",
			(long)((ready.tv_sec - start.tv_sec) * 1000000 +
			       (ready.tv_nsec - start.tv_nsec) / 1000));
	rc = vmm_vcpu_run(&process, &err);
	if (process.control)
		vmm_control_stop(&control);
	if (rc < 0) {
		fprintf(stderr, "ember-vmm: %s\n", err.message);
		return EXIT_HOST_ERROR;
	}
	if (opt.trace)
		fprintf(stderr, "ember-vmm: %llu system calls served\n",
			(unsigned long long)process.syscall_count);
	switch (process.exit_kind) {
	case VMM_EXIT_STATUS: exit_code = process.exit_status; break;
	case VMM_EXIT_SIGNAL:
		fprintf(stderr, "ember-vmm: guest killed by %s: %s\n", signal_name(process.exit_signal),
			process.exit_reason);
		exit_code = 128 + process.exit_signal;
		break;
	case VMM_EXIT_QUIT: exit_code = 0; break;
	case VMM_EXIT_TIMEOUT:
		fprintf(stderr, "ember-vmm: guest timed out after %g s; vCPU stopped\n", opt.timeout);
		exit_code = EXIT_TIMEOUT;
		break;
	default: exit_code = EXIT_HOST_ERROR; break;
	}
	vmm_fd_close_all(&process.fds);
	vmm_memfs_destroy(&process.layers.tmp);
	vmm_layers_close(&process.layers);
	vmm_mm_destroy(&process.mm);
	vmm_vm_destroy(&process.vm);
	return exit_code;
}
