/*
 * A second process for tests/daemon_api.rs (one process may not join a
 * group twice): joins GROUP through the C API and prints one line per
 * event on stdout (flushed):
 *
 *   READY <pid>                         (joined)
 *   CONFCHG <members> LEFT <pid>:<reason>,... JOINED <pid>:<reason>,...
 *   DELIVER <nodeid> <pid> <message>
 *
 * Every message from another process is answered with "from peer". It
 * exits (without cpg_finalize: the daemon sees the process go) when stdin
 * closes, and with status 2 after 30 s or on an error.
 *
 *   peer GROUP
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <corosync/cpg.h>

static void print_list(const char *tag, const struct cpg_address *l, size_t n)
{
	size_t i;
	printf(" %s ", tag);
	for (i = 0; i < n; i++)
		printf("%s%u:%u", i ? "," : "", l[i].pid, l[i].reason);
	if (n == 0)
		printf("-");
}

static void confchg(cpg_handle_t h, const struct cpg_name *g,
		    const struct cpg_address *m, size_t mn,
		    const struct cpg_address *l, size_t ln,
		    const struct cpg_address *j, size_t jn)
{
	(void)h; (void)g; (void)m;
	printf("CONFCHG %zu", mn);
	print_list("LEFT", l, ln);
	print_list("JOINED", j, jn);
	printf("\n");
	fflush(stdout);
}

static void deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid,
		    uint32_t pid, void *msg, size_t len)
{
	static char reply[] = "from peer";
	struct iovec iov = { reply, sizeof(reply) - 1 };
	cs_error_t e;
	(void)g;
	printf("DELIVER %u %u %.*s\n", nodeid, pid, (int)len, (const char *)msg);
	fflush(stdout);
	if (pid == (uint32_t)getpid())
		return;
	while ((e = cpg_mcast_joined(h, CPG_TYPE_AGREED, &iov, 1)) == CS_ERR_TRY_AGAIN)
		usleep(1000);
	if (e != CS_OK) {
		printf("MCAST_ERROR %d\n", e);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	cpg_handle_t h;
	cpg_callbacks_t cbs = { deliver, confchg };
	struct cpg_name name;
	cs_error_t e;
	int fd = -1;
	time_t end = time(NULL) + 30;

	if (argc != 2 || strlen(argv[1]) > CPG_MAX_NAME_LENGTH)
		return 2;
	name.length = strlen(argv[1]);
	memcpy(name.value, argv[1], name.length);
	if ((e = cpg_initialize(&h, &cbs)) != CS_OK) {
		printf("INIT_ERROR %d\n", e);
		return 2;
	}
	while ((e = cpg_join(h, &name)) == CS_ERR_TRY_AGAIN)
		usleep(1000);
	if (e != CS_OK || cpg_fd_get(h, &fd) != CS_OK) {
		printf("JOIN_ERROR %d\n", e);
		return 2;
	}
	printf("READY %d\n", (int)getpid());
	fflush(stdout);
	while (time(NULL) < end) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { 0, POLLIN, 0 } };
		char buf[64];
		if (poll(p, 2, 100) < 0)
			return 2;
		if (p[1].revents && read(0, buf, sizeof(buf)) <= 0)
			return 0;
		if (p[0].revents && (e = cpg_dispatch(h, CS_DISPATCH_ALL)) != CS_OK) {
			printf("DISPATCH_ERROR %d\n", e);
			return 2;
		}
	}
	return 2;
}
