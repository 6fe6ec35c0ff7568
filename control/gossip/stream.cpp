#include "control/gossip/stream.h"

#include <fmt/format.h>

#include "control/gossip/codec.h"
#include "control/gossip/lzw.h"
#include "control/gossip/security.h"

namespace weft::control::gossip {

namespace {

// Parses one plain message. When `complete` is true, the buffer is all there
// will ever be (decrypted or decompressed), so running short is an error.
StreamParse parse_plain(ByteView buf, bool complete, int depth, std::size_t max_bytes) {
  if (buf.empty()) {
    if (complete) throw DecodeError("empty stream message");
    return {};
  }
  StreamParse out;
  const auto type = static_cast<MessageType>(buf[0]);
  std::size_t off = 1;
  try {
    switch (type) {
      case MessageType::kCompress: {
        // memberlist allows one level: a compressed payload holds a plain message.
        if (depth > 0) throw DecodeError("nested compression in stream");
        auto v = MsgpackValue::decode(buf, off);
        Compress c;
        decode_body(v.get(), c);
        if (c.algo != 0) throw DecodeError(fmt::format("cannot decompress unknown algorithm {}", c.algo));
        Bytes inner = lzw_decompress(c.buf, max_bytes);
        out = parse_plain(inner, true, depth + 1, max_bytes);
        out.consumed = off;
        return out;
      }
      case MessageType::kPushPull: {
        auto hv = MsgpackValue::decode(buf, off);
        decode_body(hv.get(), out.message.push_pull);
        const auto& h = out.message.push_pull;
        if (static_cast<std::uint64_t>(h.nodes) > 65536 ||
            static_cast<std::uint64_t>(h.user_state_len) > max_bytes) {
          throw DecodeError(fmt::format("push/pull state too large ({} nodes, {} user bytes)", h.nodes,
                                        h.user_state_len));
        }
        out.message.nodes.reserve(static_cast<std::size_t>(std::min<std::int64_t>(h.nodes, 1024)));
        for (std::int64_t i = 0; i < h.nodes; ++i) {
          auto nv = MsgpackValue::decode(buf, off);
          PushNodeState n;
          decode_body(nv.get(), n);
          out.message.nodes.push_back(std::move(n));
        }
        const auto user_len = static_cast<std::size_t>(h.user_state_len);
        if (buf.size() - off < user_len) throw NeedMoreData();
        out.message.user_state.assign(buf.begin() + static_cast<std::ptrdiff_t>(off),
                                      buf.begin() + static_cast<std::ptrdiff_t>(off + user_len));
        off += user_len;
        break;
      }
      case MessageType::kUser: {
        auto hv = MsgpackValue::decode(buf, off);
        UserMsgHeader h;
        decode_body(hv.get(), h);
        if (static_cast<std::uint64_t>(h.user_msg_len) > max_bytes) throw DecodeError("user message too large");
        const auto len = static_cast<std::size_t>(h.user_msg_len);
        if (buf.size() - off < len) throw NeedMoreData();
        out.message.user_msg.assign(buf.begin() + static_cast<std::ptrdiff_t>(off),
                                    buf.begin() + static_cast<std::ptrdiff_t>(off + len));
        off += len;
        break;
      }
      case MessageType::kPing: {
        auto v = MsgpackValue::decode(buf, off);
        decode_body(v.get(), out.message.ping);
        break;
      }
      case MessageType::kAck: {
        auto v = MsgpackValue::decode(buf, off);
        decode_body(v.get(), out.message.ack);
        break;
      }
      case MessageType::kErr: {
        auto v = MsgpackValue::decode(buf, off);
        decode_body(v.get(), out.message.err);
        break;
      }
      default:
        throw DecodeError(fmt::format("unexpected stream message type {} ({})", buf[0], message_type_name(buf[0])));
    }
  } catch (const NeedMoreData&) {
    if (complete) throw DecodeError("stream message is truncated");
    if (buf.size() > max_bytes) throw DecodeError(fmt::format("stream message exceeds the limit of {} bytes", max_bytes));
    return {};
  }
  out.message.type = type;
  out.complete = true;
  out.consumed = off;
  return out;
}

}  // namespace

StreamParse parse_stream(ByteView received, const Keyring* keyring, bool require_encryption, std::size_t max_bytes) {
  if (received.empty()) return {};
  if (received[0] == static_cast<std::uint8_t>(MessageType::kEncrypt)) {
    if (keyring == nullptr) throw DecodeError("remote stream is encrypted and encryption is not configured");
    if (received.size() < kStreamEncryptHeader) return {};
    const std::size_t len = (std::size_t{received[1]} << 24) | (std::size_t{received[2]} << 16) |
                            (std::size_t{received[3]} << 8) | std::size_t{received[4]};
    if (len > max_bytes) {
      throw DecodeError(fmt::format("remote stream of {} bytes exceeds the limit of {} bytes", len, max_bytes));
    }
    if (received.size() < kStreamEncryptHeader + len) return {};
    auto plain = decrypt_payload(*keyring, received.subspan(kStreamEncryptHeader, len),
                                 received.first(kStreamEncryptHeader));
    if (!plain) throw DecodeError("no installed key could decrypt the stream");
    StreamParse out = parse_plain(*plain, true, 0, max_bytes);
    out.message.was_encrypted = true;
    out.consumed = kStreamEncryptHeader + len;
    return out;
  }
  if (keyring != nullptr && require_encryption) {
    throw DecodeError("encryption is configured but the remote stream is not encrypted");
  }
  return parse_plain(received, false, 0, max_bytes);
}

std::optional<std::size_t> stream_frame_size(ByteView received) {
  if (received.size() < kStreamEncryptHeader || received[0] != static_cast<std::uint8_t>(MessageType::kEncrypt)) {
    return std::nullopt;
  }
  const std::size_t len = (std::size_t{received[1]} << 24) | (std::size_t{received[2]} << 16) |
                          (std::size_t{received[3]} << 8) | std::size_t{received[4]};
  return kStreamEncryptHeader + len;
}

void StreamBufferBudget::give(std::size_t n) {
  in_use_ -= std::min(n, in_use_);
  if (in_use_ != 0) return;
  const bool was_large = idle_threshold_ > 0 && peak_since_idle_ >= idle_threshold_;
  peak_since_idle_ = 0;
  if (was_large && on_idle_) on_idle_();
}

StreamReader::StreamReader(const Keyring* keyring, bool require_encryption, std::size_t max_bytes,
                           StreamBufferBudget* budget)
    : keyring_(keyring), require_encryption_(require_encryption), max_bytes_(max_bytes), budget_(budget) {}

void StreamReader::release() {
  Bytes().swap(buffer_);
  if (budget_ != nullptr && taken_ > 0) budget_->give(taken_);
  taken_ = 0;
}

void StreamReader::grow_for(std::size_t needed) {
  if (needed <= buffer_.capacity()) return;
  // Plaintext messages carry no length: the limit itself is the ceiling.
  const std::size_t ceiling = stream_frame_size(buffer_).value_or(max_bytes_);
  if (needed > ceiling) throw DecodeError(fmt::format("stream message exceeds the limit of {} bytes", max_bytes_));
  // Doubling keeps copies linear, but never past what the message can need.
  const std::size_t target =
      std::max(needed, std::min(ceiling, std::max<std::size_t>(2 * buffer_.capacity(), 16 * 1024)));
  if (budget_ != nullptr && !budget_->take(target - taken_)) {
    throw DecodeError(fmt::format("stream buffers of peers are full ({} bytes)", budget_->limit()));
  }
  buffer_.reserve(target);
  taken_ = target;
}

std::optional<StreamMessage> StreamReader::feed(ByteView bytes) {
  while (!bytes.empty()) {
    // The header first: a refusal (bad type byte, oversized length) is
    // decided before anything beyond it is buffered.
    std::size_t step = bytes.size();
    if (buffer_.size() < kStreamEncryptHeader) step = std::min(step, kStreamEncryptHeader - buffer_.size());
    // Bytes past an encrypted frame are not part of this message.
    if (auto frame = stream_frame_size(buffer_)) step = std::min(step, *frame - buffer_.size());
    if (step == 0) break;  // a whole frame always parses or throws; never spin
    grow_for(buffer_.size() + step);
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(step));
    bytes = bytes.subspan(step);
    StreamParse parsed = parse_stream(buffer_, keyring_, require_encryption_, max_bytes_);
    if (parsed.complete) {
      release();
      return std::move(parsed.message);
    }
  }
  return std::nullopt;
}

Bytes encode_push_pull(const PushPullHeader& header, const std::vector<PushNodeState>& nodes, ByteView user_state) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(MessageType::kPushPull));
  GoMsgpackWriter w(out);
  encode_body(w, header);
  for (const auto& n : nodes) encode_body(w, n);
  out.insert(out.end(), user_state.begin(), user_state.end());
  return out;
}

Bytes encode_user_stream(ByteView user_msg) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(MessageType::kUser));
  GoMsgpackWriter w(out);
  encode_body(w, UserMsgHeader{static_cast<std::int64_t>(user_msg.size())});
  out.insert(out.end(), user_msg.begin(), user_msg.end());
  return out;
}

Bytes frame_stream(ByteView plain, const Keyring* keyring, bool compress) {
  Bytes body;
  if (compress) {
    body = compress_message(plain);
  } else {
    body.assign(plain.begin(), plain.end());
  }
  if (keyring == nullptr) return body;
  return encrypt_stream_frame(keyring->primary(), body);
}

}  // namespace weft::control::gossip
