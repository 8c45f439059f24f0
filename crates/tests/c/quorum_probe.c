/*
 * A program written for Corosync's libquorum and libvotequorum: prints the
 * quorum state, then tracks changes and prints every notification until
 * its stdin closes.
 *
 *   TYPE <quorum_type>
 *   QUORATE <0|1>
 *   INFO <node_id> <expected> <total> <quorum> <flags>
 *   QUORUM <quorate> <ring nodeid> <ring seq> <members...>     (model V1)
 *   NODELIST <members...> JOINED <...> LEFT <...>
 *   VQ <context> <quorate> <nodeid:state...>
 *   EXPECTED <context> <expected votes>
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <corosync/corotypes.h>
#include <corosync/quorum.h>
#include <corosync/votequorum.h>

static void print_list(const char *what, uint32_t n, const uint32_t *list)
{
	uint32_t i;
	printf("%s", what);
	for (i = 0; i < n; i++)
		printf(" %u", list[i]);
}

static void on_quorum(quorum_handle_t h, uint32_t quorate, quorum_ring_id ring,
		      uint32_t n, const uint32_t *members)
{
	(void)h;
	printf("QUORUM %u %u %" PRIu64, quorate, ring.nodeid, ring.seq);
	print_list("", n, members);
	printf("\n");
	fflush(stdout);
}

static void on_nodelist(quorum_handle_t h, quorum_ring_id ring,
			uint32_t n, const uint32_t *members,
			uint32_t nj, const uint32_t *joined,
			uint32_t nl, const uint32_t *left)
{
	(void)h;
	(void)ring;
	print_list("NODELIST", n, members);
	print_list(" JOINED", nj, joined);
	print_list(" LEFT", nl, left);
	printf("\n");
	fflush(stdout);
}

static void on_vq(votequorum_handle_t h, uint64_t context, uint32_t quorate,
		  uint32_t n, votequorum_node_t nodes[])
{
	uint32_t i;
	(void)h;
	printf("VQ %" PRIu64 " %u", context, quorate);
	for (i = 0; i < n; i++)
		printf(" %u:%u", nodes[i].nodeid, nodes[i].state);
	printf("\n");
	fflush(stdout);
}

static void on_expected(votequorum_handle_t h, uint64_t context, uint32_t expected)
{
	(void)h;
	printf("EXPECTED %" PRIu64 " %u\n", context, expected);
	fflush(stdout);
}

int main(void)
{
	quorum_handle_t q;
	votequorum_handle_t vq;
	quorum_model_v1_data_t model;
	votequorum_callbacks_t vcb;
	struct votequorum_info info;
	uint32_t type;
	int quorate, qfd, vfd;
	const void *ctx = NULL;
	cs_error_t err;

	memset(&model, 0, sizeof(model));
	model.model = QUORUM_MODEL_V1;
	model.quorum_notify_fn = on_quorum;
	model.nodelist_notify_fn = on_nodelist;
	err = quorum_model_initialize(&q, QUORUM_MODEL_V1, (quorum_model_data_t *)&model,
				      &type, (void *)&model);
	if (err != CS_OK) {
		fprintf(stderr, "quorum_model_initialize: %s\n", cs_strerror(err));
		return 1;
	}
	if (quorum_context_get(q, &ctx) != CS_OK || ctx != (void *)&model) {
		fprintf(stderr, "context lost\n");
		return 1;
	}
	printf("TYPE %u\n", type);
	if (quorum_getquorate(q, &quorate) != CS_OK)
		return 1;
	printf("QUORATE %d\n", quorate);

	memset(&vcb, 0, sizeof(vcb));
	vcb.votequorum_quorum_notify_fn = on_vq;
	vcb.votequorum_expectedvotes_notify_fn = on_expected;
	err = votequorum_initialize(&vq, &vcb);
	if (err != CS_OK) {
		fprintf(stderr, "votequorum_initialize: %s\n", cs_strerror(err));
		return 1;
	}
	err = votequorum_getinfo(vq, VOTEQUORUM_QDEVICE_NODEID, &info);
	if (err != CS_OK) {
		fprintf(stderr, "votequorum_getinfo: %s\n", cs_strerror(err));
		return 1;
	}
	printf("INFO %u %u %u %u %u\n", info.node_id, info.node_expected_votes,
	       info.total_votes, info.quorum, info.flags);
	if (votequorum_getinfo(vq, 12345, &info) != CS_ERR_NOT_EXIST)
		return 1;
	if (votequorum_qdevice_register(vq, "dev") != CS_ERR_NOT_SUPPORTED)
		return 1;
	if (quorum_trackstart(q, CS_TRACK_CHANGES) != CS_OK)
		return 1;
	if (quorum_trackstart(q, CS_TRACK_CHANGES) != CS_ERR_EXIST)
		return 1;
	if (votequorum_trackstart(vq, 7, CS_TRACK_CHANGES_ONLY) != CS_OK)
		return 1;
	if (quorum_fd_get(q, &qfd) != CS_OK || votequorum_fd_get(vq, &vfd) != CS_OK)
		return 1;
	printf("READY\n");
	fflush(stdout);

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = qfd, .events = POLLIN },
			{ .fd = vfd, .events = POLLIN },
			{ .fd = 0, .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0)
			return 1;
		if (p[2].revents) {
			char c;
			if (read(0, &c, 1) <= 0)
				break;
		}
		if (p[0].revents && quorum_dispatch(q, CS_DISPATCH_ALL) != CS_OK)
			return 1;
		if (p[1].revents && votequorum_dispatch(vq, CS_DISPATCH_ALL) != CS_OK)
			return 1;
	}
	votequorum_trackstop(vq);
	quorum_trackstop(q);
	votequorum_finalize(vq);
	quorum_finalize(q);
	printf("BYE\n");
	return 0;
}
