/* SPDX-License-Identifier: MIT */
/*
 * uplink.c - what all uplinks share: the type table, the port, the poller
 * on the owner reactor, the asynchronous teardown, the registry and JSON.
 */
#include "net/uplink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/log.h"
#include "core/reactor.h"

static const struct zoc_uplink_type *const g_types[] = {
	&zoc_uplink_tap,
	&zoc_uplink_af_packet,
#ifdef ZOC_HAVE_AF_XDP
	&zoc_uplink_af_xdp,
#endif
};

static struct zoc_uplink *g_uplinks;

const struct zoc_uplink_type *zoc_uplink_type_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(g_types) / sizeof(g_types[0]); i++)
		if (strcmp(g_types[i]->name, name) == 0)
			return g_types[i];
	return NULL;
}

static int uplink_poll_fn(void *arg)
{
	struct zoc_uplink *u = arg;

	return u->type->poll(u);
}

static int uplink_arm(void *arg)
{
	struct zoc_uplink *u = arg;
	int r = u->type->pending ? u->type->pending(u) : 0;

	if (r)
		ZOC_UPLINK_INC(u, wakeups, 1);
	return r;
}

/* Level-triggered: the fd only wakes the reactor; the poller does the
 * work. An error condition (interface gone or down) would keep a level-
 * triggered fd ready forever: clear a socket error, and when that is not
 * possible stop watching the fd (the poller still runs while awake). */
static void uplink_on_fd(void *arg, uint32_t events)
{
	struct zoc_uplink *u = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (!(events & (EPOLLERR | EPOLLHUP)))
		return;
	ZOC_UPLINK_INC(u, rx_errors, 1);
	if (!(events & EPOLLHUP) && getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0) {
		ZOC_WARN_RL("uplink %s: %s", u->ifname, strerror(err));
		return;
	}
	ZOC_WARN_RL("uplink %s: fd in error (interface gone?): no more wake-ups", u->ifname);
	zoc_reactor_del_fd(zoc_reactor_get(u->owner), u->fd);
	u->fd_registered = false;
}

static const struct zoc_poller_ops g_uplink_poller_ops = {
	.poll = uplink_poll_fn,
	.arm = uplink_arm,
};

/* Runs `fn(u)` on reactor idx: inline when no reactor runs or when we are
 * on it already. */
static void run_on(unsigned idx, zoc_msg_fn fn, struct zoc_uplink *u)
{
	struct zoc_reactor *cur = zoc_reactor_current();

	if (!cur || zoc_reactor_index(cur) == idx) {
		fn(u);
		return;
	}
	while (zoc_reactor_send_msg(zoc_reactor_get(idx), fn, u))
		; /* -ENOMEM: control plane, retry (as the barrier does) */
}

static void start_on_owner(void *arg)
{
	struct zoc_uplink *u = arg;
	struct zoc_reactor *r = zoc_reactor_get(u->owner);

	u->poller = zoc_poller_register(r, &g_uplink_poller_ops, u, 0, u->ifname);
	if (!u->poller)
		ZOC_ERR("uplink %s: no poller on reactor %u: not receiving", u->ifname, u->owner);
	if (u->fd >= 0 && zoc_reactor_interrupt_mode())
		u->fd_registered = zoc_reactor_add_fd(r, u->fd, EPOLLIN, uplink_on_fd, u) == 0;
}

int zoc_uplink_create(const char *type, struct zoc_vswitch *sw, const char *ifname,
		      const struct zoc_uplink_opts *opts, struct zoc_uplink **out)
{
	const struct zoc_uplink_type *t = zoc_uplink_type_find(type);
	struct zoc_uplink_opts o = {0};
	struct zoc_port_config cfg;
	struct zoc_uplink *u = NULL;
	const char *why = NULL;
	int ret;

	if (!t || !sw || !ifname || !out)
		return -EINVAL;
	if (!ifname[0] || strlen(ifname) >= ZOC_UPLINK_IFNAME_MAX || strchr(ifname, '/'))
		return -EINVAL;
	if (opts)
		o = *opts;
	if (!o.mtu)
		o.mtu = ZOC_PORT_MTU_DEFAULT;
	if (o.owner >= zoc_reactor_count())
		return -EINVAL;
	zoc_port_config_init(&cfg, o.port_name ? o.port_name : ifname);
	cfg.kind = ZOC_PORT_UPLINK;
	cfg.owner = o.owner;
	cfg.mtu = o.mtu;
	cfg.vlan_mode = o.vlan_mode;
	cfg.vid = o.vid;
	if (o.port_name && strlen(o.port_name) >= ZOC_PORT_NAME_MAX)
		return -EINVAL;
	if (zoc_port_config_check(&cfg, &why)) {
		ZOC_WARN("uplink %s: %s", ifname, why ? why : "bad port configuration");
		return -EINVAL;
	}
	if (zoc_vswitch_port_find(sw, cfg.name))
		return -EEXIST;
	ret = t->open(ifname, &o, &u);
	if (ret)
		return ret;
	u->type = t;
	u->sw = sw;
	u->owner = o.owner;
	u->mtu = o.mtu;
	snprintf(u->ifname, sizeof(u->ifname), "%s", ifname);
	u->port_ops.type = t->name;
	u->port_ops.tx_burst = t->tx_burst;
	ret = zoc_vswitch_port_add(sw, &cfg, &u->port_ops, u, &u->port);
	if (ret) {
		t->close(u);
		t->free(u);
		return ret;
	}
	u->next = g_uplinks;
	g_uplinks = u;
	run_on(u->owner, start_on_owner, u);
	*out = u;
	return 0;
}

