// Every gossip message of weft's own, in one place: its type byte, its
// fields and their msgpack encoding (as memberlist's own messages).
//
// On the wire a message is one type byte, then its fields as one msgpack
// array in the order `fields` lists them (a table-entries message is the
// bare array of entries). SerfCompat carries these messages behind its own
// prefix (kWeftUserMessageType), so serf peers skip them; the type bytes
// here only tell weft's messages apart.
//
// Adding a message: a struct below with kType and fields(), and its name in
// WeftMessage. The compiler then points at every dispatch that must handle
// it (TableGossip::notify_msg visits every alternative). A new replicated
// table needs no message at all: its entries ride in TableEntries.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "control/gossip/msgpack_wire.h"
#include "control/tables/replicated_tables.h"

namespace weft::control::cluster {

enum class WeftMessageType : std::uint8_t {
  kTableEntries = 0x77,  // 'w'
  kRangeRequest = 0x78,
  kStateDigest = 0x79,
  kSync = 0x7A,
  kOwnerDigests = 0x7B,
  kLogRequest = 0x7C,
  kLogReply = 0x7D,
  kBucketDigests = 0x7E,
  kSyncAck = 0x7F,
};

// Table entries: a change gossiped or pushed, a repair sent to one node, the
// whole copy in a join's push/pull, and the saved snapshot files
// (tables.bin, ranges.bin).
struct TableEntries {
  static constexpr auto kType = WeftMessageType::kTableEntries;
  std::vector<tables::TableEntry> entries;
};

// A node asking the peer holding the most of an address space for a part.
struct RangeRequest {
  static constexpr auto kType = WeftMessageType::kRangeRequest;
  std::string space;
  std::uint32_t unit = 1;  // numbers per unit (a subnet of the pool: 256)
  std::uint64_t want = 0;  // units
  std::string from;        // the requester
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.space, m.unit, m.want, m.from); }
};

// A push/pull after the join: a digest of the sender's whole copy.
struct StateDigest {
  static constexpr auto kType = WeftMessageType::kStateDigest;
  std::string node;
  std::uint64_t digest = 0;
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.node, m.digest); }
};

// Anti-entropy, after a push/pull's digests differ (both directions over
// TCP, each message under a byte budget well below max_stream_size):
//   A -> B  OwnerDigests: A's digest per owner node;
//   B -> A  BucketDigests: for the owners whose digests differ, B's digest,
//           entry count and size per bucket (hash(table, key) mod kBuckets);
//   A -> B  Sync, one after another: A's entries of the differing
//           (owner, bucket) scopes, whole scopes per message, a scope too
//           big for one message in parts by key range;
//   B -> A  TableEntries: per Sync, what B holds newer in its scope, then
//           SyncAck; A sends its next Sync on the ack, so one Sync and its
//           repair are in flight per peer, and neither end queues a copy.
// Small clusters pay one more message than comparing owners only; a big
// owner that differs in a few entries sends a few buckets, not its all.

// Only on a mismatch: with 100 owners they are ~4 KB, and at rest every
// push/pull would carry them.
struct OwnerDigests {
  static constexpr auto kType = WeftMessageType::kOwnerDigests;
  std::string node;
  std::map<std::string, std::uint64_t> owners;
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.node, m.owners); }
};

struct BucketDigests {
  static constexpr auto kType = WeftMessageType::kBucketDigests;
  std::string node;
  // Every owner whose digest differed and fitted the budget (the rest wait
  // for the next push/pull); an owner B holds nothing of has no buckets.
  std::map<std::string, std::map<std::uint32_t, tables::ReplicatedTables::BucketDigest>> owners;
  // The newest time of A's entries B withdrew (A republishes them: B
  // refuses their old versions).
  std::uint64_t withdrawn_mark = 0;
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.node, m.owners, m.withdrawn_mark); }
};

// The sender's entries of the scopes (owners[i], buckets[i]) within the key
// range (after, upto], and the newest time of the receiver's entries the
// sender withdrew (so the receiver can tell it was taken for dead). The
// receiver sends back what it holds newer in exactly that scope and range.
// (A message of the previous format, without buckets, fails to decode.)
struct Sync {
  static constexpr auto kType = WeftMessageType::kSync;
  std::string node;
  std::uint64_t withdrawn_mark = 0;
  std::vector<std::string> owners;
  std::vector<std::uint32_t> buckets;
  std::vector<std::string> after;  // empty: from the first key; else [table, key], excluded
  std::vector<std::string> upto;   // empty: to the last key; else [table, key], included
  std::vector<tables::TableEntry> entries;
  template <class Self>
  static auto fields(Self& m) {
    return std::tie(m.node, m.withdrawn_mark, m.owners, m.buckets, m.after, m.upto, m.entries);
  }
};

// B has applied a Sync and sent its repair (the entries before this).
struct SyncAck {
  static constexpr auto kType = WeftMessageType::kSyncAck;
  std::string node;
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.node); }
};

// `weft service logs` on one node asking a peer for the tails of its task
// logs of a service (at most max_bytes per task); the answer goes back to
// `from` as a LogReply with the same id.
struct LogRequest {
  static constexpr auto kType = WeftMessageType::kLogRequest;
  std::uint64_t id = 0;
  std::string service_id;
  std::uint64_t max_bytes = 0;
  std::string from;
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.id, m.service_id, m.max_bytes, m.from); }
};

struct LogReply {
  static constexpr auto kType = WeftMessageType::kLogReply;
  std::uint64_t id = 0;
  std::string node;
  std::string text;  // lines prefixed "name.slot.id@node | "
  template <class Self>
  static auto fields(Self& m) { return std::tie(m.id, m.node, m.text); }
};

using WeftMessage =
    std::variant<TableEntries, RangeRequest, StateDigest, OwnerDigests, BucketDigests, Sync, SyncAck, LogRequest, LogReply>;

gossip::Bytes encode(const WeftMessage& message);
// A message sent straight to one node (memberlist's send_reliable or
// send_best_effort) bypasses SerfCompat's broadcast path, which adds the
// prefix that tells serf peers it is weft's: so this adds it.
gossip::Bytes encode_direct(const WeftMessage& message);
// Throws gossip::DecodeError on an unknown type byte or a body that is not
// exactly that message's fields. Bounded: no container may claim more
// elements than the input has bytes.
WeftMessage decode(gossip::ByteView bytes);

// An upper bound of what one entry adds to an encoded message (a sync is
// packed under a budget without encoding it twice).
std::size_t encoded_size_bound(const tables::TableEntry& entry);
// The same for an entry as the tables hold it (its value not decoded).
std::size_t encoded_size_bound(const tables::EntryView& entry);
// Same for a string in a message.
inline std::size_t encoded_size_bound(const std::string& s) { return s.size() + 5; }

// A table snapshot (a saved file): a TableEntries message.
std::string encode_snapshot(const std::vector<tables::TableEntry>& entries);
// The same bytes as encode_snapshot(tables.snapshot()), without the copy of
// every entry decoded at once (~70 MB at 110 000 entries): each is decoded
// as it is packed.
std::string encode_snapshot(const tables::ReplicatedTables& tables);
// The same bytes handed to `write` in pieces of ~1 MB as they are encoded
// (tables.bin is written without holding it whole).
void encode_snapshot(const tables::ReplicatedTables& tables, const std::function<void(std::string_view)>& write);
std::vector<tables::TableEntry> decode_snapshot(std::string_view bytes);

}  // namespace weft::control::cluster
