/* SPDX-License-Identifier: MIT */
/*
 * port.c - port configuration helpers (port.h). The port object itself and
 * its run-time functions live with the switch (vswitch.c), which owns it.
 */
#include "net/port.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zoc_port_config_init(struct zoc_port_config *cfg, const char *name)
{
	memset(cfg, 0, sizeof(*cfg));
	if (name)
		snprintf(cfg->name, sizeof(cfg->name), "%s", name);
	cfg->kind = ZOC_PORT_VNIC;
	cfg->enabled = true;
	cfg->mtu = ZOC_PORT_MTU_DEFAULT;
	cfg->vlan_mode = ZOC_VLAN_NONE;
}

int zoc_port_config_trunk_allow(struct zoc_port_config *cfg, uint16_t vid, bool allow)
{
	if (vid < 1 || vid > 4094)
		return -EINVAL;
	if (allow)
		cfg->trunk[vid / 64] |= 1ull << (vid % 64);
	else
		cfg->trunk[vid / 64] &= ~(1ull << (vid % 64));
	return 0;
}

int zoc_port_config_trunk_parse(struct zoc_port_config *cfg, const char *list)
{
	const char *s = list;

	if (!s)
		return -EINVAL;
	while (*s) {
		char *end;
		unsigned long lo, hi;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		lo = strtoul(s, &end, 10);
		hi = lo;
		s = end;
		if (*s == '-') {
			s++;
			if (*s < '0' || *s > '9')
				return -EINVAL;
			hi = strtoul(s, &end, 10);
			s = end;
		}
		if (lo < 1 || hi > 4094 || lo > hi)
			return -EINVAL;
		for (unsigned long v = lo; v <= hi; v++)
			zoc_port_config_trunk_allow(cfg, (uint16_t)v, true);
		if (*s == ',')
			s++;
		else if (*s)
			return -EINVAL;
	}
	return 0;
}

int zoc_port_config_check(const struct zoc_port_config *cfg, const char **why)
{
	const char *w = NULL;

	if (!cfg->name[0] || !memchr(cfg->name, 0, sizeof(cfg->name)))
		w = "port name must be 1..63 characters";
	else if (cfg->kind != ZOC_PORT_VNIC && cfg->kind != ZOC_PORT_UPLINK)
		w = "unknown port kind";
	else if (cfg->mtu < ZOC_PORT_MTU_MIN || cfg->mtu > ZOC_PORT_MTU_MAX)
		w = "mtu must be 68..9000";
	else if (cfg->has_mac && (cfg->mac[0] & 1))
		w = "port MAC must be a unicast address";
	else if (cfg->vlan_mode == ZOC_VLAN_ACCESS && (cfg->vid < 1 || cfg->vid > 4094))
		w = "access VLAN must be 1..4094";
	else if (cfg->vlan_mode == ZOC_VLAN_TRUNK && cfg->vid > 4094)
		w = "native VLAN must be 0 (none) or 1..4094";
	else if (cfg->vlan_mode == ZOC_VLAN_TRUNK &&
		 ((cfg->trunk[0] & 1) || (cfg->trunk[63] >> 63)))
		w = "trunk VLANs must be 1..4094";
	else if (cfg->vlan_mode != ZOC_VLAN_NONE && cfg->vlan_mode != ZOC_VLAN_ACCESS &&
		 cfg->vlan_mode != ZOC_VLAN_TRUNK)
		w = "unknown VLAN mode";
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

const char *zoc_drop_reason_name(enum zoc_drop_reason why)
{
	static const char *const names[ZOC_DROP__COUNT] = {
		[ZOC_DROP_NO_BUFFER] = "no_buffer",
		[ZOC_DROP_RING_FULL] = "ring_full",
		[ZOC_DROP_VLAN] = "vlan",
		[ZOC_DROP_MTU] = "mtu",
		[ZOC_DROP_INVALID] = "invalid",
		[ZOC_DROP_FLOOD_LIMIT] = "flood_limit",
		[ZOC_DROP_PORT_DOWN] = "port_down",
		[ZOC_DROP_FILTERED] = "filtered",
		[ZOC_DROP_SECGROUP] = "secgroup",
		[ZOC_DROP_CT_INVALID] = "ct_invalid",
		[ZOC_DROP_CT_NO_SESSION] = "ct_no_session",
		[ZOC_DROP_CT_DIRECTION] = "ct_direction",
		[ZOC_DROP_CT_FULL] = "ct_full",
		[ZOC_DROP_CT_PORT_CAP] = "ct_port_cap",
		[ZOC_DROP_CT_FRAGMENT] = "ct_fragment",
	};

	return (unsigned)why < ZOC_DROP__COUNT ? names[why] : "?";
}
