#include "control/gossip/msgpack_wire.h"

#include <fmt/format.h>

namespace weft::control::gossip {

namespace {
// Bounds for anything a peer sends us. memberlist caps push/pull state at
// 20 MiB; no single container in the protocol needs more than 64k entries.
const msgpack::unpack_limit kLimits(/*array=*/65536, /*map=*/65536,
                                    /*str=*/20 * 1024 * 1024, /*bin=*/20 * 1024 * 1024,
                                    /*ext=*/1024 * 1024, /*depth=*/32);
}  // namespace

void GoMsgpackWriter::map_header(std::size_t n) { packer_.pack_map(static_cast<std::uint32_t>(n)); }
void GoMsgpackWriter::array_header(std::size_t n) { packer_.pack_array(static_cast<std::uint32_t>(n)); }

void GoMsgpackWriter::raw(std::string_view s) {
  packer_.pack_v4raw(static_cast<std::uint32_t>(s.size()));
  packer_.pack_v4raw_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void GoMsgpackWriter::raw(ByteView b) {
  packer_.pack_v4raw(static_cast<std::uint32_t>(b.size()));
  packer_.pack_v4raw_body(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size()));
}

void GoMsgpackWriter::bytes_or_nil(ByteView b) {
  if (b.empty()) {
    nil();
  } else {
    raw(b);
  }
}

void GoMsgpackWriter::uint(std::uint64_t v) { packer_.pack_uint64(v); }
void GoMsgpackWriter::integer(std::int64_t v) { packer_.pack_int64(v); }
void GoMsgpackWriter::boolean(bool v) {
  if (v) {
    packer_.pack_true();
  } else {
    packer_.pack_false();
  }
}
void GoMsgpackWriter::nil() { packer_.pack_nil(); }

MsgpackValue MsgpackValue::decode(ByteView data, std::size_t& offset) {
  if (offset >= data.size()) throw NeedMoreData();
  MsgpackValue v;
  try {
    v.handle_ = msgpack::unpack(reinterpret_cast<const char*>(data.data()), data.size(), offset, nullptr,
                                nullptr, kLimits);
  } catch (const msgpack::insufficient_bytes&) {
    throw NeedMoreData();
  } catch (const std::bad_alloc&) {
    throw DecodeError("msgpack value too large");
  } catch (const std::exception& e) {
    throw DecodeError(fmt::format("malformed msgpack: {}", e.what()));
  }
  return v;
}

std::uint64_t object_to_uint(const msgpack::object& o, std::uint64_t max, std::string_view what) {
  std::uint64_t v = 0;
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      v = o.via.u64;
      break;
    case msgpack::type::NIL:
      return 0;
    case msgpack::type::NEGATIVE_INTEGER:
      throw DecodeError(fmt::format("{}: negative value {} for unsigned field", what, o.via.i64));
    default:
      throw DecodeError(fmt::format("{}: expected unsigned integer", what));
  }
  if (v > max) throw DecodeError(fmt::format("{}: value {} overflows (max {})", what, v, max));
  return v;
}

std::int64_t object_to_int(const msgpack::object& o, std::string_view what) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX)) throw DecodeError(fmt::format("{}: overflow", what));
      return static_cast<std::int64_t>(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return o.via.i64;
    case msgpack::type::NIL:
      return 0;
    default:
      throw DecodeError(fmt::format("{}: expected integer", what));
  }
}

std::string object_to_string(const msgpack::object& o, std::string_view what) {
  switch (o.type) {
    case msgpack::type::STR:
      return {o.via.str.ptr, o.via.str.size};
    case msgpack::type::BIN:
      return {o.via.bin.ptr, o.via.bin.size};
    case msgpack::type::NIL:
      return {};
    default:
      throw DecodeError(fmt::format("{}: expected string", what));
  }
}

Bytes object_to_bytes(const msgpack::object& o, std::string_view what) {
  switch (o.type) {
    case msgpack::type::STR:
      return {reinterpret_cast<const std::uint8_t*>(o.via.str.ptr),
              reinterpret_cast<const std::uint8_t*>(o.via.str.ptr) + o.via.str.size};
    case msgpack::type::BIN:
      return {reinterpret_cast<const std::uint8_t*>(o.via.bin.ptr),
              reinterpret_cast<const std::uint8_t*>(o.via.bin.ptr) + o.via.bin.size};
    case msgpack::type::NIL:
      return {};
    case msgpack::type::ARRAY: {
      // Go can also decode a []uint8 from an array of small integers.
      Bytes out;
      out.reserve(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        out.push_back(static_cast<std::uint8_t>(object_to_uint(o.via.array.ptr[i], 255, what)));
      }
      return out;
    }
    default:
      throw DecodeError(fmt::format("{}: expected bytes", what));
  }
}

bool object_to_bool(const msgpack::object& o, std::string_view what) {
  switch (o.type) {
    case msgpack::type::BOOLEAN:
      return o.via.boolean;
    case msgpack::type::NIL:
      return false;
    default:
      throw DecodeError(fmt::format("{}: expected bool", what));
  }
}

StructView::StructView(const msgpack::object& obj) : obj_(obj) {
  if (obj.type != msgpack::type::MAP) throw DecodeError("expected a msgpack map (Go struct)");
}

const msgpack::object* StructView::find(std::string_view key) const {
  for (std::uint32_t i = 0; i < obj_.via.map.size; ++i) {
    const auto& kv = obj_.via.map.ptr[i];
    const msgpack::object& k = kv.key;
    std::string_view name;
    if (k.type == msgpack::type::STR) {
      name = {k.via.str.ptr, k.via.str.size};
    } else if (k.type == msgpack::type::BIN) {
      name = {k.via.bin.ptr, k.via.bin.size};
    } else {
      continue;
    }
    if (name == key) return &kv.val;
  }
  return nullptr;
}

std::uint64_t StructView::uint(std::string_view key, std::uint64_t max) const {
  const auto* o = find(key);
  return o ? object_to_uint(*o, max, key) : 0;
}
std::int64_t StructView::integer(std::string_view key) const {
  const auto* o = find(key);
  return o ? object_to_int(*o, key) : 0;
}
bool StructView::boolean(std::string_view key) const {
  const auto* o = find(key);
  return o ? object_to_bool(*o, key) : false;
}
std::string StructView::string(std::string_view key) const {
  const auto* o = find(key);
  return o ? object_to_string(*o, key) : std::string{};
}
Bytes StructView::bytes(std::string_view key) const {
  const auto* o = find(key);
  return o ? object_to_bytes(*o, key) : Bytes{};
}

}  // namespace weft::control::gossip
