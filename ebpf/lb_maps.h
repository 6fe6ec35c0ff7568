/* Map definitions. Sizes here are placeholders: the loader sets every
 * max_entries from its arguments before load. All maps are pinned by name
 * under the loader's pin dir, so a restarted agent reuses them (conntrack
 * included). */
#ifndef WEFT_EBPF_LB_MAPS_H
#define WEFT_EBPF_LB_MAPS_H

#include "lb_abi.h"

/* VIP addresses: whether a packet is for a VIP (after lb_vip_filter). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct lb_vip_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_vips SEC(".maps");

/* The VIP pre-filter (see lb_abi.h): 64 bits an element. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_vip_filter SEC(".maps");

static __always_inline int lb_maybe_vip(__u32 addr, const struct lb_config *cfg)
{
	__u32 bit = lb_vip_filter_bit(addr, cfg->vip_filter_shift);
	__u32 word = bit >> 6;
	__u64 *bits = bpf_map_lookup_elem(&lb_vip_filter, &word);

	return bits && (*bits & (1ull << (bit & 63)));
}

/* Frontends (VIP, port, proto) -> service id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

/* The Maglev table pool and where each service's table lies in it (see
 * lb_abi.h). Both are written by user space through mmap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct lb_maglev_slot);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_maglev_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backend_counters SEC(".maps");

/* Backend IP -> the VIP its replies come from (lb_abi.h, conntrack.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lb_rev_nat_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_nat SEC(".maps");

/* lb_rev_nat's direct-mapped front (lb_abi.h): one __u64 a slot, written
 * by user space through mmap. Its size is a power of two, and the shift
 * that indexes it a constant of the program's load (user space sets both
 * from Limits::max_backends). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_nat_slots SEC(".maps");

const volatile __u32 lb_rev_nat_slot_shift = 19; /* 32 - log2(slots), set before load */

/* Conntrack (conntrack.h): buckets of LB_CT_WAYS entries in an mmapable
 * ARRAY (the user-space collector walks it through mmap). The loader sets
 * the bucket count, here and in lb_ct_buckets, from
 * Limits::conntrack_entries. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct lb_ct_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_conntrack SEC(".maps");

/* A byte per way of lb_conntrack, a __u32 per bucket: 0 for a free way,
 * else the tag of the key it holds (conntrack.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct_tags SEC(".maps");

const volatile __u32 lb_ct_buckets = 16384; /* lb_conntrack's size, set before load */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_stats SEC(".maps");

static __always_inline void lb_stat_inc(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&lb_stats, &stat);
	if (value)
		*value += 1;
}

#endif
