/* Connection tracking for balanced flows, in the LRU map lb_conntrack. A
 * flow has one entry, ORIGINAL (client -> VIP:port, as the client sends it;
 * it gives the backend), that both directions read and stamp. A reply
 * (backend:port -> client) finds it without an entry of its own, as
 * Cilium's rev-NAT index does: lb_rev_nat, kept by user space, gives the
 * VIP of the reply's source (read through its direct-mapped front,
 * lb_rev_nat_slots, see lb_abi.h) (a backend IP), and with ports unchanged by the
 * NAT the reply's tuple mapped back is the ORIGINAL key. The entry is then
 * checked to be balanced to that very backend (nat_addr), so a client's
 * direct connection to a backend's own address is never reverse-NATed.
 * One entry per flow: one LRU insert per new flow instead of two, and half
 * the conntrack memory.
 *
 * A flow also keeps a REPLY entry (backend -> client, gives the VIP), and
 * both carry LB_CT_F_PAIRED, where the reply alone cannot name the VIP:
 *  - its backend IP is behind more than one VIP (LB_REV_NAT_F_AMBIGUOUS:
 *    the same endpoint a backend of services on different VIPs); replies
 *    from such a backend look the REPLY entry up first, then the ORIGINAL
 *    entry through the VIP lb_rev_nat still names (flows made before the
 *    IP became ambiguous). User space marks every backend with such an IP
 *    (LB_BACKEND_F_PAIRED) before lb_rev_nat turns ambiguous, and writes
 *    lb_rev_nat before a backend enters any table or a frontend is added;
 *  - hairpin flows (the backend is the client), whose replies go to the
 *    hairpin address, not to the client.
 * State changes (flags) of a paired flow are copied to the other entry, so
 * either entry gives the flow's timeout; the collector ends both together.
 *
 * Entries end by TCP state or idle time; the timeouts come from lb_config
 * (user space) and the same rules are applied by the user-space garbage
 * collector. There is no fixed cut of idle connections: an established TCP
 * flow lives as long as its configured idle timeout (6 h by default). */
#ifndef WEFT_EBPF_CONNTRACK_H
#define WEFT_EBPF_CONNTRACK_H

#include "lb_maps.h"
#include "parsing.h"

static __always_inline __u64 lb_ct_timeout(const struct lb_config *cfg, __u8 proto, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return cfg->udp_timeout_ns;
	if ((flags & LB_CT_F_RST) ||
	    (flags & (LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY)) == (LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY))
		return cfg->tcp_closing_timeout_ns;
	if (!(flags & LB_CT_F_SEEN_REPLY))
		return cfg->tcp_syn_timeout_ns;
	return cfg->tcp_established_timeout_ns;
}

static __always_inline int lb_ct_expired(const struct lb_config *cfg, __u8 proto,
					 const struct lb_ct_value *ct, __u64 now)
{
	return now - ct->last_seen_ns >= lb_ct_timeout(cfg, proto, ct->flags);
}

static __always_inline __u8 lb_ct_flags_from_tcp(__u8 tcp_flags, int reply)
{
	__u8 flags = 0;

	if (tcp_flags & TCP_FLAG_RST)
		flags |= LB_CT_F_RST;
	if (tcp_flags & TCP_FLAG_FIN)
		flags |= reply ? LB_CT_F_FIN_REPLY : LB_CT_F_FIN_ORIG;
	return flags;
}

/* The key of the other entry of the same flow. `nat_addr` is the entry's
 * nat_addr (backend IP for ORIGINAL, VIP for REPLY). A hairpin flow's reply
 * goes from the backend to the hairpin address instead of to the client
 * (which is the backend). */
static __always_inline void lb_ct_partner_key(const struct lb_ct_key *key, __u32 nat_addr,
					      __u8 flags, struct lb_ct_key *partner)
{
	int hairpin = flags & LB_CT_F_HAIRPIN;

	if (key->dir == LB_CT_DIR_ORIGINAL) {
		partner->saddr = nat_addr;
		partner->daddr = hairpin ? bpf_htonl(LB_HAIRPIN_ADDR_HOST) : key->saddr;
		partner->dir = LB_CT_DIR_REPLY;
	} else {
		partner->saddr = hairpin ? key->saddr : key->daddr;
		partner->daddr = nat_addr;
		partner->dir = LB_CT_DIR_ORIGINAL;
	}
	partner->sport = key->dport;
	partner->dport = key->sport;
	partner->proto = key->proto;
	partner->pad = 0;
}

/* Whether the entry `key` has a partner: a REPLY entry always has its
 * ORIGINAL one (a version 5 flow's ORIGINAL entry lacks LB_CT_F_PAIRED). */
static __always_inline int lb_ct_has_partner(const struct lb_ct_key *key, __u8 entry_flags)
{
	return key->dir == LB_CT_DIR_REPLY || (entry_flags & LB_CT_F_PAIRED);
}

/* Flags that matter for both directions (state changes) are copied to the
 * partner entry of a paired flow, so either entry alone gives the flow's
 * timeout. Only runs when flags change: at most a few times per flow. */
