/*
 * Exercises <corosync/cmap.h> and <corosync/cfg.h> as a Corosync program
 * would; prints one "ok <what>" line per check, "FAIL <what> <err>" and
 * exit 1 on the first failure.
 *
 * usage: cmap_cfg_probe <expected local nodeid> [cpg group to join and hold until stdin closes]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <corosync/corotypes.h>
#include <corosync/cmap.h>
#include <corosync/cfg.h>
#include <corosync/cpg.h>

#define CHECK(what, expr) do { cs_error_t e_ = (expr); \
	if (e_ != CS_OK) { printf("FAIL %s %d\n", what, e_); return 1; } \
	printf("ok %s\n", what); } while (0)
#define EXPECT(what, expr, want) do { cs_error_t e_ = (expr); \
	if (e_ != (want)) { printf("FAIL %s %d\n", what, e_); return 1; } \
	printf("ok %s\n", what); } while (0)

static int notified;

static void notify(cmap_handle_t h, cmap_track_handle_t t, int32_t event,
	const char *key, struct cmap_notify_value nv, struct cmap_notify_value ov, void *user)
{
	(void)h; (void)t; (void)ov;
	if (event == CMAP_TRACK_ADD && strcmp(key, "probe.tracked") == 0 &&
	    nv.type == CMAP_VALUETYPE_UINT32 && *(const uint32_t *)nv.data == 7 && user == &notified)
		notified = 1;
}

int main(int argc, char **argv)
{
	cmap_handle_t cm, st;
	cmap_iter_handle_t it;
	cmap_track_handle_t tr;
	corosync_cfg_handle_t cfg;
	struct corosync_cfg_node_status_v1 ns;
	corosync_cfg_node_address_t addrs[8];
	char key[CMAP_KEYNAME_MAXLEN + 1];
	size_t len;
	cmap_value_types_t type;
	uint32_t u32;
	uint64_t u64;
	unsigned int local;
	char *s;
	int n, keys = 0;
	unsigned int want = argc > 1 ? (unsigned int)atoi(argv[1]) : 0;

	CHECK("cmap_initialize", cmap_initialize(&cm));
	CHECK("get totem.cluster_name", cmap_get_string(cm, "totem.cluster_name", &s));
	free(s);
	CHECK("set_uint32", cmap_set_uint32(cm, "probe.counter", 41));
	CHECK("inc", cmap_inc(cm, "probe.counter"));
	CHECK("get_uint32", cmap_get_uint32(cm, "probe.counter", &u32));
	if (u32 != 42) { printf("FAIL value %u\n", u32); return 1; }
	EXPECT("wrong type", cmap_get_uint64(cm, "probe.counter", &u64), CS_ERR_INVALID_PARAM);
	CHECK("get len/type", cmap_get(cm, "probe.counter", NULL, &len, &type));
	if (len != 4 || type != CMAP_VALUETYPE_UINT32) { printf("FAIL len %zu type %d\n", len, type); return 1; }
	EXPECT("missing key", cmap_get_uint32(cm, "probe.nothing", &u32), CS_ERR_NOT_EXIST);
	EXPECT("bad key name", cmap_set_uint8(cm, "x", 1), CS_ERR_NAME_TOO_LONG);
	CHECK("delete", cmap_delete(cm, "probe.counter"));
	EXPECT("delete again", cmap_delete(cm, "probe.counter"), CS_ERR_NOT_EXIST);
	CHECK("iter_init", cmap_iter_init(cm, "nodelist.node.", &it));
	while (cmap_iter_next(cm, it, key, &len, &type) == CS_OK)
		keys++;
	CHECK("iter_finalize", cmap_iter_finalize(cm, it));
	if (keys < 3) { printf("FAIL nodelist keys %d\n", keys); return 1; }
	printf("ok nodelist keys\n");
	/* A key left by an earlier run would make the set below a no-op. */
	(void)cmap_delete(cm, "probe.tracked");
	CHECK("track_add", cmap_track_add(cm, "probe.", CMAP_TRACK_ADD | CMAP_TRACK_PREFIX, notify, &notified, &tr));
	CHECK("set tracked", cmap_set_uint32(cm, "probe.tracked", 7));
	CHECK("dispatch", cmap_dispatch(cm, CS_DISPATCH_ONE));
	if (!notified) { printf("FAIL notify\n"); return 1; }
	printf("ok notify\n");
	CHECK("track_delete", cmap_track_delete(cm, tr));

	CHECK("initialize stats", cmap_initialize_map(&st, CMAP_MAP_STATS));
	CHECK("stats get", cmap_get_uint64(st, "stats.srp.orf_token_rx", &u64));
	EXPECT("stats read-only", cmap_set_uint64(st, "stats.srp.orf_token_rx", 1), CS_ERR_NOT_SUPPORTED);
	CHECK("finalize stats", cmap_finalize(st));
	CHECK("cmap_finalize", cmap_finalize(cm));
	EXPECT("stale handle", cmap_inc(cm, "probe.tracked"), CS_ERR_BAD_HANDLE);

	CHECK("cfg_initialize", corosync_cfg_initialize(&cfg, NULL));
	CHECK("local_get", corosync_cfg_local_get(cfg, &local));
	if (want && local != want) { printf("FAIL local %u\n", local); return 1; }
	CHECK("node_status_get", corosync_cfg_node_status_get(cfg, local, CFG_NODE_STATUS_V1, &ns));
	if (!ns.reachable || ns.nodeid != local || !ns.link_status[0].enabled) { printf("FAIL status\n"); return 1; }
	EXPECT("status of unknown node", corosync_cfg_node_status_get(cfg, 999, CFG_NODE_STATUS_V1, &ns), CS_ERR_NOT_EXIST);
	CHECK("get_node_addrs", corosync_cfg_get_node_addrs(cfg, local, 8, &n, addrs));
	if (n < 1 || ((struct sockaddr *)addrs[0].address)->sa_family == 0) { printf("FAIL addrs\n"); return 1; }
	CHECK("cfg_finalize", corosync_cfg_finalize(cfg));

	if (argc > 2) {
		cpg_handle_t h;
		struct cpg_name g;
		int tries;
		cs_error_t err;
		g.length = strlen(argv[2]);
		memcpy(g.value, argv[2], g.length);
		CHECK("cpg_initialize", cpg_initialize(&h, NULL));
		for (tries = 0; (err = cpg_join(h, &g)) == CS_ERR_TRY_AGAIN && tries < 50; tries++)
			usleep(100000);
		CHECK("cpg_join", err);
		fflush(stdout);
		while (getchar() != EOF)
			;
	}
	printf("done\n");
	return 0;
}
