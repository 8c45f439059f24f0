/*
 * corosync-rs: extended virtual synchrony groups (libevs).
 *
 * Source-compatible with the <corosync/evs.h> of Corosync 1.x/2.x (the
 * last to ship libevs): the same names, types and functions, written
 * for corosync-rs (BSD-3-Clause). Link with -levs (or -lcorosync_rs).
 */
#ifndef COROSYNC_EVS_H_DEFINED
#define COROSYNC_EVS_H_DEFINED

#include <stddef.h>
#include <inttypes.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <corosync/corotypes.h>
#include <corosync/hdb.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t evs_handle_t;

typedef enum {
	EVS_TYPE_UNORDERED,
	EVS_TYPE_FIFO,
	EVS_TYPE_AGREED,
	EVS_TYPE_SAFE
} evs_guarantee_t;

#define TOTEMIP_ADDRLEN (sizeof(struct in6_addr))

/* A group: a 32-byte key. */
struct evs_group {
	char key[32];
};

struct evs_ring_id {
	unsigned int nodeid;
	unsigned long long seq;
};

typedef void (*evs_deliver_fn_t) (
	hdb_handle_t handle,
	unsigned int nodeid,
	const void *msg,
	size_t msg_len);

typedef void (*evs_confchg_fn_t) (
	hdb_handle_t handle,
	const unsigned int *member_list, size_t member_list_entries,
	const unsigned int *left_list, size_t left_list_entries,
	const unsigned int *joined_list, size_t joined_list_entries,
	const struct evs_ring_id *ring_id);

typedef struct {
	evs_deliver_fn_t evs_deliver_fn;
	evs_confchg_fn_t evs_confchg_fn;
} evs_callbacks_t;

/* Connects to the daemon (CS_ERR_LIBRARY when none runs). */
cs_error_t evs_initialize (
	evs_handle_t *handle,
	evs_callbacks_t *callbacks);

cs_error_t evs_finalize (
	evs_handle_t handle);

/* A descriptor to poll for readability; then call evs_dispatch. */
cs_error_t evs_fd_get (
	evs_handle_t handle,
	int *fd);

cs_error_t evs_context_get (
	evs_handle_t handle,
	void **context);

cs_error_t evs_context_set (
	evs_handle_t handle,
	void *context);

cs_error_t evs_dispatch (
	evs_handle_t handle,
	cs_dispatch_flags_t dispatch_types);

/* Joins groups; messages to any of them are delivered to this handle. */
cs_error_t evs_join (
	evs_handle_t handle,
	const struct evs_group *groups,
	size_t group_cnt);

cs_error_t evs_leave (
	evs_handle_t handle,
	const struct evs_group *groups,
	size_t group_cnt);

/* Multicasts to the groups this handle joined. */
cs_error_t evs_mcast_joined (
	evs_handle_t handle,
	evs_guarantee_t guarantee,
	const struct iovec *iovec,
	unsigned int iov_len);

/* Multicasts to the given groups, joined or not. */
cs_error_t evs_mcast_groups (
	evs_handle_t handle,
	evs_guarantee_t guarantee,
	const struct evs_group *groups,
	size_t group_cnt,
	const struct iovec *iovec,
	unsigned int iov_len);

/* The local node id and the ring's members; *member_list_entries is the
 * list's capacity on entry and the count written on return. */
cs_error_t evs_membership_get (
	evs_handle_t handle,
	unsigned int *local_nodeid,
	unsigned int *member_list,
	size_t *member_list_entries);

#ifdef __cplusplus
}
#endif

#endif /* COROSYNC_EVS_H_DEFINED */
