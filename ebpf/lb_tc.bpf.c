// SPDX-License-Identifier: GPL-2.0
/* weft's service load balancer, attached at tc on the host-side veth of each
 * endpoint. Two programs in one object so they share every map without a
 * map-reuse dance between two skeletons and load as one unit:
 *
 *   lb_from_endpoint  tc ingress of the host-side veth (packets the endpoint
 *                     sends): ARP and ICMP echo for VIPs answered, TCP/UDP to
 *                     VIP:port DNATed to a backend chosen by Maglev and
 *                     remembered in conntrack, refusals when nothing serves.
 *   lb_to_endpoint    tc egress of the host-side veth (packets towards the
 *                     endpoint): replies of balanced flows get the VIP back
 *                     as their source (their flow found through lb_rev_nat,
 *                     see conntrack.h).
 *
 * Everything else leaves with TC_ACT_OK after one array read (from the
 * endpoint) or one lb_rev_nat_slots read (towards it). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_abi.h"
#include "lb_consts.h"
#include "lb_hash.h"
#include "lb_maps.h"
#include "parsing.h"
#include "conntrack.h"
#include "nat.h"
#include "replies.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u32 lb_maglev_pick(__u32 service_id, const struct lb_flow *flow)
{
	__u64 *entry = bpf_map_lookup_elem(&lb_maglev_index, &service_id);
	struct lb_maglev_slot *slot;
	__u32 index, size;
	__u64 ref;

	if (!entry)
		return LB_NO_BACKEND;
	ref = *(volatile __u64 *)entry; /* one load: base, size and generation agree */
	size = lb_maglev_ref_size(ref);
	if (size == 0)
		return LB_NO_BACKEND;
	index = lb_maglev_ref_base(ref) +
		lb_flow_hash(flow->saddr, flow->sport, flow->dport, flow->proto) % size;
	slot = bpf_map_lookup_elem(&lb_maglev, &index);
	if (!slot)
		return LB_NO_BACKEND;
	return slot->backend[lb_maglev_ref_gen(ref)];
}

static __always_inline void lb_count(__u32 backend_id, __u64 connections, __u64 bytes)
{
	struct lb_counters *counters = bpf_map_lookup_elem(&lb_backend_counters, &backend_id);

	if (counters) {
		counters->connections += connections;
		counters->packets += 1;
		counters->bytes += bytes;
	}
}

static __always_inline int lb_backend_usable(const struct lb_backend *backend, __u32 ip)
{
	return backend && backend->ip == ip &&
	       (backend->state == LB_BACKEND_ACTIVE || backend->state == LB_BACKEND_DRAINING);
}

/* The backend's own flow to its VIP, balanced to itself: back in, from the
 * hairpin address. */
