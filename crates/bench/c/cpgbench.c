/*
 * cpgbench: the cluster benchmark's client, written against Corosync's
 * public libcpg API only (corosync/cpg.h), so that one source compiles
 * against Corosync's libcpg and against corosync-rs's.
 *
 *   cc -O2 -Wall -o cpgbench cpgbench.c -I<prefix>/include -L<prefix>/lib -lcpg
 *
 * Every mode joins --group and waits until it has --members processes.
 * Output: one line "RESULT key=value ..." on stdout; errors on stderr.
 *
 *   waitring --members N        exit 0 once the totem ring has N nodes
 *   tput --size S --time T [--send] --senders K
 *        senders multicast CPG_TYPE_AGREED messages of S bytes as fast as
 *        flow control allows for T s, then an END marker; everyone counts
 *        delivered data messages until END from all K senders.
 *        rate = delivered / (last - first delivery).
 *   lat --size S --rate R --time T [--send] [--warmup W] [--cdf FILE]
 *        one sender at R msgs/s, its CLOCK_MONOTONIC send time in the
 *        payload (taken just before cpg_mcast_joined); every member records
 *        delivery - send time for the sender's messages (CLOCK_MONOTONIC is
 *        one clock for all network namespaces): the sender its
 *        self-delivery, the others remote delivery. --cdf writes 1001
 *        quantiles (µs), one a line. The sender sleeps between sends
 *        (timer slack 1 ns) and spins through waits under 20 µs, so that
 *        rates near an engine's saturation are reached.
 *   failover [--kill PID] --victim NODEID [--rate R --size S] [--settle S]
 *        everyone sends load at R msgs/s; the client given --kill SIGKILLs
 *        that daemon after --settle s and reports t_kill; every survivor
 *        reports the CLOCK_MONOTONIC times of the first totem confchg
 *        without the victim and of the CPG confchg with the victim in
 *        left_list, and the number of membership changes seen before.
 *
 * Every mode reports ring_changes: totem membership callbacks after the
 * group was complete (in tput and lat these are all false: nothing fails).
 */
#define _GNU_SOURCE
#include <corosync/corotypes.h>
#include <corosync/cpg.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x43504742u /* "CPGB" */
enum { M_DATA = 1, M_END = 2, M_LAT = 3, M_WARM = 4, M_LOAD = 5 };

struct msg_hdr {
	uint32_t magic;
	uint32_t kind;
	uint64_t seq;
	uint64_t sent_ns;
	uint32_t nodeid;
	uint32_t pid;
};

static const char *mode = "?";
static size_t o_size = 64;
static double o_time = 3.0, o_rate = 1000.0, o_warmup = 0.5, o_timeout = 60.0;
static double o_settle = 1.5;
static int o_send, o_senders = 1, o_members = 1;
static const char *o_group = "cpgbench", *o_cdf;
static pid_t o_kill;
static uint32_t o_victim;

static cpg_handle_t handle;
static int cpg_fd = -1;
static uint32_t my_node, my_pid;
static volatile sig_atomic_t stopping;
static int lost;		/* connection to the daemon gone */

static int group_size, ring_size;
static uint64_t t_complete;	/* group reached --members */
static int ring_changes;	/* totem callbacks after t_complete */
static uint64_t rx_msgs, rx_bytes, t_first, t_last;
static int ends;
static uint64_t *lat, lat_n, lat_cap;
static uint64_t t_kill, t_totem_gone, t_cpg_left;
static int changes_before_loss;	/* ring changes before the victim's removal */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(const char *what, cs_error_t err)
{
	fprintf(stderr, "cpgbench %s (node %u): %s: error %d\n", mode, my_node, what, (int)err);
	exit(2);
}

static void record_latency(uint64_t ns)
{
	if (lat_n == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
		lat = realloc(lat, lat_cap * sizeof(*lat));
		if (!lat) {
			perror("realloc");
			exit(2);
		}
	}
	lat[lat_n++] = ns;
}

