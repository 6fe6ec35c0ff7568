/* Connection tracking for balanced flows, in the table lb_conntrack. A
 * flow has one entry, ORIGINAL (client -> VIP:port, as the client sends it;
 * it gives the backend), that both directions read and stamp. A reply
 * (backend:port -> client) finds it without an entry of its own, as
 * Cilium's rev-NAT index does: lb_rev_nat, kept by user space, gives the
 * VIP of the reply's source (read through its direct-mapped front,
 * lb_rev_nat_slots, see lb_abi.h) (a backend IP), and with ports unchanged by the
 * NAT the reply's tuple mapped back is the ORIGINAL key. The entry is then
 * checked to be balanced to that very backend (nat_addr), so a client's
 * direct connection to a backend's own address is never reverse-NATed.
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
 * The table (map ABI 8; before it an LRU hash, whose insert, with its LRU
 * lists, bucket lock and node, cost ~300 ns of a new flow's ~400): a
 * set-associative table in a BPF ARRAY, the fixed-size connection table of
 * Google's Maglev. An element is a bucket of LB_CT_WAYS entries (48 bytes
 * each); a key's bucket is lb_ct_hash() of it, mapped onto the bucket count
 * (lb_ct_buckets). Array lookups are inlined by the verifier, so a lookup
 * is a few loads and compares, and an insert a store into a way:
 *  - lb_ct_tags holds a byte per way, 0 for a free way, else the low byte
 *    of the hash of the key it holds. A lookup reads the bucket's tag word
 *    and only the ways whose tag matches, so a new flow's lookup (a key
 *    not there) reads none of the bucket's cache lines, and its insert
 *    takes a free way by its tag and writes it without reading it;
 *  - an insert takes the way holding the key already, else a free way,
 *    else an expired one, else the bucket's least recently seen flow
 *    (LRU within the bucket, counted in LB_STAT_CT_EVICTED). User space
 *    gives the table twice as many ways as the conntrack limit has flows,
 *    so at the limit a bucket holds two flows on average and a full
 *    bucket is rare; when one is full, its stalest flow loses its entry
 *    and its next packet is a new flow (to the same backend while the
 *    service's Maglev table is unchanged: a TCP flow then goes on).
 *
 * Concurrency: no lock; the programs are built for BPF ISA v3 (-mcpu=v3)
 * and take and free ways with atomic compare-and-swap:
 *  - a free way is taken by a compare-and-swap of its bucket's tag word
 *    that sets the way's tag (lb_ct_claim), before the way is written: of
 *    CPUs taking free ways of one bucket at once each gets another way
 *    (so two packets of one new flow on two CPUs at once may give its key
 *    two ways, before either's check is seen: lookups and a delete take
 *    the first, and the other, no longer stamped, serves after it until
 *    its own timeout);
 *  - an entry is ended by a compare-and-swap of its check to 0 (the
 *    programs': lb_ct_clear; the collector's, ConntrackTable::
 *    end_if_unchanged, swaps check and `seen` as one aligned 64-bit word),
 *    so an entry another CPU wrote since it was read stays; the side whose
 *    swap won frees the tag, by a compare-and-swap that clears it only
 *    while it is still the ended key's.
 * Ways are still written by two CPUs at once in the other cases: a key's
 * own way rewritten in place (two packets of the flow; or, if another CPU
 * ended, freed and claimed the way between the lookup and the rewrite,
 * the rewrite's tag store replaces the claimer's, whose flow then misses
 * on its next packet), and a full bucket's victim, taken without a claim
 * (its tag is stored after its check), which another CPU may take too, or
 * take between a clear's two swaps (a tag then lost when the victim's tag
 * is the ended key's: 1 in 255). A full bucket's ways whose check is 0 are
 * taken first, and those are mostly ways another CPU has claimed and not
 * yet written (or whose tag stayed after LB_CT_TAG_TRIES lost swaps): two
 * new flows then share a way, and one or both miss on their next packet.
 * Each of these needs a full bucket or two CPUs on one way within
 * nanoseconds; what they cost is a flow re-picked by Maglev, never a flow
 * sent to a backend it was not checked for. Every way carries a check,
 * lb_ct_check() of the key's hash and the flow's identity (backend_id,
 * nat_addr, service_id), written after the fields. A reader accepts a
 * way only when its key is the key looked up and its check matches its
 * fields: a way half written, or written by two
 * CPUs at once (fields of both), fails the check (but for a 2^-32 chance)
 * and reads as a miss: the packet takes the new-flow path, and Maglev
 * picks the same backend while the table is unchanged. A torn way is never
 * taken for a flow to the wrong backend. A reader decides from a checked
 * copy of the way's value (lb_ct_lookup), never from the way itself, so a
 * way that another CPU rewrites between the check and a decision cannot
 * send the packet elsewhere or RST it. Fields outside the identity (flags,
 * seen, frontend epoch) are written into the way after the lookup and may
 * land on a way another CPU took meanwhile, or mix in a race: they decide
 * timeouts (and whether the frontend is looked up again) only.
 *
 * Entries end by TCP state or idle time; the timeouts come from lb_config
 * (user space) and the same rules are applied by the user-space garbage
 * collector, which walks the table through mmap (no syscall per entry) and
 * ends an entry with a compare-and-clear of its check and `seen` together
 * (one aligned 64-bit word), so an entry a CPU rewrote or a packet stamped
 * since the collector read it stays. There is no fixed cut of idle
 * connections: an established TCP flow lives as long as its configured
 * idle timeout (6 h by default). */
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

