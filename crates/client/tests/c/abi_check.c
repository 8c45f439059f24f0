/*
 * Compiled by tests/c_abi.rs against include/corosync and libcorosync_rs.
 * Checks the header facts at compile time, names every function (a
 * missing symbol fails the link), and prints KEY=VALUE lines that the
 * Rust test compares. Needs no daemon: COROSYNC_IPC_ENDPOINT points at
 * a name nobody listens on.
 */
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <corosync/corotypes.h>
#include <corosync/cpg.h>
#include <corosync/evs.h>

#define CHECK(c) _Static_assert(c, #c)

CHECK(sizeof(struct cpg_name) == 132);
CHECK(sizeof(struct cpg_address) == 12);
CHECK(sizeof(struct cpg_ring_id) == 16);
CHECK(sizeof(struct cpg_iteration_description_t) == 140);
CHECK(sizeof(struct evs_group) == 32);
CHECK(sizeof(struct evs_ring_id) == 16);
CHECK(sizeof(cs_name_t) == 258);
CHECK(sizeof(cpg_handle_t) == 8);
CHECK(sizeof(cpg_iteration_handle_t) == 8);
CHECK(sizeof(evs_handle_t) == 8);
CHECK(sizeof(hdb_handle_t) == 8);
CHECK(offsetof(struct cpg_name, value) == 4);
CHECK(offsetof(struct cpg_ring_id, seq) == 8);
CHECK(offsetof(cpg_model_v1_data_t, cpg_deliver_fn) == 8);
CHECK(offsetof(cpg_model_v1_data_t, flags) == 32);
CHECK(sizeof(cpg_model_v1_data_t) == 40);
CHECK(sizeof(cpg_callbacks_t) == 16);
CHECK(sizeof(evs_callbacks_t) == 16);
CHECK(CPG_MAX_NAME_LENGTH == 128);
CHECK(CPG_MEMBERS_MAX == 128);
CHECK(CS_MAX_NAME_LENGTH == 256);
CHECK(CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF == 0x01);

/* Every function, with the header's type: a missing symbol fails to link. */
static void *const every_function[] = {
	(void *)cs_strerror, (void *)qb_to_cs_error, (void *)hdb_error_to_cs,
	(void *)cpg_initialize, (void *)cpg_model_initialize, (void *)cpg_finalize,
	(void *)cpg_fd_get, (void *)cpg_max_atomic_msgsize_get, (void *)cpg_context_get,
	(void *)cpg_context_set, (void *)cpg_dispatch, (void *)cpg_join, (void *)cpg_leave,
	(void *)cpg_mcast_joined, (void *)cpg_membership_get, (void *)cpg_local_get,
	(void *)cpg_flow_control_state_get, (void *)cpg_zcb_alloc, (void *)cpg_zcb_free,
	(void *)cpg_zcb_mcast_joined, (void *)cpg_iteration_initialize,
	(void *)cpg_iteration_next, (void *)cpg_iteration_finalize,
	(void *)evs_initialize, (void *)evs_finalize, (void *)evs_fd_get,
	(void *)evs_context_get, (void *)evs_context_set, (void *)evs_dispatch,
	(void *)evs_join, (void *)evs_leave, (void *)evs_mcast_joined,
	(void *)evs_mcast_groups, (void *)evs_membership_get,
};

/* Callbacks with the exact header types (a prototype mismatch warns). */
static void deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid,
		    uint32_t pid, void *msg, size_t len)
{
	(void)h; (void)g; (void)nodeid; (void)pid; (void)msg; (void)len;
}

static void confchg(cpg_handle_t h, const struct cpg_name *g,
		    const struct cpg_address *m, size_t mn,
		    const struct cpg_address *l, size_t ln,
		    const struct cpg_address *j, size_t jn)
{
	(void)h; (void)g; (void)m; (void)mn; (void)l; (void)ln; (void)j; (void)jn;
}

static void totem_confchg(cpg_handle_t h, struct cpg_ring_id ring, uint32_t n,
			  const uint32_t *members)
{
	(void)h; (void)ring; (void)n; (void)members;
}