static void on_deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid,
		       uint32_t pid, void *msg, size_t len)
{
	uint64_t t = now_ns();
	struct msg_hdr m;
	(void)h;
	(void)g;
	(void)nodeid;
	(void)pid;
	if (len < sizeof(m))
		return;
	memcpy(&m, msg, sizeof(m));
	if (m.magic != MAGIC)
		return;
	switch (m.kind) {
	case M_DATA:
		if (!rx_msgs)
			t_first = t;
		t_last = t;
		rx_msgs++;
		rx_bytes += len;
		break;
	case M_LAT:
		record_latency(t - m.sent_ns);
		/* fall through */
	case M_WARM:
	case M_LOAD:
		rx_msgs++;
		rx_bytes += len;
		break;
	case M_END:
		ends++;
		break;
	}
}

static void on_confchg(cpg_handle_t h, const struct cpg_name *g,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined, size_t n_joined)
{
	uint64_t t = now_ns();
	size_t i;
	(void)h;
	(void)g;
	(void)members;
	(void)joined;
	(void)n_joined;
	group_size = (int)n_members;
	if (o_victim && !t_cpg_left)
		for (i = 0; i < n_left; i++)
			if (left[i].nodeid == o_victim && (!o_kill || t_kill))
				t_cpg_left = t;
}

static void on_totem(cpg_handle_t h, struct cpg_ring_id ring, uint32_t n, const uint32_t *list)
{
	uint64_t t = now_ns();
	uint32_t i;
	int victim_in = 0;
	(void)h;
	(void)ring;
	ring_size = (int)n;
	if (!t_complete)
		return;
	ring_changes++;
	for (i = 0; i < n; i++)
		if (list[i] == o_victim)
			victim_in = 1;
	if (o_victim && !victim_in && !t_totem_gone && (!o_kill || t_kill))
		t_totem_gone = t;
	else if (!t_totem_gone)
		changes_before_loss++;
}

static void on_signal(int s)
{
	(void)s;
	stopping = 1;
}

/* Dispatches what is pending, after waiting up to timeout_ms for the fd
 * (0: no wait, no poll). */
static void pump(int timeout_ms)
{
	cs_error_t err;
	if (timeout_ms) {
		struct pollfd p = { .fd = cpg_fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno != EINTR) {
			perror("poll");
			exit(2);
		}
		if (r <= 0)
			return;
		if (p.revents & (POLLHUP | POLLERR)) {
			lost = 1;
			return;
		}
	}
	err = cpg_dispatch(handle, CS_DISPATCH_ALL);
	if (err != CS_OK && err != CS_ERR_TRY_AGAIN) {
		if (!strcmp(mode, "failover")) {
			lost = 1;
			return;
		}
		fail("cpg_dispatch", err);
	}
}

/* Waits shorter than this are spun (dispatching what comes meanwhile):
 * a sleep and its wake-up take longer than that here. */
#define SPIN_NS 20000ull

static void pump_until(uint64_t t)
{
	uint64_t n = now_ns();
	if (n >= t) {
		pump(0);
		return;
	}
	if (t - n < SPIN_NS) {
		while (now_ns() < t && !stopping && !lost)
			pump(0);
		return;
	}
	{
		struct pollfd p = { .fd = cpg_fd, .events = POLLIN };
		struct timespec ts = { (time_t)((t - n) / 1000000000ull), (long)((t - n) % 1000000000ull) };
		int r = ppoll(&p, 1, &ts, NULL);
		if (r > 0)
			pump(0);
	}
}