/* `now` (bpf_ktime_get_coarse_ns) in the units of lb_ct_value.seen. */
static __always_inline __u32 lb_ct_clock(__u64 now)
{
	return (__u32)(now >> LB_CT_SEEN_SHIFT);
}

static __always_inline int lb_ct_expired_at(const struct lb_config *cfg, __u8 proto, __u8 flags,
					    __u32 seen, __u32 now)
{
	return (__u64)(__u32)(now - seen) >= (lb_ct_timeout(cfg, proto, flags) >> LB_CT_SEEN_SHIFT);
}

static __always_inline int lb_ct_expired(const struct lb_config *cfg, __u8 proto,
					 const struct lb_ct_value *ct, __u64 now)
{
	return lb_ct_expired_at(cfg, proto, ct->flags, ct->seen, lb_ct_clock(now));
}

/* The table (see the top of this file). */
static __always_inline __u32 lb_ct_key_hash(const struct lb_ct_key *key)
{
	const __u32 *word = (const __u32 *)key;

	return lb_ct_hash(word[0], word[1], word[2], word[3]);
}

/* A key's two buckets (LB_CT_CHOICES) and their tags (lb_ct_tags: a byte
 * per way, 0 for a free way, else lb_ct_tag() of the key the way holds).
 * Way i (0 .. LB_CT_CHOICES * LB_CT_WAYS - 1) is way i % LB_CT_WAYS of
 * bucket i / LB_CT_WAYS. */
struct lb_ct_place {
	struct lb_ct_bucket *bucket[LB_CT_CHOICES];
	__u8 *tags[LB_CT_CHOICES];
};

#define LB_CT_PLACE_WAYS (LB_CT_CHOICES * LB_CT_WAYS)

static __always_inline int lb_ct_place_of(__u32 hash, struct lb_ct_place *place)
{
	__u32 first = lb_ct_bucket_index(hash, lb_ct_buckets);
	__u32 second = lb_ct_bucket_index(lb_ct_hash2(hash), lb_ct_buckets);

	place->bucket[0] = bpf_map_lookup_elem(&lb_conntrack, &first);
	place->tags[0] = bpf_map_lookup_elem(&lb_ct_tags, &first);
	place->bucket[1] = bpf_map_lookup_elem(&lb_conntrack, &second);
	place->tags[1] = bpf_map_lookup_elem(&lb_ct_tags, &second);
	return place->bucket[0] && place->tags[0] && place->bucket[1] && place->tags[1] ? 0 : -1;
}

static __always_inline struct lb_ct_entry *lb_ct_way(const struct lb_ct_place *place, int i)
{
	if (i >= 0 && i < LB_CT_WAYS)
		return &place->bucket[0]->way[i];
	if (i >= LB_CT_WAYS && i < LB_CT_PLACE_WAYS)
		return &place->bucket[1]->way[i - LB_CT_WAYS];
	return 0;
}

static __always_inline __u8 *lb_ct_tag_of(const struct lb_ct_place *place, int i)
{
	if (i >= 0 && i < LB_CT_WAYS)
		return &place->tags[0][i];
	if (i >= LB_CT_WAYS && i < LB_CT_PLACE_WAYS)
		return &place->tags[1][i - LB_CT_WAYS];
	return 0;
}

