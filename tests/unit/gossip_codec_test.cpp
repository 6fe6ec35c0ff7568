// Wire-format tests for the memberlist codec. Expected bytes are derived by
// hand from how hashicorp/go-msgpack (MsgpackHandle{}, old raw spec, map keys
// sorted by Go field name) encodes memberlist's structs.
#include <gtest/gtest.h>

#include <random>

#include "control/gossip/codec.h"
#include "control/gossip/lzw.h"
#include "control/gossip/messages.h"
#include "control/gossip/packet.h"
#include "control/gossip/security.h"
#include "control/gossip/stream.h"

namespace gossip = weft::control::gossip;
using gossip::Bytes;

namespace {

Bytes str_bytes(std::string_view s) { return {s.begin(), s.end()}; }

// fixraw header + text
void raw(Bytes& out, std::string_view s) {
  out.push_back(static_cast<std::uint8_t>(0xa0 | s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

TEST(GossipCodec, PingMatchesGoEncodingByteForByte) {
  gossip::Ping p{1, "node-b", {127, 0, 0, 1}, 7946, "node-a"};
  Bytes want{0x00, 0x85};  // ping type, map of 5
  raw(want, "Node");
  raw(want, "node-b");
  raw(want, "SeqNo");
  want.push_back(0x01);
  raw(want, "SourceAddr");
  want.insert(want.end(), {0xa4, 127, 0, 0, 1});  // []byte is raw too, not bin
  raw(want, "SourceNode");
  raw(want, "node-a");
  raw(want, "SourcePort");
  want.insert(want.end(), {0xcd, 0x1f, 0x0a});  // 7946 as uint16
  EXPECT_EQ(gossip::encode_message(p), want);
}

TEST(GossipCodec, PingOmitsEmptySourceFields) {
  gossip::Ping p{300, "n", {}, 0, ""};
  Bytes want{0x00, 0x82};
  raw(want, "Node");
  raw(want, "n");
  raw(want, "SeqNo");
  want.insert(want.end(), {0xcd, 0x01, 0x2c});
  EXPECT_EQ(gossip::encode_message(p), want);
}

TEST(GossipCodec, LongStringsUseRaw16NotStr8) {
  const std::string name(40, 'x');
  gossip::Dead d{5, name, name};
  const Bytes enc = gossip::encode_message(d);
  // "From" key then raw16 header: 0xda 0x00 0x28 (old spec has no str8 / 0xd9).
  Bytes want_prefix{0x05, 0x83};
  raw(want_prefix, "From");
  want_prefix.insert(want_prefix.end(), {0xda, 0x00, 0x28});
  ASSERT_GE(enc.size(), want_prefix.size());
  EXPECT_TRUE(std::equal(want_prefix.begin(), want_prefix.end(), enc.begin()));
  EXPECT_EQ(std::count(enc.begin(), enc.end(), 0xd9), 0);
}

TEST(GossipCodec, AckWithNilPayload) {
  Bytes want{0x02, 0x82};
  raw(want, "Payload");
  want.push_back(0xc0);  // Go's nil []byte
  raw(want, "SeqNo");
  want.push_back(0x07);
  EXPECT_EQ(gossip::encode_message(gossip::AckResp{7, {}}), want);
}

TEST(GossipCodec, AliveEncodesVersionVectorAsRawBytes) {
  gossip::Alive a{3, "w1", {10, 0, 0, 1}, 7946, {0xff, 0x80}, Bytes(gossip::kDefaultVersions.begin(), gossip::kDefaultVersions.end())};
  Bytes want{0x04, 0x86};
  raw(want, "Addr");
  want.insert(want.end(), {0xa4, 10, 0, 0, 1});
  raw(want, "Incarnation");
  want.push_back(0x03);
  raw(want, "Meta");
  want.insert(want.end(), {0xa2, 0xff, 0x80});
  raw(want, "Node");
  raw(want, "w1");
  raw(want, "Port");
  want.insert(want.end(), {0xcd, 0x1f, 0x0a});
  raw(want, "Vsn");
  want.insert(want.end(), {0xa6, 1, 5, 2, 2, 5, 5});
  EXPECT_EQ(gossip::encode_message(a), want);

  auto back = gossip::decode_message_body<gossip::Alive>(gossip::ByteView(want).subspan(1));
  EXPECT_EQ(back.node, "w1");
  EXPECT_EQ(back.incarnation, 3u);
  EXPECT_EQ(back.addr, (Bytes{10, 0, 0, 1}));
  EXPECT_EQ(back.port, 7946);
  EXPECT_EQ(back.vsn, (Bytes{1, 5, 2, 2, 5, 5}));
}

TEST(GossipCodec, RoundTripsEveryPacketMessage) {
  gossip::IndirectPingReq ind{9, {192, 168, 1, 2}, 8000, "target", true, {10, 0, 0, 1}, 7000, "me"};
  auto ind2 = gossip::decode_message_body<gossip::IndirectPingReq>(gossip::ByteView(gossip::encode_message(ind)).subspan(1));
  EXPECT_EQ(ind2.seq_no, 9u);
  EXPECT_EQ(ind2.target, ind.target);
  EXPECT_EQ(ind2.port, 8000);
  EXPECT_EQ(ind2.node, "target");
  EXPECT_TRUE(ind2.nack);
  EXPECT_EQ(ind2.source_node, "me");
  EXPECT_EQ(ind2.source_port, 7000);

  gossip::Suspect s{77, "x", "y"};
  auto s2 = gossip::decode_message_body<gossip::Suspect>(gossip::ByteView(gossip::encode_message(s)).subspan(1));
  EXPECT_EQ(s2.incarnation, 77u);
  EXPECT_EQ(s2.node, "x");
  EXPECT_EQ(s2.from, "y");

  gossip::NackResp n{0xffffffffu};
  auto n2 = gossip::decode_message_body<gossip::NackResp>(gossip::ByteView(gossip::encode_message(n)).subspan(1));
  EXPECT_EQ(n2.seq_no, 0xffffffffu);
}

TEST(GossipCodec, DecoderIsLenientLikeGo) {
  // A newer encoder may send str8 (0xd9) and bin (0xc4); Go's decoder takes
  // both for string / []byte fields, and ignores unknown keys.
  Bytes body{0x84};
  raw(body, "Node");
  body.insert(body.end(), {0xd9, 0x02, 'a', 'b'});
  raw(body, "SeqNo");
  body.insert(body.end(), {0xce, 0x00, 0x01, 0x00, 0x00});
  raw(body, "SourceAddr");
  body.insert(body.end(), {0xc4, 0x04, 1, 2, 3, 4});
  raw(body, "Unknown");
  body.push_back(0x90);
  auto p = gossip::decode_message_body<gossip::Ping>(body);
  EXPECT_EQ(p.node, "ab");
  EXPECT_EQ(p.seq_no, 65536u);
  EXPECT_EQ(p.source_addr, (Bytes{1, 2, 3, 4}));
}

TEST(GossipCodec, DecoderRejectsOverflowAndWrongTypes) {
  Bytes body{0x81};
  raw(body, "SourcePort");
  body.insert(body.end(), {0xce, 0x00, 0x01, 0x00, 0x00});  // 65536 > uint16
  EXPECT_THROW(gossip::decode_message_body<gossip::Ping>(body), gossip::DecodeError);
  EXPECT_THROW(gossip::decode_message_body<gossip::Ping>(Bytes{0x93, 1, 2, 3}), gossip::DecodeError);
  EXPECT_THROW(gossip::decode_message_body<gossip::Ping>(Bytes{0x85}), gossip::DecodeError);
}

TEST(GossipCodec, CompoundSplitsParts) {
  const Bytes a{1, 2, 3}, b{}, c(300, 0x55);
  const Bytes comp = gossip::make_compound({a, b, c});
  ASSERT_EQ(comp[0], 7);
  ASSERT_EQ(comp[1], 3);
  EXPECT_EQ(comp[2], 0);
  EXPECT_EQ(comp[3], 3);
  EXPECT_EQ(comp[6], 0x01);  // 300 = 0x012c big endian
  EXPECT_EQ(comp[7], 0x2c);
  auto parts = gossip::split_compound(gossip::ByteView(comp).subspan(1));
  ASSERT_EQ(parts.parts.size(), 3u);
  EXPECT_EQ(parts.truncated, 0u);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), parts.parts[0].begin(), parts.parts[0].end()));
  EXPECT_TRUE(parts.parts[1].empty());
  EXPECT_EQ(parts.parts[2].size(), 300u);

  // Cut the last part short: the first two survive, one is reported truncated.
  auto cut = gossip::split_compound(gossip::ByteView(comp).subspan(1, comp.size() - 10));
  EXPECT_EQ(cut.parts.size(), 2u);
  EXPECT_EQ(cut.truncated, 1u);
  EXPECT_THROW(gossip::split_compound(Bytes{5, 0, 1}), gossip::DecodeError);
}

TEST(GossipCodec, CrcIsIeeeAndBigEndian) {
  EXPECT_EQ(gossip::crc32_ieee(str_bytes("123456789")), 0xCBF43926u);
  const Bytes msg = gossip::encode_message(gossip::NackResp{1});
  Bytes wrapped = gossip::add_crc(msg);
  ASSERT_EQ(wrapped.size(), msg.size() + 5);
  EXPECT_EQ(wrapped[0], 12);
  const auto crc = gossip::crc32_ieee(msg);
  EXPECT_EQ(wrapped[1], static_cast<std::uint8_t>(crc >> 24));
  EXPECT_EQ(wrapped[4], static_cast<std::uint8_t>(crc));
  auto stripped = gossip::strip_crc(wrapped);
  ASSERT_TRUE(stripped.has_value());
  EXPECT_TRUE(std::equal(stripped->begin(), stripped->end(), msg.begin(), msg.end()));
  // Packets without the header pass through untouched.
  auto plain = gossip::strip_crc(msg);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->size(), msg.size());
  wrapped.back() ^= 1;
  EXPECT_FALSE(gossip::strip_crc(wrapped).has_value());
}