/* Multicasts, waiting out TRY_AGAIN; 0 on success. */
static int send_msg(void *buf, size_t len, uint64_t *tryagain)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	for (;;) {
		cs_error_t err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
		if (err == CS_OK)
			return 0;
		if (err != CS_ERR_TRY_AGAIN) {
			if (!strcmp(mode, "failover"))
				return -1;
			fail("cpg_mcast_joined", err);
		}
		(*tryagain)++;
		pump(1);
		if (lost || stopping)
			return -1;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double quantile_us(double q)
{
	uint64_t i;
	if (!lat_n)
		return -1;
	i = (uint64_t)(q * (double)(lat_n - 1) + 0.5);
	return (double)lat[i < lat_n ? i : lat_n - 1] / 1000.0;
}

static void wait_group(void)
{
	uint64_t deadline = now_ns() + (uint64_t)(o_timeout * 1e9);
	while (group_size < o_members) {
		pump(50);
		if (stopping || lost || now_ns() > deadline) {
			fprintf(stderr, "cpgbench %s (node %u): group has %d of %d members\n",
				mode, my_node, group_size, o_members);
			exit(3);
		}
	}
	t_complete = now_ns();
}

static int run_tput(char *buf)
{
	struct msg_hdr m = { MAGIC, M_DATA, 0, 0, my_node, my_pid };
	uint64_t sent = 0, tryagain = 0, t0 = now_ns(), deadline;
	if (o_send) {
		uint64_t end = t0 + (uint64_t)(o_time * 1e9);
		while (!stopping && now_ns() < end) {
			m.seq = sent;
			memcpy(buf, &m, sizeof(m));
			if (send_msg(buf, o_size, &tryagain))
				break;
			sent++;
			pump(0);
		}
		m.kind = M_END;
		memcpy(buf, &m, sizeof(m));
		if (send_msg(buf, sizeof(m), &tryagain))
			fail("multicast END", CS_ERR_LIBRARY);
	}
	deadline = now_ns() + (uint64_t)(o_timeout * 1e9);
	while (ends < o_senders && !stopping && !lost && now_ns() < deadline)
		pump(100);
	{
		double secs = rx_msgs > 1 ? (double)(t_last - t_first) / 1e9 : 0;
		printf("RESULT mode=tput node=%u role=%s size=%zu senders=%d rx_msgs=%" PRIu64
		       " rx_secs=%.4f msgs_per_s=%.1f MBps=%.3f sent=%" PRIu64
		       " tryagain=%" PRIu64 " ends=%d ring_changes=%d t_first=%" PRIu64
		       " t_last=%" PRIu64 "\n",
		       my_node, o_send ? "send" : "recv", o_size, o_senders, rx_msgs, secs,
		       secs > 0 ? (double)rx_msgs / secs : 0,
		       secs > 0 ? (double)rx_bytes / secs / 1e6 : 0, sent, tryagain, ends,
		       ring_changes, t_first, t_last);
	}
	return ends < o_senders ? 4 : 0;
}

static void write_cdf(void)
{
	FILE *f;
	int k;
	if (!o_cdf || !lat_n)
		return;
	f = fopen(o_cdf, "w");
	if (!f) {
		perror(o_cdf);
		return;
	}
	for (k = 0; k <= 1000; k++)
		fprintf(f, "%.2f\n", quantile_us(k / 1000.0));
	fclose(f);
}

static int run_lat(char *buf)
{
	struct msg_hdr m = { MAGIC, M_WARM, 0, 0, my_node, my_pid };
	uint64_t tryagain = 0, sent = 0, t0 = now_ns();
	uint64_t period = (uint64_t)(1e9 / o_rate), next = t0, deadline;
	uint64_t measure_from = t0 + (uint64_t)(o_warmup * 1e9);
	uint64_t end = measure_from + (uint64_t)(o_time * 1e9);
	if (o_send) {
		while (!stopping && !lost) {
			uint64_t t = now_ns();
			if (t >= end)
				break;
			if (t < next) {
				pump_until(next);
				continue;
			}
			m.kind = t >= measure_from ? M_LAT : M_WARM;
			m.seq = sent++;
			m.sent_ns = now_ns();
			memcpy(buf, &m, sizeof(m));
			if (send_msg(buf, o_size, &tryagain))
				break;
			next += period;
			/* a sender that fell behind does not burst to catch up */
			if (now_ns() > next + 100 * period)
				next = now_ns();
		}
		m.kind = M_END;
		memcpy(buf, &m, sizeof(m));
		if (send_msg(buf, sizeof(m), &tryagain))
			fail("multicast END", CS_ERR_LIBRARY);
	}
	deadline = now_ns() + (uint64_t)(o_timeout * 1e9);
	while (ends < 1 && !stopping && !lost && now_ns() < deadline)
		pump(50);
	qsort(lat, lat_n, sizeof(*lat), cmp_u64);
	write_cdf();
	printf("RESULT mode=lat node=%u role=%s size=%zu rate=%.0f samples=%" PRIu64
	       " sent=%" PRIu64 " tryagain=%" PRIu64 " p50_us=%.1f p99_us=%.1f p999_us=%.1f"
	       " max_us=%.1f ring_changes=%d\n",
	       my_node, o_send ? "send" : "recv", o_size, o_rate, lat_n, sent, tryagain,
	       quantile_us(0.5), quantile_us(0.99), quantile_us(0.999), quantile_us(1.0),
	       ring_changes);
	return ends < 1 ? 4 : 0;
}

static int run_failover(char *buf)
{
	struct msg_hdr m = { MAGIC, M_LOAD, 0, 0, my_node, my_pid };
	uint64_t tryagain = 0, sent = 0, t0 = now_ns(), period = (uint64_t)(1e9 / o_rate);
	uint64_t next = t0, kill_at = t0 + (uint64_t)(o_settle * 1e9);
	uint64_t deadline = kill_at + (uint64_t)(o_timeout * 1e9);
	while (!stopping && !lost) {
		uint64_t t = now_ns();
		if (o_kill && !t_kill && t >= kill_at) {
			t_kill = now_ns();
			if (kill(o_kill, SIGKILL)) {
				perror("kill");
				return 2;
			}
			deadline = t_kill + (uint64_t)(o_timeout * 1e9);
		}
		if (t_totem_gone && t_cpg_left)
			break;
		if (t > deadline)
			break;
		if (t < next) {
			pump_until(next < t + 1000000 ? next : t + 1000000);
			continue;
		}
		m.seq = sent++;
		m.sent_ns = t;
		memcpy(buf, &m, sizeof(m));
		if (send_msg(buf, o_size, &tryagain))
			break;
		next += period;
		if (now_ns() > next + 100 * period)
			next = now_ns();
	}
	printf("RESULT mode=failover node=%u victim=%u t_complete=%" PRIu64 " t_kill=%" PRIu64
	       " t_totem=%" PRIu64 " t_cpg=%" PRIu64 " changes_before=%d sent=%" PRIu64
	       " rx_msgs=%" PRIu64 " tryagain=%" PRIu64 " lost=%d\n",
	       my_node, o_victim, t_complete, t_kill, t_totem_gone, t_cpg_left,
	       changes_before_loss, sent, rx_msgs, tryagain, lost);
	return t_cpg_left ? 0 : 4;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: cpgbench waitring|tput|lat|failover [--members N] [--group G]\n"
		"  [--size B] [--time S] [--send] [--senders K] [--rate R] [--warmup S]\n"
		"  [--cdf FILE] [--kill PID] [--victim NODEID] [--settle S] [--timeout S]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", 1, 0, 's' },	  { "time", 1, 0, 't' },    { "send", 0, 0, 'S' },
		{ "senders", 1, 0, 'k' }, { "members", 1, 0, 'm' }, { "rate", 1, 0, 'r' },
		{ "warmup", 1, 0, 'w' },  { "group", 1, 0, 'g' },   { "kill", 1, 0, 'K' },
		{ "victim", 1, 0, 'v' },  { "timeout", 1, 0, 'T' }, { "settle", 1, 0, 'e' },
		{ "cdf", 1, 0, 'c' },	  { 0, 0, 0, 0 }
	};
	cpg_model_v1_data_t model;
	struct cpg_name group;
	cs_error_t err = CS_OK;
	unsigned int nid;
	char *buf;
	int c, rc;

	if (argc < 2)
		usage();
	mode = argv[1];