static __always_inline int lb_ct_key_equal(const struct lb_ct_key *entry, const struct lb_ct_key *key)
{
	const __u32 *a = (const __u32 *)entry, *b = (const __u32 *)key;

	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Reads a way: copies its value into `snap` and checks the copy against
 * the way's check (written last by a writer): only a copy whose identity
 * (backend_id, nat_addr, service_id) and the key's hash give the check
 * counts. A way half written, or written by two CPUs at once, fails (and
 * reads as a miss); and since the caller decides from the copy alone, a
 * writer taking the way after this read cannot change what the packet
 * does (its backend, its VIP, whether it gets a RST). */
static __always_inline int lb_ct_entry_read(struct lb_ct_entry *entry, __u32 hash,
					    struct lb_ct_value *snap)
{
	__u32 check = *(volatile __u32 *)&entry->check;

	if (check == 0)
		return 0;
	barrier();
	__builtin_memcpy(snap, &entry->value, sizeof(*snap));
	return check == lb_ct_check(hash, snap->backend_id, snap->nat_addr, snap->service_id);
}

/* The way of the live entry of `key` in `place`, or -1, and the checked
 * copy of its value in `snap`. Only ways whose tag matches are read: a key
 * not in the table (a new flow) costs two tag words, not the buckets'
 * cache lines. */
static __always_inline int lb_ct_find_in(const struct lb_ct_key *key, __u32 hash,
					 const struct lb_ct_place *place, struct lb_ct_value *snap)
{
	__u64 tags = *(volatile __u32 *)place->tags[0] |
		     ((__u64)*(volatile __u32 *)place->tags[1] << 32);
	__u8 tag = lb_ct_tag(hash);
	int i;

#pragma unroll
	for (i = 0; i < LB_CT_PLACE_WAYS; i++) {
		struct lb_ct_entry *entry =
			i < LB_CT_WAYS ? &place->bucket[0]->way[i] : &place->bucket[1]->way[i - LB_CT_WAYS];

		if ((__u8)(tags >> (8 * i)) == tag && lb_ct_key_equal(&entry->key, key) &&
		    lb_ct_entry_read(entry, hash, snap))
			return i;
	}
	return -1;
}

/* The entry of `key`, or 0. `snap` gets the checked copy of its value:
 * every decision reads the copy; the entry itself is only written (its
 * `seen`, flags and frontend epoch: fields outside the check, that decide
 * timeouts; a way another CPU took meanwhile may get them, see the top of
 * this file). */
static __always_inline struct lb_ct_value *lb_ct_lookup(const struct lb_ct_key *key,
							 struct lb_ct_value *snap)
{
	__u32 hash = lb_ct_key_hash(key);
	struct lb_ct_place place;
	struct lb_ct_entry *entry;

	if (lb_ct_place_of(hash, &place))
		return 0;
	entry = lb_ct_way(&place, lb_ct_find_in(key, hash, &place, snap));
	return entry ? &entry->value : 0;
}

/* The tag word (lb_ct_tags) of way `i`'s bucket. */
static __always_inline __u32 *lb_ct_tags_word(const struct lb_ct_place *place, int i)
{
	if (i >= 0 && i < LB_CT_WAYS)
		return (__u32 *)place->tags[0];
	if (i >= LB_CT_WAYS && i < LB_CT_PLACE_WAYS)
		return (__u32 *)place->tags[1];
	return 0;
}

/* Compare-and-swap attempts on a bucket's tag word before giving up: each
 * failure is another CPU changing another way's tag of the same bucket in
 * the same few nanoseconds. */
#define LB_CT_TAG_TRIES 3

/* Frees way `w` of the bucket whose tag word is `word`, if its tag is
 * still `tag`: a CPU that took the way meanwhile (a full bucket's victim:
 * it writes its tag after its check) keeps its tag. After LB_CT_TAG_TRIES
 * lost swaps the tag stays on a way whose check is 0: it reads as a miss,
 * and is taken first when its bucket is full. */
static __always_inline void lb_ct_release_tag(__u32 *word, int w, __u8 tag)
{
	__u32 old, shift = 8 * (__u32)w;
	int attempt;

#pragma unroll
	for (attempt = 0; attempt < LB_CT_TAG_TRIES; attempt++) {
		old = *(volatile __u32 *)word;
		if ((__u8)(old >> shift) != tag)
			return;
		if (__sync_val_compare_and_swap(word, old, old & ~((__u32)0xff << shift)) == old)
			return;
	}
}

/* Ends the entry in way `i`, whose checked copy gave `check` (the key's
 * tag is `tag`): an atomic compare-and-swap of the way's check from
 * `check` to 0, so a way another CPU took since (its check differs) stays
 * its, and of two CPUs ending the same entry one frees the way. The
 * collector's compare-and-clear (ConntrackTable::end_if_unchanged) swaps
 * check and `seen` together, so that a packet's stamp since its read
 * keeps the entry; a program ends a flow however recent its stamp, so it
 * swaps the check alone. Either way, only the side whose swap won frees
 * the way's tag. */
static __always_inline void lb_ct_clear(const struct lb_ct_place *place, int i, __u32 check,
					__u8 tag)
{
	struct lb_ct_entry *entry = lb_ct_way(place, i);
	__u32 *word = lb_ct_tags_word(place, i);

	if (!entry || !word)
		return;
	if (__sync_val_compare_and_swap(&entry->check, check, 0) != check)
		return;
	lb_ct_release_tag(word, i % LB_CT_WAYS, tag);
}

static __always_inline void lb_ct_delete(const struct lb_ct_key *key)
{
	__u32 hash = lb_ct_key_hash(key);
	struct lb_ct_place place;
	struct lb_ct_value snap;
	int i;

	if (lb_ct_place_of(hash, &place))
		return;
	i = lb_ct_find_in(key, hash, &place, &snap);
	if (i < 0)
		return;
	lb_ct_clear(&place, i, lb_ct_check(hash, snap.backend_id, snap.nat_addr, snap.service_id),
		    lb_ct_tag(hash));
}

/* Writes a way, its check last, then (unless the way was claimed by its
 * tag, lb_ct_claim) its tag: until the check (and if another CPU writes
 * the same way at once) the fields and the check disagree, and the way
 * reads as a miss. x86 keeps stores in order; barrier() keeps the compiler
 * from moving the check's store up. */
static __always_inline void lb_ct_write(const struct lb_ct_place *place, int i, __u32 hash,
					const struct lb_ct_key *key, const struct lb_ct_value *value,
					int claimed)
{
	struct lb_ct_entry *entry = lb_ct_way(place, i);
	__u8 *tag = lb_ct_tag_of(place, i);

	if (!entry || !tag)
		return;
	entry->key = *key;
	entry->value = *value;
	barrier();
	*(volatile __u32 *)&entry->check =
		lb_ct_check(hash, value->backend_id, value->nat_addr, value->service_id);
	if (!claimed)
		*(volatile __u8 *)tag = lb_ct_tag(hash);
}

static __always_inline int lb_ct_free_ways(__u32 tags)
{
	return ((tags & 0xff) == 0) + ((tags & 0xff00) == 0) + ((tags & 0xff0000) == 0) +
	       ((tags & 0xff000000) == 0);
}

/* Takes a free way of bucket `b` (0 or 1) of `place`, whose tag word was
 * read as `tags`, by a compare-and-swap of the tag word that sets the
 * way's tag: of CPUs taking free ways of one bucket at once each gets
 * another way (a lost swap looks again). The way's index in `place`, or -1
 * when the bucket has no free way (or after LB_CT_TAG_TRIES lost swaps).
 * The tag is set before the way is written: a lookup meanwhile finds the
 * way's check 0 (a free way's) or one of fields being written, a miss. */
static __always_inline int lb_ct_claim(const struct lb_ct_place *place, int b, __u32 tags, __u8 tag)
{
	__u32 *word = (__u32 *)place->tags[b ? 1 : 0], seen;
	int attempt, i, w;

#pragma unroll
	for (attempt = 0; attempt < LB_CT_TAG_TRIES; attempt++) {
		w = -1;
#pragma unroll
		for (i = 0; i < LB_CT_WAYS; i++) {
			if ((__u8)(tags >> (8 * i)) == 0) {
				w = i;
				break;
			}
		}
		if (w < 0)
			return -1;
		seen = __sync_val_compare_and_swap(word, tags, tags | ((__u32)tag << (8 * w)));
		if (seen == tags)
			return (b ? LB_CT_WAYS : 0) + w;
		tags = seen;
	}
	return -1;
}

/* Writes the entry of `key` into a way of its buckets: the way that holds
 * the key already, else a free way (claimed by its tag, without reading
 * the way: a new flow's store to a cold line does not wait for it) of the
 * bucket with more free ways (two choices keep buckets even: few ever
 * fill), else the first expired one, else the least recently seen live
 * flow of the two buckets (counted as an eviction). 0 or -1. */
static __always_inline int lb_ct_insert(const struct lb_config *cfg, const struct lb_ct_key *key,
					const struct lb_ct_value *value)
{
	__u32 hash = lb_ct_key_hash(key);
	struct lb_ct_place place;
	struct lb_ct_value snap;
	__u32 tags0, tags1, oldest_age = 0;
	int i, victim, oldest = -1, claimed = 0;

	if (lb_ct_place_of(hash, &place))
		return -1;
	victim = lb_ct_find_in(key, hash, &place, &snap);
	if (victim < 0) {
		tags0 = *(volatile __u32 *)place.tags[0];
		tags1 = *(volatile __u32 *)place.tags[1];
		if (lb_ct_free_ways(tags1) > lb_ct_free_ways(tags0))
			victim = lb_ct_claim(&place, 1, tags1, lb_ct_tag(hash));
		else
			victim = lb_ct_claim(&place, 0, tags0, lb_ct_tag(hash));
		claimed = victim >= 0;
	}
	/* Both buckets full (or the claim lost LB_CT_TAG_TRIES times): the
	 * victim is chosen from the ways' fields read unchecked, and taken
	 * without a claim. A race only picks another victim than the
	 * stalest, or two CPUs the same victim; what is written is checked
	 * as ever. */
	if (victim < 0) {
#pragma unroll
		for (i = 0; i < LB_CT_PLACE_WAYS; i++) {
			struct lb_ct_entry *entry = i < LB_CT_WAYS ? &place.bucket[0]->way[i]
								   : &place.bucket[1]->way[i - LB_CT_WAYS];
			__u32 age = value->seen - entry->value.seen;

			if (entry->check == 0 ||
			    lb_ct_expired_at(cfg, entry->key.proto, entry->value.flags,
					     entry->value.seen, value->seen)) {
				victim = i;
				break;
			}
			if (oldest < 0 || (__s32)age > (__s32)oldest_age) {
				oldest = i;
				oldest_age = age;
			}
		}
		if (victim < 0) {
			victim = oldest;
			lb_stat_inc(LB_STAT_CT_EVICTED);
		}
	}
	lb_ct_write(&place, victim, hash, key, value, claimed);
	return 0;
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
	struct lb_ct_value *other, snap;

	if (!lb_ct_has_partner(key, entry_flags))
		return;
	lb_ct_partner_key(key, nat_addr, entry_flags, &partner);
	other = lb_ct_lookup(&partner, &snap);
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
 * answers, or 0; its checked copy in `snap`. */
static __always_inline struct lb_ct_value *lb_ct_original_of_reply(const struct iphdr *ip,
								   const struct udphdr *l4,
								   __u32 vip,
								   struct lb_ct_key *key,
								   struct lb_ct_value *snap)
{
	struct lb_ct_value *ct;

	key->proto = ip->protocol;
	key->saddr = ip->daddr;
	key->daddr = vip;
	key->sport = l4->dest;
	key->dport = l4->source;
	key->dir = LB_CT_DIR_ORIGINAL;
	ct = lb_ct_lookup(key, snap);
	/* Balanced to this backend, or a connection of the client's own to
	 * the backend's address (or to another backend) on the same ports. */
	if (!ct || snap->nat_addr != ip->saddr)
		return 0;
	return ct;
}

/* The entry of the flow a packet from a backend (`ip`, `l4`) towards the
 * endpoint answers, its key in `key` and its checked copy in `snap`; 0
 * when it answers none (not from a backend, or a connection not balanced
 * to it). `*vip` is the address to give the reply as source. lb_rev_nat_slots answers for most addresses in
 * one array read: a backend IP behind one VIP, or an address of no backend;
 * lb_rev_nat only for the rest (lb_abi.h). */
static __always_inline struct lb_ct_value *lb_ct_reply_lookup(const struct iphdr *ip,
							      const struct udphdr *l4,
							      struct lb_ct_key *key, __u32 *vip,
							      struct lb_ct_value *snap)
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
		return lb_ct_original_of_reply(ip, l4, *vip, key, snap);
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
		ct = lb_ct_lookup(key, snap);
		if (ct) {
			*vip = snap->nat_addr;
			return ct;
		}
	}
	*vip = rev->vip;
	return lb_ct_original_of_reply(ip, l4, *vip, key, snap);
}

