// A UDP packet in, typed memberlist messages out (and the reverse). Pure
// functions with no sockets, so the fuzzer and the tests drive exactly the
// code the node runs.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "control/gossip/keyring.h"
#include "control/gossip/messages.h"

namespace weft::control::gossip {

struct UserMessage {
  Bytes payload;  // what follows the user type byte: handed to Delegate::notify_msg
};

using PacketBody = std::variant<Ping, IndirectPingReq, AckResp, NackResp, Suspect, Alive, Dead, UserMessage>;

struct DecodedPacket {
  std::vector<PacketBody> messages;
  // Why parts were dropped (bad CRC, undecryptable, malformed...). A packet
  // can yield some messages and some errors: compound parts are independent.
  std::vector<std::string> errors;
  bool was_encrypted = false;
};

// With a keyring, the packet must decrypt under one of its keys unless
// `require_encryption` is false (memberlist's GossipVerifyIncoming=false,
// used while rolling encryption out), in which case undecryptable packets are
// read as plaintext.
DecodedPacket decode_packet(ByteView packet, const Keyring* keyring, bool require_encryption);

struct PacketOptions {
  bool compress = false;  // LZW, kept only if it makes the packet smaller
  bool crc = false;       // peers that understand protocol 5 get a CRC header
  const Keyring* keyring = nullptr;  // encrypt with the primary key
};
Bytes encode_packet(ByteView msg, const PacketOptions& options);

}  // namespace weft::control::gossip