#ifdef PR_SET_TIMERSLACK
	/* Timed waits end when asked (the default slack of 50 us would cap a
	 * paced sender near 20,000 msgs/s whatever the engine). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': o_size = strtoull(optarg, NULL, 0); break;
		case 't': o_time = atof(optarg); break;
		case 'S': o_send = 1; break;
		case 'k': o_senders = atoi(optarg); break;
		case 'm': o_members = atoi(optarg); break;
		case 'r': o_rate = atof(optarg); break;
		case 'w': o_warmup = atof(optarg); break;
		case 'g': o_group = optarg; break;
		case 'K': o_kill = (pid_t)atoi(optarg); break;
		case 'v': o_victim = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'T': o_timeout = atof(optarg); break;
		case 'e': o_settle = atof(optarg); break;
		case 'c': o_cdf = optarg; break;
		default: usage();
		}
	}
	if (strcmp(mode, "waitring") && strcmp(mode, "tput") && strcmp(mode, "lat") &&
	    strcmp(mode, "failover"))
		usage();
	if (o_size < sizeof(struct msg_hdr))
		o_size = sizeof(struct msg_hdr);
	if (o_rate <= 0)
		o_rate = 1;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	memset(&model, 0, sizeof(model));
	model.model = CPG_MODEL_V1;
	model.cpg_deliver_fn = on_deliver;
	model.cpg_confchg_fn = on_confchg;
	model.cpg_totem_confchg_fn = on_totem;
	model.flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF;
	/* the daemon may still be starting or synchronizing */
	for (c = 0; c < 200 && !stopping; c++) {
		err = cpg_model_initialize(&handle, CPG_MODEL_V1, (cpg_model_data_t *)&model, NULL);
		if (err == CS_OK)
			break;
		usleep(50000);
	}
	if (err != CS_OK)
		fail("cpg_model_initialize", err);
	if ((err = cpg_fd_get(handle, &cpg_fd)) != CS_OK)
		fail("cpg_fd_get", err);
	if ((err = cpg_local_get(handle, &nid)) != CS_OK)
		fail("cpg_local_get", err);
	my_node = nid;
	my_pid = (uint32_t)getpid();

	memset(&group, 0, sizeof(group));
	group.length = (uint32_t)strlen(o_group);
	memcpy(group.value, o_group, group.length);
	for (c = 0; c < 200; c++) {
		err = cpg_join(handle, &group);
		if (err != CS_ERR_TRY_AGAIN)
			break;
		usleep(50000);
	}
	if (err != CS_OK)
		fail("cpg_join", err);

	if (!strcmp(mode, "waitring")) {
		uint64_t deadline = now_ns() + (uint64_t)(o_timeout * 1e9);
		while (ring_size < o_members && !stopping && !lost && now_ns() < deadline)
			pump(20);
		printf("RESULT mode=waitring node=%u ring=%d\n", my_node, ring_size);
		cpg_finalize(handle);
		return ring_size >= o_members ? 0 : 3;
	}

	buf = calloc(1, o_size);
	if (!buf) {
		perror("calloc");
		return 2;
	}
	wait_group();
	if (!strcmp(mode, "tput"))
		rc = run_tput(buf);
	else if (!strcmp(mode, "lat"))
		rc = run_lat(buf);
	else
		rc = run_failover(buf);
	fflush(stdout);
	if (!lost) {
		cpg_leave(handle, &group);
		cpg_finalize(handle);
	}
	free(buf);
	free(lat);
	return rc;
}
