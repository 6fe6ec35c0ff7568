// memberlist's wire messages (hashicorp/memberlist net.go, protocol 2-5).
//
// Each message on the wire is one type byte followed by the msgpack body
// (a map keyed by the Go field names, see msgpack_wire.h).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// Numbering is memberlist's `messageType` iota order; it is the protocol.
enum class MessageType : std::uint8_t {
  kPing = 0,
  kIndirectPing = 1,
  kAck = 2,
  kSuspect = 3,
  kAlive = 4,
  kDead = 5,
  kPushPull = 6,
  kCompound = 7,
  kUser = 8,
  kCompress = 9,
  kEncrypt = 10,
  kNack = 11,
  kHasCrc = 12,
  kErr = 13,
};

const char* message_type_name(std::uint8_t type);

// memberlist's NodeStateType.
enum class NodeStateKind : std::uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };
const char* node_state_name(NodeStateKind s);

// pmin, pmax, pcur, dmin, dmax, dcur. memberlist understands protocol 1..5 and
// speaks 2 (ProtocolVersion2Compatible); the delegate range is serf's (2..5,
// serf agents speak 5 by default).
using VersionVector = std::array<std::uint8_t, 6>;
inline constexpr VersionVector kDefaultVersions{1, 5, 2, 2, 5, 5};

// memberlist limits node meta to 512 bytes.
inline constexpr std::size_t kMetaMaxSize = 512;

struct Ping {
  static constexpr MessageType kType = MessageType::kPing;
  std::uint32_t seq_no = 0;
  std::string node;          // intended recipient, so a restarted node under a new name won't ack
  Bytes source_addr;         // omitempty: where to send the ack
  std::uint16_t source_port = 0;
  std::string source_node;
};

struct IndirectPingReq {
  static constexpr MessageType kType = MessageType::kIndirectPing;
  std::uint32_t seq_no = 0;
  Bytes target;
  std::uint16_t port = 0;
  std::string node;
  bool nack = false;
  Bytes source_addr;
  std::uint16_t source_port = 0;
  std::string source_node;
};

struct AckResp {
  static constexpr MessageType kType = MessageType::kAck;
  std::uint32_t seq_no = 0;
  Bytes payload;
};

struct NackResp {
  static constexpr MessageType kType = MessageType::kNack;
  std::uint32_t seq_no = 0;
};

struct ErrResp {
  static constexpr MessageType kType = MessageType::kErr;
  std::string error;
};

struct Suspect {
  static constexpr MessageType kType = MessageType::kSuspect;
  std::uint32_t incarnation = 0;
  std::string node;
  std::string from;
};

struct Alive {
  static constexpr MessageType kType = MessageType::kAlive;
  std::uint32_t incarnation = 0;
  std::string node;
  Bytes addr;  // 4 or 16 bytes
  std::uint16_t port = 0;
  Bytes meta;
  Bytes vsn;  // VersionVector on the wire as a byte slice; may be shorter from old peers
};

struct Dead {
  static constexpr MessageType kType = MessageType::kDead;
  std::uint32_t incarnation = 0;
  std::string node;
  std::string from;  // == node for a graceful leave
};

struct PushPullHeader {
  std::int64_t nodes = 0;
  std::int64_t user_state_len = 0;
  bool join = false;
};

struct UserMsgHeader {
  std::int64_t user_msg_len = 0;
};

struct PushNodeState {
  std::string name;
  Bytes addr;
  std::uint16_t port = 0;
  Bytes meta;
  std::uint32_t incarnation = 0;
  NodeStateKind state = NodeStateKind::kAlive;
  Bytes vsn;
};

struct Compress {
  static constexpr MessageType kType = MessageType::kCompress;
  std::uint8_t algo = 0;  // 0 = LZW (the only one memberlist knows)
  Bytes buf;
};

// Bodies (no type byte).
void encode_body(GoMsgpackWriter& w, const Ping& m);
void encode_body(GoMsgpackWriter& w, const IndirectPingReq& m);
void encode_body(GoMsgpackWriter& w, const AckResp& m);
void encode_body(GoMsgpackWriter& w, const NackResp& m);
void encode_body(GoMsgpackWriter& w, const ErrResp& m);
void encode_body(GoMsgpackWriter& w, const Suspect& m);
void encode_body(GoMsgpackWriter& w, const Alive& m);
void encode_body(GoMsgpackWriter& w, const Dead& m);
void encode_body(GoMsgpackWriter& w, const PushPullHeader& m);
void encode_body(GoMsgpackWriter& w, const UserMsgHeader& m);
void encode_body(GoMsgpackWriter& w, const PushNodeState& m);
void encode_body(GoMsgpackWriter& w, const Compress& m);

// Type byte + body, as memberlist's encode() produces.
template <class M>
Bytes encode_message(const M& m) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(M::kType));
  GoMsgpackWriter w(out);
  encode_body(w, m);
  return out;
}

void decode_body(const msgpack::object& o, Ping& m);
void decode_body(const msgpack::object& o, IndirectPingReq& m);
void decode_body(const msgpack::object& o, AckResp& m);
void decode_body(const msgpack::object& o, NackResp& m);
void decode_body(const msgpack::object& o, ErrResp& m);
void decode_body(const msgpack::object& o, Suspect& m);
void decode_body(const msgpack::object& o, Alive& m);
void decode_body(const msgpack::object& o, Dead& m);
void decode_body(const msgpack::object& o, PushPullHeader& m);
void decode_body(const msgpack::object& o, UserMsgHeader& m);
void decode_body(const msgpack::object& o, PushNodeState& m);
void decode_body(const msgpack::object& o, Compress& m);

// Decodes a body that starts at the beginning of `body` (trailing bytes are
// ignored, as Go does). Throws DecodeError.
template <class M>
M decode_message_body(ByteView body) {
  auto v = MsgpackValue::decode(body);
  M m;
  decode_body(v.get(), m);
  return m;
}

}  // namespace weft::control::gossip