// Vectors from Go's compress/lzw reader tests (LSB, litWidth 8). "tobe" was
// made by Go's pre-1.17 writer (no leading clear code); "gif" starts with one.
TEST(GossipLzw, DecodesGoVectors) {
  const Bytes tobe{0x54, 0x9e, 0x08, 0x29, 0xf2, 0x44, 0x8a, 0x93, 0x27, 0x54,
                   0x04, 0x12, 0x34, 0xb8, 0xb0, 0xe0, 0xc1, 0x84, 0x01, 0x01};
  EXPECT_EQ(gossip::lzw_decompress(tobe), str_bytes("TOBEORNOTTOBEORTOBEORNOT"));
  const Bytes gif{0x00, 0x51, 0xfc, 0x1b, 0x28, 0x70, 0xa0, 0xc1, 0x83, 0x01, 0x01};
  const Bytes gif_raw{0x28, 0xff, 0xff, 0xff, 0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(gossip::lzw_decompress(gif), gif_raw);
  EXPECT_TRUE(gossip::lzw_decompress(Bytes{0x01, 0x01}).empty());
  // Truncated stream: Go reports io.ErrUnexpectedEOF.
  EXPECT_THROW(gossip::lzw_decompress(Bytes(tobe.begin(), tobe.begin() + 11)), gossip::DecodeError);
}

TEST(GossipLzw, EncoderRoundTripsIncludingDictionaryResets) {
  std::mt19937 rng(42);
  for (std::size_t size : {0u, 1u, 2u, 100u, 5000u, 200000u}) {
    Bytes data(size);
    // Low-entropy data grows the dictionary fast and forces clear codes.
    for (auto& b : data) b = static_cast<std::uint8_t>(rng() % 7);
    EXPECT_EQ(gossip::lzw_decompress(gossip::lzw_compress(data)), data) << size;
  }
  Bytes random(70000);
  for (auto& b : random) b = static_cast<std::uint8_t>(rng());
  EXPECT_EQ(gossip::lzw_decompress(gossip::lzw_compress(random)), random);
}

TEST(GossipLzw, RejectsBadCodesAndBombs) {
  EXPECT_THROW(gossip::lzw_decompress(Bytes{0xff, 0xff, 0xff}), gossip::DecodeError);
  Bytes zeros(100000, 0);
  EXPECT_THROW(gossip::lzw_decompress(gossip::lzw_compress(zeros), 1000), gossip::DecodeError);
}

TEST(GossipPacket, DecodesCompoundCompressedAndCrcWrapped) {
  const Bytes ping = gossip::encode_message(gossip::Ping{5, "me", {}, 0, ""});
  const Bytes suspect = gossip::encode_message(gossip::Suspect{1, "x", "me"});
  const Bytes user{8, 'h', 'i'};
  const Bytes compound = gossip::make_compound({ping, suspect, user});
  gossip::PacketOptions opts;
  opts.compress = false;
  opts.crc = true;
  Bytes wire = gossip::encode_packet(gossip::compress_message(compound), opts);
  auto decoded = gossip::decode_packet(wire, nullptr, true);
  EXPECT_TRUE(decoded.errors.empty());
  ASSERT_EQ(decoded.messages.size(), 3u);
  EXPECT_EQ(std::get<gossip::Ping>(decoded.messages[0]).seq_no, 5u);
  EXPECT_EQ(std::get<gossip::Suspect>(decoded.messages[1]).node, "x");
  EXPECT_EQ(std::get<gossip::UserMessage>(decoded.messages[2]).payload, str_bytes("hi"));
}

TEST(GossipPacket, EncryptionIsRequiredWhenKeyringIsSet) {
  gossip::Keyring ring(Bytes(32, 7));
  const Bytes alive = gossip::encode_message(gossip::Alive{1, "evil", {1, 2, 3, 4}, 1, {}, {1, 5, 2, 2, 5, 5}});
  auto plain = gossip::decode_packet(alive, &ring, true);
  EXPECT_TRUE(plain.messages.empty());
  ASSERT_EQ(plain.errors.size(), 1u);
  // GossipVerifyIncoming=false reads undecryptable packets as plaintext.
  EXPECT_EQ(gossip::decode_packet(alive, &ring, false).messages.size(), 1u);

  gossip::PacketOptions opts;
  opts.keyring = &ring;
  opts.crc = true;
  auto sealed = gossip::decode_packet(gossip::encode_packet(alive, opts), &ring, true);
  EXPECT_TRUE(sealed.was_encrypted);
  ASSERT_EQ(sealed.messages.size(), 1u);
  EXPECT_EQ(std::get<gossip::Alive>(sealed.messages[0]).node, "evil");
}

TEST(GossipPacket, SurvivesGarbage) {
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    Bytes junk(rng() % 64);
    for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
    if (!junk.empty()) junk[0] = static_cast<std::uint8_t>(rng() % 14);
    EXPECT_NO_THROW(gossip::decode_packet(junk, nullptr, true));
  }
}