static void finish_on_control(void *arg)
{
	struct zoc_uplink *u = arg;
	void (*done)(void *) = u->done;
	void *done_arg = u->done_arg;

	u->type->free(u);
	if (done)
		done(done_arg);
}

static void stop_on_owner(void *arg)
{
	struct zoc_uplink *u = arg;

	if (u->poller)
		zoc_poller_unregister(u->poller);
	u->poller = NULL;
	if (u->fd_registered)
		zoc_reactor_del_fd(zoc_reactor_get(u->owner), u->fd);
	u->fd_registered = false;
	u->type->close(u);
	run_on(0, finish_on_control, u);
}

static void port_removed(void *arg)
{
	struct zoc_uplink *u = arg;

	/* No tx_burst any more; the poller may still run until stopped. */
	run_on(u->owner, stop_on_owner, u);
}

int zoc_uplink_destroy(struct zoc_uplink *u, void (*done)(void *arg), void *arg)
{
	struct zoc_uplink **pp;
	int ret;

	if (!u)
		return -EINVAL;
	if (u->destroying)
		return -EALREADY;
	u->destroying = true;
	u->done = done;
	u->done_arg = arg;
	for (pp = &g_uplinks; *pp; pp = &(*pp)->next) {
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	}
	ret = zoc_vswitch_port_remove(u->port, port_removed, u);
	if (ret == -EALREADY)
		return ret;
	if (ret) {
		u->destroying = false;
		u->next = g_uplinks;
		g_uplinks = u;
	}
	return ret;
}

struct zoc_uplink *zoc_uplink_find(struct zoc_vswitch *sw, const char *port_name)
{
	for (struct zoc_uplink *u = g_uplinks; u; u = u->next)
		if ((!sw || u->sw == sw) && strcmp(zoc_port_name(u->port), port_name) == 0)
			return u;
	return NULL;
}

struct zoc_uplink *zoc_uplink_next(struct zoc_uplink *prev)
{
	return prev ? prev->next : g_uplinks;
}

struct zoc_port *zoc_uplink_port(const struct zoc_uplink *u)
{
	return u->port;
}

const char *zoc_uplink_ifname(const struct zoc_uplink *u)
{
	return u->ifname;
}

void zoc_uplink_get_stats(const struct zoc_uplink *u, struct zoc_uplink_stats *st)
{
	const uint64_t *src = (const uint64_t *)&u->st;
	uint64_t *dst = (uint64_t *)st;

	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

int zoc_uplink_csum_complete(struct zoc_pkt *p)
{
	uint8_t *d = zoc_pkt_data(p);
	uint32_t start = p->csum_start, off = p->csum_offset, sum = 0, i;
	uint16_t c;

	if (!(p->flags & ZOC_PKT_F_CSUM_NEEDED))
		return 0;
	if (start >= p->len || off > p->len - start || p->len - start - off < 2)
		return -EINVAL;
	/* The field holds the pseudo-header sum (virtio's NEEDS_CSUM): the
	 * sum from csum_start to the end, field included, completes it. */
	for (i = start; i + 1 < p->len; i += 2)
		sum += (uint32_t)d[i] << 8 | d[i + 1];
	if (i < p->len)
		sum += (uint32_t)d[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	c = (uint16_t)~sum;
	d[start + off] = (uint8_t)(c >> 8);
	d[start + off + 1] = (uint8_t)c;
	p->flags = (uint8_t)((p->flags & ~ZOC_PKT_F_CSUM_NEEDED) | ZOC_PKT_F_CSUM_VALID);
	return 0;
}

int zoc_uplink_poll(struct zoc_uplink *u)
{
	return u->type->poll(u);
}

json_t *zoc_uplink_to_json(struct zoc_uplink *u)
{
	struct zoc_uplink_stats s;
	json_t *o, *st;

	zoc_uplink_get_stats(u, &s);
	o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", u->type->name, "ifname", u->ifname,
		      "port", zoc_port_name(u->port), "switch", zoc_vswitch_name(u->sw),
		      "owner", (json_int_t)u->owner);
	st = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		       "rx_frames", (json_int_t)s.rx_frames, "rx_bytes", (json_int_t)s.rx_bytes,
		       "rx_oversize", (json_int_t)s.rx_oversize,
		       "rx_truncated", (json_int_t)s.rx_truncated,
		       "rx_nobuf", (json_int_t)s.rx_nobuf, "rx_errors", (json_int_t)s.rx_errors,
		       "tx_frames", (json_int_t)s.tx_frames, "tx_bytes", (json_int_t)s.tx_bytes,
		       "tx_full", (json_int_t)s.tx_full, "tx_errors", (json_int_t)s.tx_errors,
		       "tx_oversize", (json_int_t)s.tx_oversize,
		       "wakeups", (json_int_t)s.wakeups);
	if (!o || !st) {
		json_decref(o);
		json_decref(st);
		return NULL;
	}
	json_object_set_new(o, "stats", st);
	if (u->type->info)
		u->type->info(u, o);
	return o;
}
