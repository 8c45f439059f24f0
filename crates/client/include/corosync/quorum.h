/*
 * corosync-rs: cluster quorum (libquorum).
 *
 * Source-compatible with Corosync 3's <corosync/quorum.h>: the same
 * names, types, constants and functions, written for corosync-rs
 * (BSD-3-Clause). Link with -lquorum (or -lcorosync_rs).
 */
#ifndef COROSYNC_QUORUM_H_DEFINED
#define COROSYNC_QUORUM_H_DEFINED

#include <stdint.h>
#include <corosync/corotypes.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t quorum_handle_t;

/* A Totem ring: representative node and sequence number (a tagged struct,
 * as Corosync 3.1 declares it; the typedef is a convenience). */
struct quorum_ring_id {
	uint32_t nodeid;
	uint64_t seq;
};
typedef struct quorum_ring_id quorum_ring_id;

/* Model V0 (quorum_initialize): the ring's sequence number only. */
typedef void (*quorum_notification_fn_t) (
	quorum_handle_t handle,
	uint32_t quorate,
	uint64_t ring_seq,
	uint32_t view_list_entries,
	uint32_t *view_list);

/* Model V1: the full ring id. */
typedef void (*quorum_v1_quorum_notification_fn_t) (
	quorum_handle_t handle,
	uint32_t quorate,
	struct quorum_ring_id ring_id,
	uint32_t member_list_entries,
	const uint32_t *member_list);

/* Model V1: the membership after every change, who joined, who left. */
typedef void (*quorum_v1_nodelist_notification_fn_t) (
	quorum_handle_t handle,
	struct quorum_ring_id ring_id,
	uint32_t member_list_entries,
	const uint32_t *member_list,
	uint32_t joined_list_entries,
	const uint32_t *joined_list,
	uint32_t left_list_entries,
	const uint32_t *left_list);

typedef struct {
	quorum_notification_fn_t quorum_notify_fn;
} quorum_callbacks_t;

typedef enum {
	QUORUM_MODEL_V0 = 0,
	QUORUM_MODEL_V1 = 1,
} quorum_model_t;

typedef struct {
	quorum_model_t model;
} quorum_model_data_t;

typedef struct {
	quorum_model_t model;
	quorum_notification_fn_t quorum_notify_fn;
} quorum_model_v0_data_t;

typedef struct {
	quorum_model_t model;
	quorum_v1_quorum_notification_fn_t quorum_notify_fn;
	quorum_v1_nodelist_notification_fn_t nodelist_notify_fn;
} quorum_model_v1_data_t;

/* The quorum type initialize reports. */
#define QUORUM_FREE	0	/* no quorum provider: always quorate */
#define QUORUM_SET	1	/* a provider (votequorum) decides */

cs_error_t quorum_initialize (
	quorum_handle_t *handle,
	quorum_callbacks_t *callbacks,
	uint32_t *quorum_type);

cs_error_t quorum_model_initialize (
	quorum_handle_t *handle,
	quorum_model_t model,
	quorum_model_data_t *model_data,
	uint32_t *quorum_type,
	void *context);

cs_error_t quorum_finalize (
	quorum_handle_t handle);

/* A descriptor to poll; the handle itself is not one. */
cs_error_t quorum_fd_get (
	quorum_handle_t handle,
	int *fd);

cs_error_t quorum_dispatch (
	quorum_handle_t handle,
	cs_dispatch_flags_t dispatch_types);

cs_error_t quorum_getquorate (
	quorum_handle_t handle,
	int *quorate);

/* flags: CS_TRACK_CURRENT, CS_TRACK_CHANGES, CS_TRACK_CHANGES_ONLY. */
cs_error_t quorum_trackstart (
	quorum_handle_t handle,
	unsigned int flags);

cs_error_t quorum_trackstop (
	quorum_handle_t handle);

cs_error_t quorum_context_set (
	quorum_handle_t handle,
	const void *context);

cs_error_t quorum_context_get (
	quorum_handle_t handle,
	const void **context);

#ifdef __cplusplus
}
#endif

#endif /* COROSYNC_QUORUM_H_DEFINED */
