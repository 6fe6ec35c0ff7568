/* Map keys and values shared by the BPF programs (C, clang -target bpf) and
 * the C++ loader in dataplane/lb. Plain C, fixed-width types, explicit
 * padding: both compilers must agree on every byte, which the size and offset
 * assertions at the end check on both sides.
 *
 * Byte order: addresses and ports are kept as they are on the wire (network
 * order) so the data path never swaps; the C++ API converts. */
#ifndef WEFT_EBPF_LB_ABI_H
#define WEFT_EBPF_LB_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "lb_hash.h"

#ifdef __cplusplus
#define LB_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#define LB_ABI_OFFSETOF(type, field) offsetof(type, field)
#include <cstddef>
#else
#define LB_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#define LB_ABI_OFFSETOF(type, field) __builtin_offsetof(type, field)
#endif

/* Backend ids index the backend and counter arrays; 0 means "no backend"
 * (an all-zero Maglev slot, a free backend entry). */
#define LB_NO_BACKEND 0u

enum lb_backend_state {
	LB_BACKEND_FREE = 0,     /* never used or released */
	LB_BACKEND_ACTIVE = 1,   /* in the Maglev table: gets new flows */
	LB_BACKEND_DRAINING = 2, /* out of the table: existing flows go on */
	LB_BACKEND_DEAD = 3,     /* existing TCP flows get a RST */
};

enum lb_ct_dir {
	LB_CT_DIR_ORIGINAL = 0, /* client -> VIP, as seen leaving the client: every flow */
	LB_CT_DIR_REPLY = 1,    /* backend -> client, as seen towards the client: only
				 * flows with LB_CT_F_PAIRED (see conntrack.h) */
};

/* Flags kept in lb_ct_value.flags (both entries of a paired flow carry them). */
#define LB_CT_F_SYN_ORIG 0x01u
#define LB_CT_F_FIN_ORIG 0x02u
#define LB_CT_F_FIN_REPLY 0x04u
#define LB_CT_F_FIN_BOTH (LB_CT_F_FIN_ORIG | LB_CT_F_FIN_REPLY)
#define LB_CT_F_RST 0x08u
#define LB_CT_F_SEEN_REPLY 0x10u
#define LB_CT_F_HAIRPIN 0x20u /* the client is the backend itself */
/* Set (in the REPLY entry) by every client packet once the client has sent
 * its FIN, cleared by the backend's next packet: after FIN both ways the
 * backend only ever answers the client, so a packet from it without this
 * flag answers another connection on the tuple (the ACK of its TIME_WAIT
 * to the client's direct SYN) and passes untouched. */
#define LB_CT_F_CLIENT_SPOKE 0x40u
/* The flow has a REPLY entry besides its ORIGINAL one: its backend is
 * reached through more than one VIP (lb_rev_nat cannot name the VIP from a
 * reply alone), or it is a hairpin flow. Without it the ORIGINAL entry is
 * the flow's only entry, and replies find it through lb_rev_nat. */
#define LB_CT_F_PAIRED 0x80u

/* Hairpin: when a backend's flow to its own VIP is balanced to itself, the
 * program sends it back in with this address as source (a packet from one's
 * own address would be dropped as martian), and the backend's replies to it
 * come back out, turned into replies from the VIP. Link-local, never a VIP;
 * kept in lb_vips (flag LB_VIP_F_HAIRPIN) so it costs normal traffic
 * nothing. Host order: 169.254.42.1. */
#define LB_HAIRPIN_ADDR_HOST 0xa9fe2a01u
#define LB_VIP_F_HAIRPIN 0x1u

/* lb_vip_filter: a bitmap over hashed destination addresses with the bit of
 * every lb_vips key set (a Bloom filter with one hash), so a packet to no
 * VIP leaves after one array read instead of a hash lookup. A set bit only
 * means "maybe": lb_vips decides. Address in network order. */
static inline __u32 lb_vip_filter_bit(__u32 addr, __u32 shift)
{
	return (addr * 0x9e3779b1u) >> shift;
}

