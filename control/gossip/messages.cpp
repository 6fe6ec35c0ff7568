#include "control/gossip/messages.h"

#include <fmt/format.h>

namespace weft::control::gossip {

const char* message_type_name(std::uint8_t type) {
  static constexpr const char* kNames[] = {"ping",    "indirectPing", "ack",    "suspect", "alive",
                                           "dead",    "pushPull",     "compound", "user",  "compress",
                                           "encrypt", "nack",         "hasCrc", "err"};
  return type < std::size(kNames) ? kNames[type] : "unknown";
}

const char* node_state_name(NodeStateKind s) {
  switch (s) {
    case NodeStateKind::kAlive:
      return "alive";
    case NodeStateKind::kSuspect:
      return "suspect";
    case NodeStateKind::kDead:
      return "dead";
    case NodeStateKind::kLeft:
      return "left";
  }
  return "unknown";
}

// Field order in every encoder below is Go's: sorted by field name, which is
// what go-msgpack does for struct-to-map encoding. omitempty fields are
// skipped when zero and not counted in the map header.

void encode_body(GoMsgpackWriter& w, const Ping& m) {
  const bool has_addr = !m.source_addr.empty(), has_port = m.source_port != 0, has_node = !m.source_node.empty();
  w.map_header(2 + has_addr + has_port + has_node);
  w.field("Node");
  w.raw(m.node);
  w.field("SeqNo");
  w.uint(m.seq_no);
  if (has_addr) {
    w.field("SourceAddr");
    w.raw(ByteView(m.source_addr));
  }
  if (has_node) {
    w.field("SourceNode");
    w.raw(m.source_node);
  }
  if (has_port) {
    w.field("SourcePort");
    w.uint(m.source_port);
  }
}

void encode_body(GoMsgpackWriter& w, const IndirectPingReq& m) {
  const bool has_addr = !m.source_addr.empty(), has_port = m.source_port != 0, has_node = !m.source_node.empty();
  w.map_header(5 + has_addr + has_port + has_node);
  w.field("Nack");
  w.boolean(m.nack);
  w.field("Node");
  w.raw(m.node);
  w.field("Port");
  w.uint(m.port);
  w.field("SeqNo");
  w.uint(m.seq_no);
  if (has_addr) {
    w.field("SourceAddr");
    w.raw(ByteView(m.source_addr));
  }
  if (has_node) {
    w.field("SourceNode");
    w.raw(m.source_node);
  }
  if (has_port) {
    w.field("SourcePort");
    w.uint(m.source_port);
  }
  w.field("Target");
  w.bytes_or_nil(m.target);
}

void encode_body(GoMsgpackWriter& w, const AckResp& m) {
  w.map_header(2);
  w.field("Payload");
  w.bytes_or_nil(m.payload);
  w.field("SeqNo");
  w.uint(m.seq_no);
}

void encode_body(GoMsgpackWriter& w, const NackResp& m) {
  w.map_header(1);
  w.field("SeqNo");
  w.uint(m.seq_no);
}

void encode_body(GoMsgpackWriter& w, const ErrResp& m) {
  w.map_header(1);
  w.field("Error");
  w.raw(m.error);
}

void encode_body(GoMsgpackWriter& w, const Suspect& m) {
  w.map_header(3);
  w.field("From");
  w.raw(m.from);
  w.field("Incarnation");
  w.uint(m.incarnation);
  w.field("Node");
  w.raw(m.node);
}

void encode_body(GoMsgpackWriter& w, const Alive& m) {
  w.map_header(6);
  w.field("Addr");
  w.bytes_or_nil(m.addr);
  w.field("Incarnation");
  w.uint(m.incarnation);
  w.field("Meta");
  w.bytes_or_nil(m.meta);
  w.field("Node");
  w.raw(m.node);
  w.field("Port");
  w.uint(m.port);
  w.field("Vsn");
  w.bytes_or_nil(m.vsn);
}

void encode_body(GoMsgpackWriter& w, const Dead& m) {
  w.map_header(3);
  w.field("From");
  w.raw(m.from);
  w.field("Incarnation");
  w.uint(m.incarnation);
  w.field("Node");
  w.raw(m.node);
}

void encode_body(GoMsgpackWriter& w, const PushPullHeader& m) {
  w.map_header(3);
  w.field("Join");
  w.boolean(m.join);
  w.field("Nodes");
  w.integer(m.nodes);
  w.field("UserStateLen");
  w.integer(m.user_state_len);
}

void encode_body(GoMsgpackWriter& w, const UserMsgHeader& m) {
  w.map_header(1);
  w.field("UserMsgLen");
  w.integer(m.user_msg_len);
}

void encode_body(GoMsgpackWriter& w, const PushNodeState& m) {
  w.map_header(7);
  w.field("Addr");
  w.bytes_or_nil(m.addr);
  w.field("Incarnation");
  w.uint(m.incarnation);
  w.field("Meta");
  w.bytes_or_nil(m.meta);
  w.field("Name");
  w.raw(m.name);
  w.field("Port");
  w.uint(m.port);
  w.field("State");
  w.integer(static_cast<std::int64_t>(m.state));
  w.field("Vsn");
  w.bytes_or_nil(m.vsn);
}

void encode_body(GoMsgpackWriter& w, const Compress& m) {
  w.map_header(2);
  w.field("Algo");
  w.uint(m.algo);
  w.field("Buf");
  w.bytes_or_nil(m.buf);
}

void decode_body(const msgpack::object& o, Ping& m) {
  StructView v(o);
  m.seq_no = static_cast<std::uint32_t>(v.uint("SeqNo", UINT32_MAX));
  m.node = v.string("Node");
  m.source_addr = v.bytes("SourceAddr");
  m.source_port = static_cast<std::uint16_t>(v.uint("SourcePort", UINT16_MAX));
  m.source_node = v.string("SourceNode");
}

void decode_body(const msgpack::object& o, IndirectPingReq& m) {
  StructView v(o);
  m.seq_no = static_cast<std::uint32_t>(v.uint("SeqNo", UINT32_MAX));
  m.target = v.bytes("Target");
  m.port = static_cast<std::uint16_t>(v.uint("Port", UINT16_MAX));
  m.node = v.string("Node");
  m.nack = v.boolean("Nack");
  m.source_addr = v.bytes("SourceAddr");
  m.source_port = static_cast<std::uint16_t>(v.uint("SourcePort", UINT16_MAX));
  m.source_node = v.string("SourceNode");
}

void decode_body(const msgpack::object& o, AckResp& m) {
  StructView v(o);
  m.seq_no = static_cast<std::uint32_t>(v.uint("SeqNo", UINT32_MAX));
  m.payload = v.bytes("Payload");
}

void decode_body(const msgpack::object& o, NackResp& m) {
  StructView v(o);
  m.seq_no = static_cast<std::uint32_t>(v.uint("SeqNo", UINT32_MAX));
}

void decode_body(const msgpack::object& o, ErrResp& m) {
  StructView v(o);
  m.error = v.string("Error");
}

void decode_body(const msgpack::object& o, Suspect& m) {
  StructView v(o);
  m.incarnation = static_cast<std::uint32_t>(v.uint("Incarnation", UINT32_MAX));
  m.node = v.string("Node");
  m.from = v.string("From");
}

void decode_body(const msgpack::object& o, Alive& m) {
  StructView v(o);
  m.incarnation = static_cast<std::uint32_t>(v.uint("Incarnation", UINT32_MAX));
  m.node = v.string("Node");
  m.addr = v.bytes("Addr");
  m.port = static_cast<std::uint16_t>(v.uint("Port", UINT16_MAX));
  m.meta = v.bytes("Meta");
  m.vsn = v.bytes("Vsn");
}

void decode_body(const msgpack::object& o, Dead& m) {
  StructView v(o);
  m.incarnation = static_cast<std::uint32_t>(v.uint("Incarnation", UINT32_MAX));
  m.node = v.string("Node");
  m.from = v.string("From");
}

void decode_body(const msgpack::object& o, PushPullHeader& m) {
  StructView v(o);
  m.nodes = v.integer("Nodes");
  m.user_state_len = v.integer("UserStateLen");
  m.join = v.boolean("Join");
  if (m.nodes < 0 || m.user_state_len < 0) throw DecodeError("push/pull header has negative counts");
}

void decode_body(const msgpack::object& o, UserMsgHeader& m) {
  StructView v(o);
  m.user_msg_len = v.integer("UserMsgLen");
  if (m.user_msg_len < 0) throw DecodeError("user message header has negative length");
}

void decode_body(const msgpack::object& o, PushNodeState& m) {
  StructView v(o);
  m.name = v.string("Name");
  m.addr = v.bytes("Addr");
  m.port = static_cast<std::uint16_t>(v.uint("Port", UINT16_MAX));
  m.meta = v.bytes("Meta");
  m.incarnation = static_cast<std::uint32_t>(v.uint("Incarnation", UINT32_MAX));
  const auto state = v.integer("State");
  if (state < 0 || state > 3) throw DecodeError(fmt::format("push/pull node state {} is unknown", state));
  m.state = static_cast<NodeStateKind>(state);
  m.vsn = v.bytes("Vsn");
}

void decode_body(const msgpack::object& o, Compress& m) {
  StructView v(o);
  m.algo = static_cast<std::uint8_t>(v.uint("Algo", 255));
  m.buf = v.bytes("Buf");
}

}  // namespace weft::control::gossip