static __always_inline int lb_hairpin_forward(struct __sk_buff *skb, const struct lb_flow *flow,
					      const struct lb_backend *backend)
{
	__u8 vip_mac[ETH_ALEN];

	lb_mac_from_ip(vip_mac, flow->daddr);
	if (lb_rewrite_both(skb, flow->proto, flow->saddr, bpf_htonl(LB_HAIRPIN_ADDR_HOST),
			    flow->daddr, backend->ip, backend->mac, vip_mac))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* The backend answering a hairpin flow (to the hairpin address): back in,
 * from the VIP, as the reply its client socket waits for. */
static __always_inline int lb_hairpin_reply(struct __sk_buff *skb)
{
	struct lb_flow flow = {};
	struct lb_ct_key key = {};
	struct lb_ct_value *ct, snap;
	__u8 own_mac[ETH_ALEN], vip_mac[ETH_ALEN];
	__u8 flags = LB_CT_F_SEEN_REPLY;

	if (lb_parse_l4(skb, &flow))
		return TC_ACT_SHOT;
	key.saddr = flow.saddr;
	key.daddr = flow.daddr;
	key.sport = flow.sport;
	key.dport = flow.dport;
	key.proto = flow.proto;
	key.dir = LB_CT_DIR_REPLY;
	ct = lb_ct_lookup(&key, &snap);
	if (!ct) {
		lb_stat_inc(LB_STAT_DROP_OTHER);
		return TC_ACT_SHOT;
	}
	if (flow.proto == IPPROTO_TCP)
		flags |= lb_ct_flags_from_tcp(flow.tcp_flags, 1);
	ct->seen = lb_ct_clock(bpf_ktime_get_coarse_ns());
	if (flags & ~snap.flags) {
		ct->flags |= flags;
		lb_ct_share_flags(&key, snap.nat_addr, snap.flags | flags, flags);
	}
	if (bpf_skb_load_bytes(skb, ETH_ALEN, own_mac, ETH_ALEN))
		return TC_ACT_SHOT;
	lb_mac_from_ip(vip_mac, snap.nat_addr);
	if (lb_rewrite_both(skb, flow.proto, flow.saddr, snap.nat_addr, flow.daddr, flow.saddr,
			    own_mac, vip_mac))
		return TC_ACT_SHOT;
	lb_stat_inc(LB_STAT_REV_NAT);
	return bpf_redirect(skb->ifindex, 0);
}

/* The frontend (VIP, port, proto) the packet is for, exact port first. */
static __always_inline struct lb_service_value *lb_frontend(const struct lb_flow *flow)
{
	struct lb_service_key key = {};
	struct lb_service_value *service;

	key.vip = flow->daddr;
	key.port = flow->dport;
	key.proto = flow->proto;
	service = bpf_map_lookup_elem(&lb_services, &key);
	if (service)
		return service;
	key.port = 0;
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* TCP/UDP to a VIP, `service_id` known: from the flow's conntrack entry
 * (`ct`, may be 0; `snap` its checked copy, lb_ct_lookup: every decision
 * reads the copy) or from its frontend. */
static __always_inline int lb_balance(struct __sk_buff *skb, const struct lb_config *cfg,
				      const struct lb_flow *flow, const struct lb_ct_key *ct_key,
				      struct lb_ct_value *ct, const struct lb_ct_value *snap,
				      __u32 service_id, __u32 epoch)
{
	struct lb_backend *backend = 0;
	struct lb_ct_value *stale = 0; /* the entry of an old flow on this tuple */
	__u32 backend_id = 0, stale_nat_addr = 0;
	__u64 now = bpf_ktime_get_coarse_ns();
	__u8 flags = 0, stale_flags = 0;
	int bare_syn = flow->proto == IPPROTO_TCP &&
		       (flow->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;

	if (flow->proto == IPPROTO_TCP)
		flags = lb_ct_flags_from_tcp(flow->tcp_flags, 0);
	if (ct) {
		/* A bare SYN other than the one that opened the flow starts a
		 * new connection on the old tuple (TIME_WAIT reuse, a client
		 * that lost its socket): a new flow, with a new Maglev choice.
		 * A retransmitted SYN (same sequence number) stays. */
		int reopened = bare_syn &&
			       ((snap->flags & (LB_CT_F_RST | LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY)) ||
				!(snap->flags & LB_CT_F_SYN_ORIG) || snap->syn_seq != flow->tcp_seq);

		if (reopened)
			lb_stat_inc(LB_STAT_FLOW_REOPENED);
		if (reopened || lb_ct_expired(cfg, flow->proto, snap, now)) {
			stale = ct;
			stale_nat_addr = snap->nat_addr;
			stale_flags = snap->flags;
			ct = 0; /* a new flow on an old tuple */
		} else {
			/* The backend and its address from the checked copy:
			 * a way another CPU rewrites meanwhile cannot turn
			 * this flow's packet into a RST or send it elsewhere. */
			backend_id = snap->backend_id;
			backend = bpf_map_lookup_elem(&lb_backends, &backend_id);
			if (!lb_backend_usable(backend, snap->nat_addr)) {
				/* An established TCP connection cannot move: it
				 * gets a RST. A handshake (a retransmitted SYN)
				 * and UDP have nothing to break: choose again. */
				if (flow->proto == IPPROTO_TCP && !bare_syn) {
					lb_ct_delete_flow(ct_key, snap->nat_addr, snap->flags);
					return lb_send_rst(skb, flow, LB_STAT_RST_DEAD_BACKEND);
				}
				stale = ct;
				stale_nat_addr = snap->nat_addr;
				stale_flags = snap->flags;
				ct = 0;
			}
		}
	}

	if (ct) {
		__u8 now_flags = snap->flags | flags;

		ct->seen = lb_ct_clock(now);
		/* The client's FIN, and each of its packets once closed both
		 * ways, may be answered by the backend after FIN both ways
		 * (see LB_CT_F_CLIENT_SPOKE): a few packets per flow. */
		if ((flags & LB_CT_F_FIN_ORIG) ||
		    (snap->flags & LB_CT_F_FIN_BOTH) == LB_CT_F_FIN_BOTH) {
			/* The entry replies read: this one, or the REPLY
			 * entry of a paired flow. */
			ct->flags |= flags | LB_CT_F_CLIENT_SPOKE;
			lb_ct_share_flags(ct_key, snap->nat_addr, now_flags | LB_CT_F_CLIENT_SPOKE,
					  flags | LB_CT_F_CLIENT_SPOKE);
		} else if (flags & ~snap->flags) {
			ct->flags |= flags;
			lb_ct_share_flags(ct_key, snap->nat_addr, now_flags, flags);
		}
		lb_count(backend_id, 0, skb->len);
		lb_stat_inc(LB_STAT_CT_HIT);
	} else {
		backend_id = lb_maglev_pick(service_id, flow);
		backend = backend_id ? bpf_map_lookup_elem(&lb_backends, &backend_id) : 0;
		if (!backend || backend->state != LB_BACKEND_ACTIVE)
			return lb_refuse(skb, flow, LB_STAT_RST_NO_BACKEND);
		if (flow->proto == IPPROTO_TCP && (flow->tcp_flags & TCP_FLAG_SYN))
			flags |= LB_CT_F_SYN_ORIG;
		if (backend->ip == flow->saddr)
			flags |= LB_CT_F_HAIRPIN;
		if (lb_ct_needs_pair(backend, flags))
			flags |= LB_CT_F_PAIRED;
		/* The old flow's reply entry is keyed by its backend: left
		 * behind, it would turn that backend's packets to the client
		 * (say, of a direct connection) into replies from the VIP. */
		if (stale && stale_nat_addr != backend->ip)
			lb_ct_delete_partner(ct_key, stale_nat_addr, stale_flags);
		/* A reused tuple (client ports come round again within
		 * seconds under short connections) on the same backend keeps
		 * its keys: its entries are rewritten in place, no insert.
		 * Otherwise a full conntrack map evicts (LRU); failing here
		 * only costs stickiness, Maglev still sends the next packet
		 * the same way. */
		if (stale && stale_nat_addr == backend->ip)
			lb_ct_renew(cfg, ct_key, stale_flags, backend_id, backend->ip, service_id,
				    epoch, flags, now, flow);
		else
			lb_ct_create(cfg, ct_key, backend_id, backend->ip, service_id, epoch, flags, now,
				     flow);
		lb_count(backend_id, 1, skb->len);
		lb_stat_inc(LB_STAT_NEW_FLOW);
	}
	if (!backend)
		return TC_ACT_SHOT;
	if (backend->ip == flow->saddr)
		return lb_hairpin_forward(skb, flow, backend);
	if (lb_dnat(skb, flow->proto, flow->daddr, backend))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* TCP/UDP to a frontend whose conntrack entry (`ct`, may be 0) is missing
 * or was stamped under other frontends. */
static __always_inline int lb_new_or_moved(struct __sk_buff *skb, const struct lb_config *cfg,
					   const struct lb_flow *flow, const struct lb_ct_key *ct_key,
					   struct lb_ct_value *ct, const struct lb_ct_value *snap,
					   const struct lb_service_value *service, __u32 epoch)
{
	if (ct && snap->service_id != service->service_id) {
		/* The port moved to another service: a new flow. */
		lb_ct_delete_partner(ct_key, snap->nat_addr, snap->flags);
		ct = 0;
	} else if (ct)
		ct->frontend_epoch = epoch;
	return lb_balance(skb, cfg, flow, ct_key, ct, snap, service->service_id, epoch);
}

/* Packets the endpoint sends. A packet to no VIP leaves after one array
 * read (lb_vip_filter). A packet of a tracked flow costs one hash lookup:
 * its conntrack entry, while stamped with the current frontend epoch (see
 * lb_abi.h), stands for the VIP and frontend lookups too. */
static __always_inline int lb_from_ipv4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct lb_service_value *service;
	struct lb_vip_value *vip;
	struct lb_ct_value *ct = 0, snap;
	struct lb_ct_key ct_key = {};
	struct lb_flow flow = {};
	struct lb_config *cfg;
	__u32 zero = 0, daddr, epoch;
	int l4 = 0;

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg || !lb_maybe_vip(ip->daddr, cfg))
		return TC_ACT_OK;
	epoch = cfg->frontend_epoch;
	if (ip->ihl == 5 && !(ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) &&
	    (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
	    lb_parse_l4(skb, &flow) == 0) {
		l4 = 1;
		ct_key.saddr = flow.saddr;
		ct_key.daddr = flow.daddr;
		ct_key.sport = flow.sport;
		ct_key.dport = flow.dport;
		ct_key.proto = flow.proto;
		ct_key.dir = LB_CT_DIR_ORIGINAL;
		ct = lb_ct_lookup(&ct_key, &snap);
		if (ct && snap.frontend_epoch == epoch)
			return lb_balance(skb, cfg, &flow, &ct_key, ct, &snap, snap.service_id, epoch);
		/* A new flow, or the frontends changed since the entry was
		 * checked: the frontend decides. A frontend stands for its VIP
		 * (user space adds the VIP first and removes it last), so a
		 * first packet skips the lb_vips lookup: one hash lookup less
		 * on every new flow. lb_vips still decides for everything
		 * else (ARP, ICMP, unknown ports, the hairpin address). */
		service = lb_frontend(&flow);
		if (service)
			return lb_new_or_moved(skb, cfg, &flow, &ct_key, ct, &snap, service, epoch);
	}

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	daddr = ip->daddr;
	vip = bpf_map_lookup_elem(&lb_vips, &daddr);
	if (!vip)
		return TC_ACT_OK;

	if (ip->ihl != 5) {
		lb_stat_inc(LB_STAT_DROP_IP_OPTIONS);
		return TC_ACT_SHOT;
	}
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		lb_stat_inc(LB_STAT_DROP_FRAGMENT);
		return TC_ACT_SHOT;
	}
	if (vip->flags & LB_VIP_F_HAIRPIN) {
		if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)
			return lb_hairpin_reply(skb);
		lb_stat_inc(LB_STAT_DROP_OTHER);
		return TC_ACT_SHOT;
	}
	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (!l4)
			return TC_ACT_SHOT; /* truncated L4 header */
		/* No frontend for this port (looked up above). */
		return lb_refuse(skb, &flow, LB_STAT_RST_UNKNOWN_PORT);
	case IPPROTO_ICMP:
		return lb_icmp_to_vip(skb);
	default:
		lb_stat_inc(LB_STAT_DROP_OTHER);
		return TC_ACT_SHOT;
	}
}