TEST(GossipStream, PushPullParsesIncrementally) {
  std::vector<gossip::PushNodeState> nodes{
      {"a", {127, 0, 0, 1}, 1000, {0xff, 0x80}, 3, gossip::NodeStateKind::kAlive, {1, 5, 2, 2, 5, 5}},
      {"b", {127, 0, 0, 2}, 2000, {}, 9, gossip::NodeStateKind::kLeft, {1, 5, 2, 2, 5, 5}},
  };
  const Bytes user = str_bytes("user-state");
  const Bytes msg = gossip::encode_push_pull({2, static_cast<std::int64_t>(user.size()), true}, nodes, user);
  for (std::size_t n = 0; n < msg.size(); ++n) {
    auto partial = gossip::parse_stream(gossip::ByteView(msg).first(n), nullptr, false);
    EXPECT_FALSE(partial.complete) << n;
  }
  auto full = gossip::parse_stream(msg, nullptr, false);
  ASSERT_TRUE(full.complete);
  EXPECT_EQ(full.consumed, msg.size());
  EXPECT_TRUE(full.message.push_pull.join);
  ASSERT_EQ(full.message.nodes.size(), 2u);
  EXPECT_EQ(full.message.nodes[1].name, "b");
  EXPECT_EQ(full.message.nodes[1].state, gossip::NodeStateKind::kLeft);
  EXPECT_EQ(full.message.user_state, user);
}