/* The fields the entries of a flow start with. */
static __always_inline void lb_ct_fill(struct lb_ct_value *value, __u32 backend_id,
				       __u32 nat_addr, __u32 service_id, __u32 frontend_epoch,
				       __u8 flags, __u64 now, const struct lb_flow *flow)
{
	value->seen = lb_ct_clock(now);
	value->backend_id = backend_id;
	value->nat_addr = nat_addr;
	value->service_id = service_id;
	value->frontend_epoch = frontend_epoch;
	value->flags = flags;
	value->pad = 0;
	if (flags & LB_CT_F_SYN_ORIG) {
		value->syn_seq = flow->tcp_seq;
		value->syn_len = flow->payload_len > 0xffff ? 0xffff : flow->payload_len;
	} else {
		value->syn_seq = 0;
		value->syn_len = 0;
	}
}

/* Records a new flow: its ORIGINAL entry, and its REPLY entry when
 * `flags` has LB_CT_F_PAIRED. A way that holds either key already (the
 * entry of an old flow on the tuple) is rewritten in place. 0 or -1. */
static __always_inline int lb_ct_create(const struct lb_config *cfg, const struct lb_ct_key *key,
					__u32 backend_id, __u32 backend_ip, __u32 service_id,
					__u32 frontend_epoch, __u8 flags, __u64 now,
					const struct lb_flow *flow)
{
	struct lb_ct_value value;
	struct lb_ct_key reply = {};

	lb_ct_fill(&value, backend_id, backend_ip, service_id, frontend_epoch, flags, now, flow);
	if (lb_ct_insert(cfg, key, &value))
		return -1;
	if (!(flags & LB_CT_F_PAIRED))
		return 0;
	lb_ct_partner_key(key, backend_ip, flags, &reply);
	value.nat_addr = key->daddr;
	return lb_ct_insert(cfg, &reply, &value);
}