static __always_inline void lb_ct_share_flags(const struct lb_ct_key *key, __u32 nat_addr,
					      __u8 entry_flags, __u8 flags)
{
	struct lb_ct_key partner = {};
	struct lb_ct_value *other;

	if (!lb_ct_has_partner(key, entry_flags))
		return;
	lb_ct_partner_key(key, nat_addr, entry_flags, &partner);
	other = bpf_map_lookup_elem(&lb_conntrack, &partner);
	if (other)
		other->flags |= flags;
}

/* Whether a new flow to `backend` keeps a REPLY entry (see above). The
 * backend carries its IP's ambiguity (LB_BACKEND_F_PAIRED), so a new flow
 * pays no lb_rev_nat lookup (~30 ns in bench_lb). */
static __always_inline int lb_ct_needs_pair(const struct lb_backend *backend, __u8 flags)
{
	return (flags & LB_CT_F_HAIRPIN) || (backend->flags & LB_BACKEND_F_PAIRED);
}

/* The ORIGINAL entry a reply from `ip->saddr` (a backend behind `vip`)
 * answers, or 0. */
static __always_inline struct lb_ct_value *lb_ct_original_of_reply(const struct iphdr *ip,
								   const struct udphdr *l4,
								   __u32 vip,
								   struct lb_ct_key *key)
{
	struct lb_ct_value *ct;

	key->proto = ip->protocol;
	key->saddr = ip->daddr;
	key->daddr = vip;
	key->sport = l4->dest;
	key->dport = l4->source;
	key->dir = LB_CT_DIR_ORIGINAL;
	ct = bpf_map_lookup_elem(&lb_conntrack, key);
	/* Balanced to this backend, or a connection of the client's own to
	 * the backend's address (or to another backend) on the same ports. */
	if (!ct || ct->nat_addr != ip->saddr)
		return 0;
	return ct;
}

/* The entry of the flow a packet from a backend (`ip`, `l4`) towards the
 * endpoint answers, and its key in `key`; 0 when it answers none (not from
 * a backend, or a connection not balanced to it). `*vip` is the address to
 * give the reply as source. lb_rev_nat_slots answers for most addresses in
 * one array read: a backend IP behind one VIP, or an address of no backend;
 * lb_rev_nat only for the rest (lb_abi.h). */
static __always_inline struct lb_ct_value *lb_ct_reply_lookup(const struct iphdr *ip,
							      const struct udphdr *l4,
							      struct lb_ct_key *key, __u32 *vip)
{
	__u32 index = lb_rev_nat_slot_index(ip->saddr, lb_rev_nat_slot_shift);
	struct lb_rev_nat_value *rev;
	struct lb_ct_value *ct;
	__u64 *elem, slot;

	elem = bpf_map_lookup_elem(&lb_rev_nat_slots, &index);
	if (!elem)
		return 0;
	slot = *(volatile __u64 *)elem; /* one load: IP and VIP agree */
	if (slot != LB_REV_NAT_SLOT_ASK) {
		if (slot == 0 || lb_rev_nat_slot_ip(slot) != ip->saddr)
			return 0;
		*vip = lb_rev_nat_slot_vip(slot);
		return lb_ct_original_of_reply(ip, l4, *vip, key);
	}

	rev = bpf_map_lookup_elem(&lb_rev_nat, &ip->saddr);
	if (!rev)
		return 0;
	if (rev->flags & LB_REV_NAT_F_AMBIGUOUS) {
		key->proto = ip->protocol;
		key->saddr = ip->saddr;
		key->daddr = ip->daddr;
		key->sport = l4->source;
		key->dport = l4->dest;
		key->dir = LB_CT_DIR_REPLY;
		ct = bpf_map_lookup_elem(&lb_conntrack, key);
		if (ct) {
			*vip = ct->nat_addr;
			return ct;
		}
	}
	*vip = rev->vip;
	return lb_ct_original_of_reply(ip, l4, *vip, key);
}

/* The fields the entries of a flow start with. */
static __always_inline void lb_ct_fill(struct lb_ct_value *value, __u32 backend_id,
				       __u32 nat_addr, __u32 service_id, __u32 frontend_epoch,
				       __u8 flags, __u64 now, const struct lb_flow *flow)
{
	value->backend_id = backend_id;
	value->nat_addr = nat_addr;
	value->service_id = service_id;
	value->frontend_epoch = frontend_epoch;
	value->flags = flags;
	if (flags & LB_CT_F_SYN_ORIG) {
		value->syn_seq = flow->tcp_seq;
		value->syn_len = flow->payload_len > 0xffff ? 0xffff : flow->payload_len;
	} else {
		value->syn_seq = 0;
		value->syn_len = 0;
	}
	value->last_seen_ns = now;
}

/* A new flow on the tuple of an old one with the same backend: the keys
 * stay, so the entries are rewritten where they are instead of being
 * inserted again (an LRU insert costs a node from the LRU lists and the
 * bucket lock, several times a lookup). `old` is the ORIGINAL entry. A
 * paired flow's REPLY entry is inserted only when it is missing (evicted,
 * or the old flow was not paired); an unpaired one's is deleted. */