SEC("tc")
int lb_from_endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return lb_from_ipv4(skb);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return lb_arp_reply(skb);
	return TC_ACT_OK;
}

SEC("tc")
int lb_to_endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *l4 = data + LB_L4_OFF; /* the ports sit at the same place in TCP */
	struct lb_ct_key key = {};
	struct lb_ct_value *ct, snap;
	__u32 backend_ip, vip = 0;
	__u8 flags = 0;

	if ((void *)(l4 + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return TC_ACT_OK;
	backend_ip = ip->saddr;
	ct = lb_ct_reply_lookup(ip, l4, &key, &vip, &snap);
	if (!ct)
		return TC_ACT_OK;

	if (key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + LB_L4_OFF;
		__u8 tcp_flags;

		if ((void *)(tcp + 1) > data_end)
			return TC_ACT_OK;
		tcp_flags = ((__u8 *)tcp)[13];
		/* A SYN from the backend that does not answer the flow's own
		 * SYN belongs to another connection on the same 4-tuple, most
		 * likely the client's direct one to the backend from a port
		 * that carried a balanced flow a moment ago. The backend
		 * holds no other connection on that tuple (it would not send
		 * a SYN then), so the balanced flow is over: end it and let
		 * the packet pass as it is. */
		if ((tcp_flags & TCP_FLAG_SYN) && !lb_ct_answers_syn(&snap, tcp->ack_seq))
			goto foreign;
		/* Closed both ways and the client has said nothing since the
		 * backend last spoke: this answers another connection, as the
		 * ACK a backend's TIME_WAIT sends to the client's direct SYN
		 * on the same tuple. */
		if ((snap.flags & LB_CT_F_FIN_BOTH) == LB_CT_F_FIN_BOTH && !(tcp_flags & TCP_FLAG_RST)) {
			if (!(snap.flags & LB_CT_F_CLIENT_SPOKE))
				goto foreign;
			ct->flags &= ~LB_CT_F_CLIENT_SPOKE;
			snap.flags &= ~LB_CT_F_CLIENT_SPOKE;
		}
		flags = lb_ct_flags_from_tcp(tcp_flags, 1);
	}
	flags |= LB_CT_F_SEEN_REPLY;
	ct->seen = lb_ct_clock(bpf_ktime_get_coarse_ns());
	if (flags & ~snap.flags) {
		ct->flags |= flags;
		lb_ct_share_flags(&key, snap.nat_addr, snap.flags | flags, flags);
	}
	lb_stat_inc(LB_STAT_REV_NAT);
	if (lb_reverse_nat(skb, key.proto, backend_ip, vip))
		return TC_ACT_SHOT;
	return TC_ACT_OK;

foreign:
	/* The backend holds another connection on the flow's tuple, so the
	 * balanced flow is over there: end it, and let the packet pass. */
	lb_ct_end_from_reply(&key, &snap);
	lb_stat_inc(LB_STAT_FOREIGN_REPLY);
	return TC_ACT_OK;
}