/* A new flow on the tuple of an old one with the same backend: `old` (its
 * ORIGINAL entry) is rewritten where it is. A paired flow's REPLY entry is
 * written (in place when it is there), an unpaired one's ended. */
static __always_inline int lb_ct_renew(const struct lb_config *cfg, const struct lb_ct_key *key,
				       __u8 old_flags, __u32 backend_id,
				       __u32 backend_ip, __u32 service_id, __u32 frontend_epoch,
				       __u8 flags, __u64 now, const struct lb_flow *flow)
{
	struct lb_ct_value value;
	struct lb_ct_key reply = {};

	lb_ct_fill(&value, backend_id, backend_ip, service_id, frontend_epoch, flags, now, flow);
	lb_ct_insert(cfg, key, &value); /* finds `old`, the way of this key */
	lb_ct_partner_key(key, backend_ip, flags, &reply);
	if (!(flags & LB_CT_F_PAIRED)) {
		if (old_flags & LB_CT_F_PAIRED)
			lb_ct_delete(&reply);
		return 0;
	}
	value.nat_addr = key->daddr;
	return lb_ct_insert(cfg, &reply, &value);
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
	lb_ct_delete(&partner);
}

static __always_inline void lb_ct_delete_flow(const struct lb_ct_key *key, __u32 nat_addr,
					      __u8 entry_flags)
{
	lb_ct_delete_partner(key, nat_addr, entry_flags);
	lb_ct_delete(key);
}

/* Ends, from a reply, the flow whose entry the reply found: `key` is its
 * REPLY entry, or its ORIGINAL entry (found through lb_rev_nat, and known to
 * be balanced to the reply's source); `ct` the entry's checked copy. From a
 * REPLY entry, the ORIGINAL one goes too unless a newer flow on another
 * backend has taken it over. */
static __always_inline void lb_ct_end_from_reply(const struct lb_ct_key *key,
						 const struct lb_ct_value *ct)
{
	struct lb_ct_key original = {};
	struct lb_ct_value *other, snap;

	if (key->dir == LB_CT_DIR_ORIGINAL) {
		lb_ct_delete_flow(key, ct->nat_addr, ct->flags);
		return;
	}
	lb_ct_partner_key(key, ct->nat_addr, ct->flags, &original);
	other = lb_ct_lookup(&original, &snap);
	if (other && snap.nat_addr == key->saddr)
		lb_ct_delete(&original);
	lb_ct_delete(key);
}

#endif
