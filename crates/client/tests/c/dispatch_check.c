/*
 * Run by tests/c_dispatch.rs against the real daemon: the C API end
 * to end (callbacks, pollable fd, queries, iteration, zero-copy buffers,
 * finalize from inside a callback and from another thread, EVS).
 * Prints KEY=VALUE lines the Rust test compares.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <corosync/cpg.h>
#include <corosync/evs.h>

#define SHOW(name, value) printf("%s=%ld\n", name, (long)(value))

static int delivered, confchgs, finalize_in_callback;
static char last_msg[64];
static size_t last_joined;
static uint32_t last_pid;

static void deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid,
		    uint32_t pid, void *msg, size_t len)
{
	(void)g; (void)nodeid;
	delivered++;
	last_pid = pid;
	memcpy(last_msg, msg, len < sizeof(last_msg) - 1 ? len : sizeof(last_msg) - 1);
	if (finalize_in_callback) {
		SHOW("finalize_in_callback", cpg_finalize(h));
	}
}

static void confchg(cpg_handle_t h, const struct cpg_name *g,
		    const struct cpg_address *m, size_t mn,
		    const struct cpg_address *l, size_t ln,
		    const struct cpg_address *j, size_t jn)
{
	(void)h; (void)m; (void)l; (void)ln; (void)j;
	confchgs++;
	last_joined = jn;
	SHOW("confchg_members", mn);
	printf("confchg_group=%.*s\n", (int)g->length, g->value);
}

static int wait_readable(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	return poll(&p, 1, 5000);
}

static void *blocking_dispatch(void *arg)
{
	cpg_handle_t h = *(cpg_handle_t *)arg;
	SHOW("blocking_dispatch_after_finalize", cpg_dispatch(h, CS_DISPATCH_BLOCKING));
	return NULL;
}

static int evs_got;
static void evs_deliver(hdb_handle_t h, unsigned int nodeid, const void *msg, size_t len)
{
	(void)h; (void)nodeid;
	evs_got++;
	printf("evs_msg=%.*s\n", (int)len, (const char *)msg);
}

int main(void)
{
	cpg_handle_t h, h2;
	cpg_callbacks_t cbs = { deliver, confchg };
	struct cpg_name name = { 4, "grp1" };
	struct cpg_address members[CPG_MEMBERS_MAX];
	int entries = 0, fd = -1, marker = 42;
	void *ctx = NULL, *zcb = NULL;
	unsigned int nodeid = 0;
	uint32_t size = 0;
	cpg_flow_control_state_t fc = CPG_FLOW_CONTROL_ENABLED;
	cpg_iteration_handle_t it;
	struct cpg_iteration_description_t desc;
	char part1[] = "hello ", part2[] = "world";
	struct iovec iov[2] = { { part1, 6 }, { part2, 5 } };
	pthread_t thread;

	SHOW("init", cpg_initialize(&h, &cbs));
	SHOW("context_set", cpg_context_set(h, &marker));
	SHOW("context_get", cpg_context_get(h, &ctx));
	SHOW("context_ok", ctx == &marker);
	SHOW("fd_get", cpg_fd_get(h, &fd));
	SHOW("join", cpg_join(h, &name));
	SHOW("join_null", cpg_join(h, NULL));
	SHOW("poll_confchg", wait_readable(fd));
	SHOW("dispatch_one", cpg_dispatch(h, CS_DISPATCH_ONE));
	SHOW("confchgs", confchgs);
	SHOW("joined", last_joined);

	SHOW("mcast", cpg_mcast_joined(h, CPG_TYPE_AGREED, iov, 2));
	SHOW("mcast_null_iov", cpg_mcast_joined(h, CPG_TYPE_AGREED, NULL, 1));
	SHOW("mcast_bad_guarantee", cpg_mcast_joined(h, (cpg_guarantee_t)9, iov, 2));
	SHOW("poll_deliver", wait_readable(fd));
	SHOW("dispatch_all", cpg_dispatch(h, CS_DISPATCH_ALL));
	SHOW("delivered", delivered);
	printf("msg=%s\n", last_msg);
	SHOW("pid_ok", last_pid == (uint32_t)getpid());
	SHOW("dispatch_nonblocking_empty", cpg_dispatch(h, CS_DISPATCH_ONE_NONBLOCKING));
	SHOW("dispatch_bad_flags", cpg_dispatch(h, (cs_dispatch_flags_t)9));

	SHOW("membership_get", cpg_membership_get(h, &name, members, &entries));
	SHOW("membership_entries", entries);
	SHOW("membership_pid_ok", members[0].pid == (uint32_t)getpid());
	SHOW("membership_null", cpg_membership_get(h, &name, members, NULL));
	SHOW("local_get", cpg_local_get(h, &nodeid));
	SHOW("nodeid", nodeid);
	SHOW("max_atomic", cpg_max_atomic_msgsize_get(h, &size));
	SHOW("max_atomic_size", size);
	SHOW("flow_control", cpg_flow_control_state_get(h, &fc));
	SHOW("flow_control_state", fc);

	SHOW("iteration_initialize", cpg_iteration_initialize(h, CPG_ITERATION_ALL, NULL, &it));
	SHOW("iteration_next", cpg_iteration_next(it, &desc));
	printf("iteration_group=%.*s\n", (int)desc.group.length, desc.group.value);
	SHOW("iteration_end", cpg_iteration_next(it, &desc));
	SHOW("iteration_finalize", cpg_iteration_finalize(it));
	SHOW("iteration_finalize_again", cpg_iteration_finalize(it));
	SHOW("iteration_one_group_null", cpg_iteration_initialize(h, CPG_ITERATION_ONE_GROUP, NULL, &it));

	SHOW("zcb_alloc", cpg_zcb_alloc(h, 16, &zcb));
	memcpy(zcb, "zero-copy", 10);
	SHOW("zcb_mcast", cpg_zcb_mcast_joined(h, CPG_TYPE_AGREED, zcb, 10));
	SHOW("zcb_mcast_foreign", cpg_zcb_mcast_joined(h, CPG_TYPE_AGREED, part1, 3));
	SHOW("zcb_free", cpg_zcb_free(h, zcb));
	SHOW("zcb_free_again", cpg_zcb_free(h, zcb));

	/* The zero-copy message arrives; its callback finalizes the handle. */
	finalize_in_callback = 1;
	SHOW("dispatch_finalized_in_callback", cpg_dispatch(h, CS_DISPATCH_BLOCKING));
	printf("msg2=%s\n", last_msg);
	SHOW("finalize_after", cpg_finalize(h));
	SHOW("join_after", cpg_join(h, &name));
	finalize_in_callback = 0;

	/* Finalize from another thread wakes a blocking dispatch. */
	SHOW("init2", cpg_initialize(&h2, &cbs));
	pthread_create(&thread, NULL, blocking_dispatch, &h2);
	usleep(200000);
	SHOW("finalize_other_thread", cpg_finalize(h2));
	pthread_join(thread, NULL);

	/* EVS */
	{
		evs_handle_t e;
		evs_callbacks_t ecbs = { evs_deliver, NULL };
		struct evs_group groups[2] = { { "alpha" }, { "beta" } };
		struct iovec eiov = { part2, 5 };
		unsigned int local = 0, list[8];
		size_t n = 8;

		SHOW("evs_init", evs_initialize(&e, &ecbs));
		SHOW("evs_join", evs_join(e, groups, 2));
		SHOW("evs_mcast_joined", evs_mcast_joined(e, EVS_TYPE_AGREED, &eiov, 1));
		SHOW("evs_mcast_groups", evs_mcast_groups(e, EVS_TYPE_AGREED, &groups[1], 1, &eiov, 1));
		SHOW("evs_fd_get", evs_fd_get(e, &fd));
		while (evs_got < 2 && wait_readable(fd) > 0) {
			if (evs_dispatch(e, CS_DISPATCH_ALL) != CS_OK)
				break;
		}
		SHOW("evs_got", evs_got);
		SHOW("evs_membership", evs_membership_get(e, &local, list, &n));
		SHOW("evs_local", local);
		SHOW("evs_members", n);
		SHOW("evs_context_set", evs_context_set(e, &marker));
		SHOW("evs_context_get", evs_context_get(e, &ctx));
		SHOW("evs_leave", evs_leave(e, groups, 1));
		SHOW("evs_finalize", evs_finalize(e));
		SHOW("evs_finalize_again", evs_finalize(e));
	}
	return 0;
}