static __always_inline int lb_ct_renew(const struct lb_ct_key *key, struct lb_ct_value *old,
				       __u8 old_flags, __u32 backend_id, __u32 backend_ip, __u32 service_id,
				       __u32 frontend_epoch, __u8 flags, __u64 now,
				       const struct lb_flow *flow)
{
	struct lb_ct_value value = {};
	struct lb_ct_key reply = {};
	struct lb_ct_value *other;

	lb_ct_fill(old, backend_id, backend_ip, service_id, frontend_epoch, flags, now, flow);
	lb_ct_partner_key(key, backend_ip, flags, &reply);
	if (!(flags & LB_CT_F_PAIRED)) {
		if (old_flags & LB_CT_F_PAIRED)
			bpf_map_delete_elem(&lb_conntrack, &reply);
		return 0;
	}
	other = bpf_map_lookup_elem(&lb_conntrack, &reply);
	if (other) {
		lb_ct_fill(other, backend_id, key->daddr, service_id, frontend_epoch, flags, now, flow);
		return 0;
	}
	lb_ct_fill(&value, backend_id, key->daddr, service_id, frontend_epoch, flags, now, flow);
	return bpf_map_update_elem(&lb_conntrack, &reply, &value, BPF_ANY);
}

/* Records a new flow: its ORIGINAL entry, and its REPLY entry when
 * `flags` has LB_CT_F_PAIRED. 0 or a negative errno. */
static __always_inline int lb_ct_create(const struct lb_ct_key *key, __u32 backend_id,
					__u32 backend_ip, __u32 service_id, __u32 frontend_epoch,
					__u8 flags, __u64 now,
					const struct lb_flow *flow)
{
	struct lb_ct_value value = {};
	struct lb_ct_key reply = {};
	int ret;

	value.last_seen_ns = now;
	value.backend_id = backend_id;
	value.nat_addr = backend_ip;
	value.service_id = service_id;
	value.frontend_epoch = frontend_epoch;
	value.flags = flags;
	if (flags & LB_CT_F_SYN_ORIG) {
		value.syn_seq = flow->tcp_seq;
		value.syn_len = flow->payload_len > 0xffff ? 0xffff : flow->payload_len;
	}
	ret = bpf_map_update_elem(&lb_conntrack, key, &value, BPF_ANY);
	if (ret || !(flags & LB_CT_F_PAIRED))
		return ret;
	lb_ct_partner_key(key, backend_ip, flags, &reply);
	value.nat_addr = key->daddr;
	return bpf_map_update_elem(&lb_conntrack, &reply, &value, BPF_ANY);
}

/* Whether a SYN-ACK towards the client with this acknowledgment number
 * (network order) answers the SYN that opened the flow: it acknowledges
 * that SYN, and with TCP Fast Open perhaps its data. Anything else answers
 * another connection on the same 4-tuple. */
static __always_inline int lb_ct_answers_syn(const struct lb_ct_value *ct, __u32 ack_seq)
{
	__u32 beyond_syn;

	if (!(ct->flags & LB_CT_F_SYN_ORIG))
		return 0;
	beyond_syn = bpf_ntohl(ack_seq) - (bpf_ntohl(ct->syn_seq) + 1);
	return beyond_syn <= ct->syn_len;
}

/* Deletes the other entry, if any, of a flow whose entry `key` is being
 * replaced. */
static __always_inline void lb_ct_delete_partner(const struct lb_ct_key *key, __u32 nat_addr,
						 __u8 entry_flags)
{
	struct lb_ct_key partner = {};

	if (!lb_ct_has_partner(key, entry_flags))
		return;
	lb_ct_partner_key(key, nat_addr, entry_flags, &partner);
	bpf_map_delete_elem(&lb_conntrack, &partner);
}

static __always_inline void lb_ct_delete_flow(const struct lb_ct_key *key, __u32 nat_addr,
					      __u8 entry_flags)
{
	lb_ct_delete_partner(key, nat_addr, entry_flags);
	bpf_map_delete_elem(&lb_conntrack, key);
}

/* Ends, from a reply, the flow whose entry the reply found: `key` is its
 * REPLY entry, or its ORIGINAL entry (found through lb_rev_nat, and known to
 * be balanced to the reply's source). From a REPLY entry, the ORIGINAL one
 * goes too unless a newer flow on another backend has taken it over. */
static __always_inline void lb_ct_end_from_reply(const struct lb_ct_key *key,
						 const struct lb_ct_value *ct)
{
	struct lb_ct_key original = {};
	struct lb_ct_value *other;

	if (key->dir == LB_CT_DIR_ORIGINAL) {
		lb_ct_delete_flow(key, ct->nat_addr, ct->flags);
		return;
	}
	lb_ct_partner_key(key, ct->nat_addr, ct->flags, &original);
	other = bpf_map_lookup_elem(&lb_conntrack, &original);
	if (other && other->nat_addr == key->saddr)
		bpf_map_delete_elem(&lb_conntrack, &original);
	bpf_map_delete_elem(&lb_conntrack, key);
}

#endif
