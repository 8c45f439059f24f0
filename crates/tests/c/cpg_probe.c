/*
 * cpg_probe: a CPG client written against Corosync's libcpg API, used by
 * the cluster tests (compiled with the system cc against the installed
 * headers and -lcpg).
 *
 *   cpg_probe GROUP MEMBERS COUNT [SIZE [agreed|safe]]
 *
 * Joins GROUP, waits until the group has MEMBERS processes, multicasts
 * COUNT messages ("<nodeid>:<k>", padded to SIZE bytes with a pattern, in
 * CPG_TYPE_AGREED or CPG_TYPE_SAFE), and prints one line per event on
 * stdout (flushed):
 *
 *   LOCAL <nodeid> <pid>
 *   CONFCHG <members> LEFT <nodeid>:<pid>:<reason>,... JOINED ...
 *   DELIVER <nodeid> <pid> <message up to its first NUL or 64 bytes>
 *           [<length> <checksum>]   (for messages longer than 64 bytes)
 *   DONE                      (all MEMBERS x COUNT messages delivered)
 *
 * It keeps dispatching until stdin is closed or 60 s pass, so the test
 * can watch later configuration changes (NODEDOWN, PROCDOWN).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <corosync/corotypes.h>
#include <corosync/cpg.h>

static unsigned int want_members;
static unsigned int have_members;
static unsigned long delivered;

static void print_list(const char *tag, const struct cpg_address *l, size_t n)
{
	size_t i;
	printf(" %s ", tag);
	for (i = 0; i < n; i++)
		printf("%s%u:%u:%u", i ? "," : "", l[i].nodeid, l[i].pid, l[i].reason);
	if (n == 0)
		printf("-");
}

static void deliver_fn(cpg_handle_t handle, const struct cpg_name *group,
		       uint32_t nodeid, uint32_t pid, void *msg, size_t len)
{
	(void)handle;
	(void)group;
	if (len <= 64) {
		printf("DELIVER %u %u %.*s\n", nodeid, pid, (int)len, (const char *)msg);
	} else {
		/* FNV-1a over the whole message: the test compares it across nodes. */
		const unsigned char *b = msg;
		uint64_t h = 1469598103934665603ULL;
		size_t i;
		for (i = 0; i < len; i++)
			h = (h ^ b[i]) * 1099511628211ULL;
		printf("DELIVER %u %u %s %zu %016llx\n", nodeid, pid, (const char *)msg, len,
		       (unsigned long long)h);
	}
	fflush(stdout);
	delivered++;
}

static void confchg_fn(cpg_handle_t handle, const struct cpg_name *group,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined, size_t n_joined)
{
	(void)handle;
	(void)group;
	printf("CONFCHG %zu", n_members);
	print_list("LEFT", left, n_left);
	print_list("JOINED", joined, n_joined);
	printf("\n");
	fflush(stdout);
	have_members = (unsigned int)n_members;
}

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int dispatch_for(cpg_handle_t h, int fd, int ms, int *stdin_open)
{
	struct pollfd p[2] = { { fd, POLLIN, 0 }, { 0, POLLIN, 0 } };
	int n = poll(p, *stdin_open ? 2 : 1, ms);
	cs_error_t err;

	if (n < 0 && errno != EINTR)
		return -1;
	if (*stdin_open && (p[1].revents & (POLLIN | POLLHUP))) {
		char buf[64];
		if (read(0, buf, sizeof(buf)) <= 0)
			*stdin_open = 0;
	}
	err = cpg_dispatch(h, CS_DISPATCH_ALL);
	if (err != CS_OK && err != CS_ERR_TRY_AGAIN) {
		printf("ERROR dispatch %d\n", err);
		fflush(stdout);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	cpg_callbacks_t cb = { deliver_fn, confchg_fn };
	struct cpg_name group;
	cpg_handle_t h;
	cs_error_t err;
	unsigned int nodeid = 0, count, k, tries;
	size_t size = 0;
	cpg_guarantee_t guarantee = CPG_TYPE_AGREED;
	char *buf;
	int fd, stdin_open = 1;
	time_t start;

	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: %s GROUP MEMBERS COUNT [SIZE [agreed|safe]]\n", argv[0]);
		return 2;
	}
	want_members = (unsigned int)atoi(argv[2]);
	count = (unsigned int)atoi(argv[3]);
	if (argc >= 5)
		size = (size_t)atol(argv[4]);
	if (argc == 6 && strcmp(argv[5], "safe") == 0)
		guarantee = CPG_TYPE_SAFE;
	buf = malloc(size + 64);
	if (buf == NULL)
		return 1;
	group.length = (uint32_t)strlen(argv[1]);
	memcpy(group.value, argv[1], group.length);

	/* The daemon refuses clients (TRY_AGAIN) until its first sync. */
	for (tries = 0; (err = cpg_initialize(&h, &cb)) != CS_OK; tries++) {
		if (tries > 200) {
			printf("ERROR initialize %d\n", err);
			return 1;
		}
		pause_ms(50);
	}
	if ((err = cpg_local_get(h, &nodeid)) != CS_OK) {
		printf("ERROR local_get %d\n", err);
		return 1;
	}
	printf("LOCAL %u %d\n", nodeid, (int)getpid());
	fflush(stdout);
	for (tries = 0; (err = cpg_join(h, &group)) != CS_OK; tries++) {
		if (err != CS_ERR_TRY_AGAIN || tries > 200) {
			printf("ERROR join %d\n", err);
			return 1;
		}
		pause_ms(50);
	}
	if ((err = cpg_fd_get(h, &fd)) != CS_OK) {
		printf("ERROR fd_get %d\n", err);
		return 1;
	}
	start = time(NULL);
	while (have_members < want_members) {
		if (dispatch_for(h, fd, 100, &stdin_open) < 0 || time(NULL) - start > 60)
			return 1;
	}
	for (k = 0; k < count; k++) {
		struct iovec iov;
		size_t len = (size_t)snprintf(buf, 64, "%u:%u", nodeid, k);

		if (size > len) {
			size_t i;
			buf[len] = 0;
			for (i = len + 1; i < size; i++)
				buf[i] = (char)(i * 31 + k);
			len = size;
		}
		iov.iov_base = buf;
		iov.iov_len = len;
		while ((err = cpg_mcast_joined(h, guarantee, &iov, 1)) == CS_ERR_TRY_AGAIN)
			dispatch_for(h, fd, 1, &stdin_open);
		if (err != CS_OK) {
			printf("ERROR mcast %d\n", err);
			return 1;
		}
	}
	while (delivered < (unsigned long)want_members * count) {
		if (dispatch_for(h, fd, 100, &stdin_open) < 0 || time(NULL) - start > 60)
			return 1;
	}
	printf("DONE\n");
	fflush(stdout);
	while (stdin_open && time(NULL) - start < 60) {
		if (dispatch_for(h, fd, 100, &stdin_open) < 0)
			return 1;
	}
	cpg_finalize(h);
	return 0;
}