/* A frontend: VIP + port + protocol. port 0 matches every port of the VIP
 * for that protocol (Docker's VIP mode forwards all ports). */
struct lb_service_key {
	__u32 vip;   /* network order */
	__u16 port;  /* network order; 0 = any port */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct lb_service_value {
	__u32 service_id; /* index into lb_maglev_index */
	__u32 pad;
};

/* Value of lb_vips (key: VIP, network order): how many frontends use it. The
 * program only needs presence; the count lets user space remove it. */
struct lb_vip_value {
	__u32 frontends;
	__u32 flags; /* LB_VIP_F_* */
};

/* lb_backend.flags: the backend's IP is behind several VIPs
 * (LB_REV_NAT_F_AMBIGUOUS), so a flow to it keeps a REPLY entry. Written by
 * user space on every backend with that IP, before lb_rev_nat turns
 * ambiguous and after it no longer is; in the backend, so that a new flow
 * learns it from the lookup it makes anyway. */
#define LB_BACKEND_F_PAIRED 0x1u

struct lb_backend {
	__u32 ip;        /* network order */
	__u8 mac[6];
	__u8 state;      /* enum lb_backend_state */
	__u8 flags;      /* LB_BACKEND_F_*; 0 in version 5 */
	__u32 service_id; /* owner, so user space can rebuild its index */
	__u32 pad2;
};

/* Value of lb_rev_nat (key: a backend's IP, network order): the VIP its
 * replies come from, so that a reply's own tuple, mapped back, is the key of
 * its flow's ORIGINAL entry (Cilium's rev-NAT index). Written by user space
 * for every backend IP in use. With LB_REV_NAT_F_AMBIGUOUS the IP is a
 * backend behind several VIPs: new flows to it keep a REPLY entry
 * (LB_BACKEND_F_PAIRED), and `vip` is one of them (the one it had when it
 * became ambiguous), for the flows made before. */
struct lb_rev_nat_value {
	__u32 vip;   /* network order */
	__u32 flags; /* LB_REV_NAT_F_* */
};

#define LB_REV_NAT_F_AMBIGUOUS 0x1u

/* lb_rev_nat_slots: lb_rev_nat in front of it as a direct-mapped ARRAY,
 * so that the program towards the endpoint reads one array element (no hash
 * lookup) for a reply's backend IP, and for a packet from no backend. An
 * element is one __u64, read and written whole (the map is mmapable, user
 * space stores it in one write):
 *  - 0: no backend IP lands here; a packet from an IP landing here is from
 *    no backend and passes untouched;
 *  - `ip | vip << 32`: `ip` is the only backend IP landing here, and it is
 *    behind exactly one VIP, `vip` (as lb_rev_nat's entry, not ambiguous);
 *    a packet from another IP landing here is from no backend;
 *  - LB_REV_NAT_SLOT_ASK (ip 0): several backend IPs land here, or the one
 *    that does is ambiguous, or the slot is being changed: lb_rev_nat
 *    decides, as without this array.
 * User space keeps both in step: a slot is made LB_REV_NAT_SLOT_ASK before
 * lb_rev_nat changes for an IP landing there, and gets its own value after,
 * so at every instant the slot says what lb_rev_nat says. Index: the top
 * bits of a multiplicative hash of the IP (network order), `shift` = 32 -
 * log2(slots); the program has the shift as a constant of its load. */
#define LB_REV_NAT_SLOT_ASK ((__u64)0xffffffffu << 32)

static inline __u32 lb_rev_nat_slot_index(__u32 ip, __u32 shift)
{
	return (ip * 0x85ebca6bu) >> shift;
}
static inline __u64 lb_rev_nat_slot(__u32 ip, __u32 vip)
{
	return (__u64)ip | ((__u64)vip << 32);
}
static inline __u32 lb_rev_nat_slot_ip(__u64 slot) { return (__u32)slot; }
static inline __u32 lb_rev_nat_slot_vip(__u64 slot) { return (__u32)(slot >> 32); }

struct lb_ct_key {
	__u32 saddr; /* network order */
	__u32 daddr;
	__u16 sport; /* network order */
	__u16 dport;
	__u8 proto;
	__u8 dir;    /* enum lb_ct_dir */
	__u16 pad;
};

struct lb_ct_value {
	/* When the flow was last seen: bpf_ktime_get_coarse_ns() >>
	 * LB_CT_SEEN_SHIFT (units of ~1.05 ms; wraps after ~52 days, compared
	 * modulo 2^32, so timeouts stay under 2^31 units, ~24 days). Next to
	 * lb_ct_entry.check, so the two are one aligned __u64 that the collector
	 * compares and clears in one atomic operation (conntrack.h). */
	__u32 seen;
	__u32 backend_id;
	__u32 nat_addr;     /* ORIGINAL: backend IP; REPLY: VIP (network order) */
	__u32 service_id;
	__u32 frontend_epoch; /* ORIGINAL: lb_config.frontend_epoch when the frontend was checked */
	/* With LB_CT_F_SYN_ORIG: the sequence number of the client's SYN that
	 * opened the flow (network order). It tells this connection from a new
	 * one on the same 4-tuple: a bare SYN with another sequence number
	 * starts a new flow, and a SYN-ACK towards the client that does not
	 * acknowledge it answers some other connection (the client's direct
	 * one to the backend, from a port that just carried a balanced flow). */
	__u32 syn_seq;
	__u8 flags;         /* LB_CT_F_* */
	__u8 pad;
	__u16 syn_len;      /* payload bytes of that SYN (TCP Fast Open); host order */
	/* No per-flow packet or byte counts: nothing read them; per-backend
	 * counts are in lb_backend_counters. */
};

#define LB_CT_SEEN_SHIFT 20
#define LB_CT_MAX_TIMEOUT_NS (((__u64)1 << 31) << LB_CT_SEEN_SHIFT)

/* Conntrack is a set-associative table (conntrack.h): an ARRAY, mmapable,
 * of buckets of LB_CT_WAYS entries. An entry is live when its check is the
 * lb_ct_check() of its key and identity (backend_id, nat_addr,
 * service_id); 0 is an empty way. */
#define LB_CT_WAYS 4

struct lb_ct_entry {
	struct lb_ct_key key;
	__u32 check;
	struct lb_ct_value value;
};

struct lb_ct_bucket {
	struct lb_ct_entry way[LB_CT_WAYS];
};

#define LB_CT_SEED 0x63746b31u

/* The hash of a conntrack key: its bucket (fastrange over the bucket count)
 * and the seed of its check. */
static inline __u32 lb_ct_hash(__u32 saddr, __u32 daddr, __u32 ports, __u32 proto_dir)
{
	return lb_jhash_3words(saddr, daddr, ports, LB_CT_SEED ^ proto_dir);
}

static inline __u32 lb_ct_bucket_index(__u32 hash, __u32 buckets)
{
	return (__u32)(((__u64)hash * buckets) >> 32);
}

/* A key's second bucket: lb_ct_bucket_index(lb_ct_hash2(hash), buckets). */
#define LB_CT_CHOICES 2

static inline __u32 lb_ct_hash2(__u32 hash)
{
	hash ^= hash >> 16;
	hash *= 0x7feb352du;
	hash ^= hash >> 15;
	hash *= 0x846ca68bu;
	hash ^= hash >> 16;
	return hash;
}

/* lb_ct_tags seen through mmap: an ARRAY's elements are 8-byte aligned,
 * so bucket b's __u32 of tags is at byte b * LB_CT_TAGS_STRIDE (the rest
 * of each 8 bytes unused), way w's tag at that + w. */
#define LB_CT_TAGS_STRIDE 8

/* A way's tag in lb_ct_tags: never 0 (a free way). */
static inline __u8 lb_ct_tag(__u32 hash)
{
	__u8 tag = (__u8)hash;

	return tag ? tag : 1;
}

/* Never 0 (an empty way). */
static inline __u32 lb_ct_check(__u32 hash, __u32 backend_id, __u32 nat_addr, __u32 service_id)
{
	__u32 check = lb_jhash_3words(backend_id, nat_addr, service_id, hash);

	return check ? check : 1;
}

/* Maglev tables live in one pool, lb_maglev, an mmapable ARRAY of these
 * elements, each holding one slot's backend for two generations. A service's
 * table is the run of `size` elements from `base`, named by its entry in
 * lb_maglev_index (by service id): one __u64, `base | size << 32 | gen << 63`
 * (size 0: no table), so the program reads where the table is, how long it
 * is and which column is live in one load. User space writes the column not
 * in use through mmap and then stores the new descriptor: no syscall, no
 * map swap (whose RCU wait costs ~16 ms a call here), and no packet sees a
 * half-written table. A table that changes size gets a new run; the old one
 * is reused only after an RCU grace period (membarrier), when no program can
 * still be reading it. Tables are sized per service (dataplane/lb/maglev.h),
 * so memory follows the backends, not a fixed size per service. */
struct lb_maglev_slot {
	__u32 backend[2];
};

#define LB_MAGLEV_SIZE_MASK 0x7fffffffu

static inline __u64 lb_maglev_ref(__u32 base, __u32 size, __u32 gen)
{
	return (__u64)base | ((__u64)(size & LB_MAGLEV_SIZE_MASK) << 32) | ((__u64)(gen & 1) << 63);
}
static inline __u32 lb_maglev_ref_base(__u64 ref) { return (__u32)ref; }
static inline __u32 lb_maglev_ref_size(__u64 ref) { return (__u32)(ref >> 32) & LB_MAGLEV_SIZE_MASK; }
static inline __u32 lb_maglev_ref_gen(__u64 ref) { return (__u32)(ref >> 63); }

struct lb_counters {
	__u64 connections;
	__u64 packets;
	__u64 bytes;
};

struct lb_config {
	__u64 tcp_syn_timeout_ns;         /* SYN seen, no reply yet */
	__u64 tcp_established_timeout_ns; /* idle established TCP */
	__u64 tcp_closing_timeout_ns;     /* after RST or FIN both ways */
	__u64 udp_timeout_ns;
	__u32 maglev_size;                /* slots of the largest Maglev table */
	__u32 abi_version;                /* LB_ABI_VERSION of who wrote the maps */
	/* Changes whenever a frontend is added, moved or removed (user space
	 * writes it after the change). A conntrack entry stamped with the
	 * current epoch was checked against the frontends as they still are,
	 * so a packet of a tracked flow needs neither the lb_vips nor the
	 * lb_services lookup. Fields up to abi_version keep their place in
	 * every ABI version: the loader reads the pinned version first. */
	__u32 frontend_epoch;
	__u32 vip_filter_shift;           /* lb_vip_filter: 32 - log2(bits) */
};

/* Bumped whenever a key or value above changes meaning: pinned maps written
 * under another version are refused instead of misread, except those of
 * LB_ABI_VERSION_ADOPTABLE, which this version reads as they are.
 *
 * 6: one conntrack entry per flow (LB_CT_F_PAIRED, lb_rev_nat). Version 5
 * maps are adopted: keys and values kept their layout, lb_rev_nat is made
 * new, and a version 5 flow's two entries read as a paired flow whose
 * ORIGINAL entry lacks the flag (the collector pairs every REPLY entry with
 * its ORIGINAL one, so they still end together).
 * 7: lb_rev_nat_slots (a direct-mapped array in front of lb_rev_nat).
 * Version 6 maps are adopted: no key or value changed, and the new map is
 * made and filled from lb_rev_nat's state before any program is attached
 * (version 6 programs still running read lb_rev_nat, kept as before).
 * Version 5 maps are still adopted as version 6 adopted them.
 * 8: conntrack as a set-associative table in an ARRAY (lb_conntrack, new
 * value layout, and lb_ct_tags; conntrack.h) and LB_STAT_CT_EVICTED.
 * Pins of versions 5 to 7 are taken over with their flows: their
 * lb_conntrack and lb_stats are pinned aside (name + "_abi7") before load,
 * their flows copied into the table and their counts added, before any
 * program of this build is attached; then the set-aside pins go. */
#define LB_ABI_VERSION 8u
#define LB_ABI_VERSION_ADOPTABLE 7u
#define LB_ABI_VERSION_ADOPTABLE_OLDEST 5u

/* Global event counters, a PERCPU array indexed by these. */
enum lb_stat {
	LB_STAT_NEW_FLOW = 0,
	LB_STAT_CT_HIT,
	LB_STAT_REV_NAT,
	LB_STAT_ARP_REPLY,
	LB_STAT_ECHO_REPLY,
	LB_STAT_RST_NO_BACKEND,
	LB_STAT_RST_UNKNOWN_PORT,
	LB_STAT_RST_DEAD_BACKEND,
	LB_STAT_ICMP_UNREACH,
	LB_STAT_DROP_FRAGMENT,
	LB_STAT_DROP_IP_OPTIONS,
	LB_STAT_DROP_OTHER,
	LB_STAT_DROP_NO_BACKEND,
	/* A tracked flow's tuple was taken by a new connection: a SYN to the
	 * VIP with another sequence number; or a backend's packet for another
	 * connection on the tuple (a SYN-ACK answering another SYN than the
	 * flow's, an ACK from TIME_WAIT after the flow closed), which then
	 * passes untouched. */
	LB_STAT_FLOW_REOPENED,
	LB_STAT_FOREIGN_REPLY,
	/* A new flow's entry took the way of a live flow (its bucket full:
	 * the least recently seen of the bucket's flows loses its entry). */
	LB_STAT_CT_EVICTED,
	LB_STAT_MAX,
};

LB_ABI_ASSERT(sizeof(struct lb_service_key) == 8, "lb_service_key size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_service_key, port) == 4, "lb_service_key.port");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_service_key, proto) == 6, "lb_service_key.proto");
LB_ABI_ASSERT(sizeof(struct lb_service_value) == 8, "lb_service_value size");
LB_ABI_ASSERT(sizeof(struct lb_vip_value) == 8, "lb_vip_value size");
LB_ABI_ASSERT(sizeof(struct lb_backend) == 20, "lb_backend size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_backend, mac) == 4, "lb_backend.mac");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_backend, state) == 10, "lb_backend.state");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_backend, flags) == 11, "lb_backend.flags");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_backend, service_id) == 12, "lb_backend.service_id");
LB_ABI_ASSERT(sizeof(struct lb_rev_nat_value) == 8, "lb_rev_nat_value size");
LB_ABI_ASSERT(sizeof(struct lb_ct_key) == 16, "lb_ct_key size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_key, sport) == 8, "lb_ct_key.sport");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_key, proto) == 12, "lb_ct_key.proto");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_key, dir) == 13, "lb_ct_key.dir");
LB_ABI_ASSERT(sizeof(struct lb_ct_value) == 28, "lb_ct_value size");
LB_ABI_ASSERT(sizeof(struct lb_ct_entry) == 48, "lb_ct_entry size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_entry, check) == 16, "lb_ct_entry.check");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_entry, value) == 20, "lb_ct_entry.value");
LB_ABI_ASSERT(sizeof(struct lb_ct_bucket) == 48 * LB_CT_WAYS, "lb_ct_bucket size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_value, backend_id) == 4, "lb_ct_value.backend_id");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_value, frontend_epoch) == 16, "lb_ct_value.frontend_epoch");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_value, syn_seq) == 20, "lb_ct_value.syn_seq");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_value, flags) == 24, "lb_ct_value.flags");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_ct_value, syn_len) == 26, "lb_ct_value.syn_len");
LB_ABI_ASSERT(sizeof(struct lb_maglev_slot) == 8, "lb_maglev_slot size");
LB_ABI_ASSERT(sizeof(struct lb_counters) == 24, "lb_counters size");
LB_ABI_ASSERT(sizeof(struct lb_config) == 48, "lb_config size");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_config, abi_version) == 36, "lb_config.abi_version");
LB_ABI_ASSERT(LB_ABI_OFFSETOF(struct lb_config, maglev_size) == 32, "lb_config.maglev_size");

#endif