static void evs_deliver(hdb_handle_t h, unsigned int nodeid, const void *msg, size_t len)
{
	(void)h; (void)nodeid; (void)msg; (void)len;
}

static void evs_confchg(hdb_handle_t h, const unsigned int *m, size_t mn,
			const unsigned int *l, size_t ln, const unsigned int *j, size_t jn,
			const struct evs_ring_id *ring)
{
	(void)h; (void)m; (void)mn; (void)l; (void)ln; (void)j; (void)jn; (void)ring;
}

#define SHOW(name, value) printf("%s=%ld\n", name, (long)(value))

int main(void)
{
	char buf[64];
	cpg_handle_t h = 0;
	evs_handle_t eh = 0;
	int fd = -1;
	unsigned int nodeid = 0;
	cpg_callbacks_t cbs = { deliver, confchg };
	cpg_model_v1_data_t model = { CPG_MODEL_V1, deliver, confchg, totem_confchg, 0 };
	evs_callbacks_t ecbs = { evs_deliver, evs_confchg };
	struct cpg_name name = { 3, "grp" };
	struct cpg_name long_name = { CPG_MAX_NAME_LENGTH + 1, "x" };
	struct cpg_iteration_description_t desc;
	cpg_iteration_handle_t ih;
	struct iovec iov = { buf, 4 };
	struct evs_group grp = { "grp" };
	const cpg_handle_t garbage = 0x0123456789abcdefULL;

	SHOW("functions", sizeof(every_function) / sizeof(every_function[0]));

	/* enum values */
	SHOW("CS_OK", CS_OK);
	SHOW("CS_ERR_LIBRARY", CS_ERR_LIBRARY);
	SHOW("CS_ERR_TRY_AGAIN", CS_ERR_TRY_AGAIN);
	SHOW("CS_ERR_INVALID_PARAM", CS_ERR_INVALID_PARAM);
	SHOW("CS_ERR_BAD_HANDLE", CS_ERR_BAD_HANDLE);
	SHOW("CS_ERR_NOT_SUPPORTED", CS_ERR_NOT_SUPPORTED);
	SHOW("CS_ERR_TOO_BIG", CS_ERR_TOO_BIG);
	SHOW("CS_ERR_NO_SECTIONS", CS_ERR_NO_SECTIONS);
	SHOW("CS_ERR_TOO_MANY_GROUPS", CS_ERR_TOO_MANY_GROUPS);
	SHOW("CS_ERR_SECURITY", CS_ERR_SECURITY);
	SHOW("CS_DISPATCH_ONE", CS_DISPATCH_ONE);
	SHOW("CS_DISPATCH_ALL", CS_DISPATCH_ALL);
	SHOW("CS_DISPATCH_BLOCKING", CS_DISPATCH_BLOCKING);
	SHOW("CS_DISPATCH_ONE_NONBLOCKING", CS_DISPATCH_ONE_NONBLOCKING);
	SHOW("CS_TRUE", CS_TRUE);
	SHOW("CPG_TYPE_AGREED", CPG_TYPE_AGREED);
	SHOW("CPG_TYPE_SAFE", CPG_TYPE_SAFE);
	SHOW("CPG_FLOW_CONTROL_ENABLED", CPG_FLOW_CONTROL_ENABLED);
	SHOW("CPG_REASON_PROCDOWN", CPG_REASON_PROCDOWN);
	SHOW("CPG_ITERATION_ALL", CPG_ITERATION_ALL);
	SHOW("CPG_MODEL_V1", CPG_MODEL_V1);
	SHOW("EVS_TYPE_SAFE", EVS_TYPE_SAFE);
	SHOW("sizeof_cs_error_t", sizeof(cs_error_t));

	/* printf macros */
	printf("CS_PRI_NODE_ID=" CS_PRI_NODE_ID "\n", (uint32_t)4294967295u);
	printf("CS_PRI_NODE_ID_PADDED=[" CS_PRI_NODE_ID_PADDED "]\n", (uint32_t)7);
	printf("CS_PRI_RING_ID=" CS_PRI_RING_ID "\n", (uint32_t)1, (uint64_t)0x5a);
	printf("CS_PRI_RING_ID_SEQ=" CS_PRI_RING_ID_SEQ "\n", (uint64_t)0xabc);

	/* strings */
	printf("strerror_ok=%s\n", cs_strerror(CS_OK));
	printf("strerror_library=%s\n", cs_strerror(CS_ERR_LIBRARY));
	printf("strerror_security=%s\n", cs_strerror(CS_ERR_SECURITY));
	printf("strerror_unknown=%s\n", cs_strerror((cs_error_t)29));
	SHOW("qb_eagain", qb_to_cs_error(-EAGAIN));
	SHOW("hdb_ebadf", hdb_error_to_cs(-EBADF));

	/* no daemon */
	SHOW("cpg_initialize", cpg_initialize(&h, &cbs));
	SHOW("cpg_initialize_null_callbacks", cpg_initialize(&h, NULL));
	SHOW("cpg_model_initialize", cpg_model_initialize(&h, CPG_MODEL_V1, (cpg_model_data_t *)&model, NULL));
	SHOW("evs_initialize", evs_initialize(&eh, &ecbs));

	/* NULL arguments */
	SHOW("cpg_initialize_null", cpg_initialize(NULL, &cbs));
	SHOW("cpg_model_initialize_bad_model", cpg_model_initialize(&h, (cpg_model_t)2, NULL, NULL));
	model.flags = 0x80;
	SHOW("cpg_model_initialize_bad_flags", cpg_model_initialize(&h, CPG_MODEL_V1, (cpg_model_data_t *)&model, NULL));
	SHOW("evs_initialize_null", evs_initialize(NULL, &ecbs));

	/* garbage handles */
	SHOW("cpg_finalize_garbage", cpg_finalize(garbage));
	SHOW("cpg_finalize_zero", cpg_finalize(0));
	SHOW("cpg_join_garbage", cpg_join(garbage, &name));
	SHOW("cpg_leave_garbage", cpg_leave(garbage, &name));
	SHOW("cpg_fd_get_garbage", cpg_fd_get(garbage, &fd));
	SHOW("cpg_dispatch_garbage", cpg_dispatch(garbage, CS_DISPATCH_ALL));
	SHOW("cpg_mcast_joined_garbage", cpg_mcast_joined(garbage, CPG_TYPE_AGREED, &iov, 1));
	SHOW("cpg_local_get_garbage", cpg_local_get(garbage, &nodeid));
	SHOW("cpg_context_set_garbage", cpg_context_set(garbage, NULL));
	SHOW("cpg_iteration_next_garbage", cpg_iteration_next(garbage, &desc));
	/* arguments checked before the handle, in Corosync's order */
	SHOW("cpg_iteration_next_null", cpg_iteration_next(garbage, NULL));
	SHOW("cpg_iteration_initialize_group_with_all",
	     cpg_iteration_initialize(garbage, CPG_ITERATION_ALL, &name, &ih));
	SHOW("cpg_iteration_initialize_one_group_without",
	     cpg_iteration_initialize(garbage, CPG_ITERATION_ONE_GROUP, NULL, &ih));
	SHOW("cpg_iteration_initialize_bad_type",
	     cpg_iteration_initialize(garbage, (cpg_iteration_type_t)9, NULL, &ih));
	SHOW("cpg_iteration_initialize_long_name",
	     cpg_iteration_initialize(garbage, CPG_ITERATION_ONE_GROUP, &long_name, &ih));
	SHOW("cpg_iteration_initialize_garbage",
	     cpg_iteration_initialize(garbage, CPG_ITERATION_ONE_GROUP, &name, &ih));
	SHOW("cpg_iteration_finalize_garbage", cpg_iteration_finalize(garbage));
	SHOW("evs_finalize_garbage", evs_finalize(garbage));
	SHOW("evs_join_garbage", evs_join(garbage, &grp, 1));
	SHOW("evs_fd_get_garbage", evs_fd_get(garbage, &fd));
	SHOW("evs_dispatch_garbage", evs_dispatch(garbage, CS_DISPATCH_ALL));
	return 0;
}