TEST(GossipStream, EncryptedAndCompressedFrames) {
  auto ring = std::make_shared<gossip::Keyring>(Bytes(16, 1));
  const Bytes msg = gossip::encode_user_stream(str_bytes("hello"));
  const Bytes wire = gossip::frame_stream(msg, ring.get(), /*compress=*/true);
  EXPECT_EQ(wire[0], 10);  // encrypt message type
  const std::size_t len = (std::size_t{wire[1]} << 24) | (wire[2] << 16) | (wire[3] << 8) | wire[4];
  EXPECT_EQ(len + 5, wire.size());
  EXPECT_FALSE(gossip::parse_stream(gossip::ByteView(wire).first(wire.size() - 1), ring.get(), true).complete);
  auto parsed = gossip::parse_stream(wire, ring.get(), true);
  ASSERT_TRUE(parsed.complete);
  EXPECT_TRUE(parsed.message.was_encrypted);
  EXPECT_EQ(parsed.message.type, gossip::MessageType::kUser);
  EXPECT_EQ(parsed.message.user_msg, str_bytes("hello"));

  // The length is authenticated: changing it breaks decryption.
  Bytes tampered = wire;
  tampered.push_back(0);
  tampered[4] += 1;
  EXPECT_THROW(gossip::parse_stream(tampered, ring.get(), true), gossip::DecodeError);
  // Plaintext is refused when a keyring is configured.
  EXPECT_THROW(gossip::parse_stream(msg, ring.get(), true), gossip::DecodeError);
  gossip::Keyring other(Bytes(16, 2));
  EXPECT_THROW(gossip::parse_stream(wire, &other, true), gossip::DecodeError);
}
