// The registry of weft's own gossip messages: every message round-trips,
// type bytes are the documented ones, and anything else is refused.
#include "control/cluster/weft_messages.h"

#include <gtest/gtest.h>

#include "control/gossip/serf_compat.h"

namespace weft::control::cluster {
namespace {

using gossip::Bytes;
using gossip::DecodeError;
using tables::TableEntry;

const std::vector<TableEntry> kEntries{{"networks", "n1", "node1", 42, false, R"({"a":1})"},
                                       {"endpoints", "e", "node2", 7, true, std::string("\0bin", 4)}};

template <class T>
T round_trip(const T& message) {
  const auto bytes = encode(message);
  EXPECT_EQ(bytes.at(0), static_cast<std::uint8_t>(T::kType));
  auto decoded = decode(bytes);
  EXPECT_TRUE(std::holds_alternative<T>(decoded));
  return std::get<T>(decoded);
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(WeftMessagesTest, TypeBytesAreTheDocumentedOnes) {
  EXPECT_EQ(static_cast<int>(TableEntries::kType), 0x77);
  EXPECT_EQ(static_cast<int>(RangeRequest::kType), 0x78);
  EXPECT_EQ(static_cast<int>(StateDigest::kType), 0x79);
  EXPECT_EQ(static_cast<int>(Sync::kType), 0x7A);
  EXPECT_EQ(static_cast<int>(OwnerDigests::kType), 0x7B);
  EXPECT_EQ(static_cast<int>(LogRequest::kType), 0x7C);
  EXPECT_EQ(static_cast<int>(LogReply::kType), 0x7D);
  EXPECT_EQ(static_cast<int>(BucketDigests::kType), 0x7E);
  EXPECT_EQ(static_cast<int>(SyncAck::kType), 0x7F);
}

TEST(WeftMessagesTest, EveryMessageRoundTrips) {
  EXPECT_EQ(round_trip(TableEntries{kEntries}).entries, kEntries);

  const auto request = round_trip(RangeRequest{.space = "pool", .unit = 256, .want = 16, .from = "node2"});
  EXPECT_EQ(request.space, "pool");
  EXPECT_EQ(request.unit, 256u);
  EXPECT_EQ(request.want, 16u);
  EXPECT_EQ(request.from, "node2");

  const auto digest = round_trip(StateDigest{.node = "node1", .digest = 0xfedcba9876543210ull});
  EXPECT_EQ(digest.node, "node1");
  EXPECT_EQ(digest.digest, 0xfedcba9876543210ull);

  const std::map<std::string, std::uint64_t> owners{{"node1", 1}, {"node2", ~0ull}};
  const auto digests = round_trip(OwnerDigests{.node = "node3", .owners = owners});
  EXPECT_EQ(digests.node, "node3");
  EXPECT_EQ(digests.owners, owners);

  using BucketDigest = weft::control::tables::ReplicatedTables::BucketDigest;
  const std::map<std::string, std::map<std::uint32_t, BucketDigest>> buckets{
      {"node1", {{0, {.digest = 5, .entries = 2, .bytes = 300}}, {255, {.digest = ~0ull, .entries = 1, .bytes = 9}}}},
      {"node2", {}}};
  const auto bucket_digests = round_trip(BucketDigests{.node = "node3", .owners = buckets, .withdrawn_mark = 4});
  EXPECT_EQ(bucket_digests.node, "node3");
  EXPECT_EQ(bucket_digests.owners, buckets);
  EXPECT_EQ(bucket_digests.withdrawn_mark, 4u);

  EXPECT_EQ(round_trip(SyncAck{.node = "node2"}).node, "node2");

  const auto sync = round_trip(Sync{.node = "node1", .withdrawn_mark = 9, .owners = {"a", "b"}, .buckets = {3, 250},
                                    .after = {"endpoints", "k1"}, .upto = {}, .entries = kEntries});
  EXPECT_EQ(sync.node, "node1");
  EXPECT_EQ(sync.owners, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(sync.buckets, (std::vector<std::uint32_t>{3, 250}));
  EXPECT_EQ(sync.after, (std::vector<std::string>{"endpoints", "k1"}));
  EXPECT_TRUE(sync.upto.empty());
  EXPECT_EQ(sync.withdrawn_mark, 9u);
  EXPECT_EQ(sync.entries, kEntries);

  const std::string service(64, 'a');
  const auto logs = round_trip(LogRequest{.id = 7, .service_id = service, .max_bytes = 1024, .from = "node2"});
  EXPECT_EQ(logs.id, 7u);
  EXPECT_EQ(logs.service_id, service);
  EXPECT_EQ(logs.max_bytes, 1024u);
  EXPECT_EQ(logs.from, "node2");

  const auto reply = round_trip(LogReply{.id = 7, .node = "node3", .text = "redis.1.aaaa@node3 | hi\n"});
  EXPECT_EQ(reply.id, 7u);
  EXPECT_EQ(reply.node, "node3");
  EXPECT_EQ(reply.text, "redis.1.aaaa@node3 | hi\n");
}

TEST(WeftMessagesTest, DirectMessagesCarrySerfCompatsPrefix) {
  const auto direct = encode_direct(StateDigest{.node = "n", .digest = 1});
  const auto plain = encode(StateDigest{.node = "n", .digest = 1});
  ASSERT_EQ(direct.size(), plain.size() + 1);
  EXPECT_EQ(direct[0], gossip::kWeftUserMessageType);
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), direct.begin() + 1));
}

TEST(WeftMessagesTest, SnapshotIsATableEntriesMessage) {
  // The saved files' format (tests/integration/crash_ownership.sh reads it):
  // 0x77, then the bare msgpack array of six-field entries.
  const auto snapshot = encode_snapshot(kEntries);
  const auto message = encode(TableEntries{kEntries});
  EXPECT_EQ(snapshot, std::string(message.begin(), message.end()));
  EXPECT_EQ(static_cast<std::uint8_t>(snapshot[0]), 0x77);
  EXPECT_EQ(static_cast<std::uint8_t>(snapshot[1]), 0x92);  // fixarray of 2
  EXPECT_EQ(static_cast<std::uint8_t>(snapshot[2]), 0x96);  // fixarray of 6
  EXPECT_EQ(decode_snapshot(snapshot), kEntries);
  const auto digest = encode(StateDigest{.node = "n", .digest = 1});
  EXPECT_THROW(decode_snapshot(std::string(digest.begin(), digest.end())), DecodeError);
}

TEST(WeftMessagesTest, RejectsGarbage) {
  const auto bytes = encode(TableEntries{kEntries});
  EXPECT_THROW(decode(Bytes{}), DecodeError);
  EXPECT_THROW(decode(bytes_of("\x01garbage")), DecodeError);                       // unknown type
  EXPECT_THROW(decode(Bytes{0x77}), DecodeError);                                    // no body
  EXPECT_THROW(decode(gossip::ByteView(bytes).first(bytes.size() - 3)), DecodeError);  // truncated
  auto wrong_shape = bytes;
  wrong_shape[1] = 0xc0;  // nil instead of an array
  EXPECT_THROW(decode(wrong_shape), DecodeError);
  auto trailing = bytes;
  trailing.push_back(0x01);
  EXPECT_THROW(decode(trailing), DecodeError);
}

TEST(WeftMessagesTest, RejectsBodiesOfTheWrongArity) {
  // An entry of five fields, not six: msgpack-cxx alone would leave the
  // sixth at its default.
  EXPECT_THROW(decode(Bytes{0x77, 0x91, 0x95, 0xa1, 't', 0xa1, 'k', 0xa1, 'o', 0x01, 0xc2}), DecodeError);
  // A range request of three fields, and one of five.
  EXPECT_THROW(decode(Bytes{0x78, 0x93, 0xa1, 's', 0x01, 0x01}), DecodeError);
  EXPECT_THROW(decode(Bytes{0x78, 0x95, 0xa1, 's', 0x01, 0x01, 0xa1, 'f', 0x00}), DecodeError);
  // The right arity decodes.
  EXPECT_NO_THROW(decode(Bytes{0x78, 0x94, 0xa1, 's', 0x01, 0x01, 0xa1, 'f'}));
  // A field of the wrong type: a string where the unit is.
  EXPECT_THROW(decode(Bytes{0x78, 0x94, 0xa1, 's', 0xa1, 'u', 0x01, 0xa1, 'f'}), DecodeError);
}

TEST(WeftMessagesTest, SyncOfThePreviousFormatIsRefused) {
  // [node, all, owners, withdrawn_mark, entries]: a peer of the build before
  // the sync was split into buckets. It must fail to decode (and so be
  // dropped), not be read as a sync of no scope.
  EXPECT_THROW(decode(Bytes{0x7A, 0x95, 0xa1, 'n', 0xc3, 0x91, 0xa1, 'a', 0x09, 0x90}), DecodeError);
  EXPECT_NO_THROW(decode(Bytes{0x7A, 0x97, 0xa1, 'n', 0x09, 0x91, 0xa1, 'a', 0x91, 0x03, 0x90, 0x90, 0x90}));
}

TEST(WeftMessagesTest, ContainerLongerThanTheInputIsRefusedWithoutAllocating) {
  // An array header claiming 2^32-1 entries in a 6-byte message.
  EXPECT_THROW(decode(Bytes{0x77, 0xdd, 0xff, 0xff, 0xff, 0xff}), DecodeError);
  // A map of owner digests claiming 65535 pairs.
  EXPECT_THROW(decode(Bytes{0x7B, 0x92, 0xa1, 'n', 0xde, 0xff, 0xff}), DecodeError);
}

}  // namespace
}  // namespace weft::control::cluster
