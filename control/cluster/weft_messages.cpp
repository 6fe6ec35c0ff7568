#include "control/cluster/weft_messages.h"

#include <fmt/format.h>

#include <msgpack.hpp>
#include <type_traits>
#include <utility>

#include "control/gossip/serf_compat.h"

namespace weft::control::cluster {
namespace {

using gossip::DecodeError;

// Packs a tuple of fields as one msgpack array.
template <class Packer, class Tuple>
void pack_fields(Packer& pk, const Tuple& fields) {
  pk.pack_array(static_cast<std::uint32_t>(std::tuple_size_v<Tuple>));
  std::apply([&pk](const auto&... field) { (pk.pack(field), ...); }, fields);
}

// Reads one msgpack array into a tuple of references to fields; the array
// must have exactly as many elements (msgpack-cxx's own converters would
// leave missing fields at their defaults).
template <class Tuple>
void convert_fields(const msgpack::object& o, Tuple fields) {
  constexpr auto n = std::tuple_size_v<Tuple>;
  if (o.type != msgpack::type::ARRAY || o.via.array.size != n) throw msgpack::type_error();
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (o.via.array.ptr[I].convert(std::get<I>(fields)), ...);
  }(std::make_index_sequence<n>{});
}

auto entry_fields(const tables::TableEntry& e) { return std::tie(e.table, e.key, e.owner, e.lamport, e.deleted, e.value); }
auto entry_fields(tables::TableEntry& e) { return std::tie(e.table, e.key, e.owner, e.lamport, e.deleted, e.value); }
auto bucket_fields(const tables::ReplicatedTables::BucketDigest& d) { return std::tie(d.digest, d.entries, d.bytes); }
auto bucket_fields(tables::ReplicatedTables::BucketDigest& d) { return std::tie(d.digest, d.entries, d.bytes); }

}  // namespace
}  // namespace weft::control::cluster

// One table entry: a fixed array of its six fields, compact and order-stable.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {
template <>
struct pack<weft::control::tables::TableEntry> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& pk, const weft::control::tables::TableEntry& e) const {
    weft::control::cluster::pack_fields(pk, weft::control::cluster::entry_fields(e));
    return pk;
  }
};
template <>
struct convert<weft::control::tables::TableEntry> {
  const msgpack::object& operator()(const msgpack::object& o, weft::control::tables::TableEntry& e) const {
    weft::control::cluster::convert_fields(o, weft::control::cluster::entry_fields(e));
    return o;
  }
};
template <>
struct pack<weft::control::tables::ReplicatedTables::BucketDigest> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& pk, const weft::control::tables::ReplicatedTables::BucketDigest& d) const {
    weft::control::cluster::pack_fields(pk, weft::control::cluster::bucket_fields(d));
    return pk;
  }
};
template <>
struct convert<weft::control::tables::ReplicatedTables::BucketDigest> {
  const msgpack::object& operator()(const msgpack::object& o, weft::control::tables::ReplicatedTables::BucketDigest& d) const {
    weft::control::cluster::convert_fields(o, weft::control::cluster::bucket_fields(d));
    return o;
  }
};
}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

namespace weft::control::cluster {
namespace {

constexpr bool type_bytes_unique() {
  std::uint8_t types[std::variant_size_v<WeftMessage>] = {};
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((types[I] = static_cast<std::uint8_t>(std::variant_alternative_t<I, WeftMessage>::kType)), ...);
  }(std::make_index_sequence<std::variant_size_v<WeftMessage>>{});
  for (std::size_t i = 0; i < std::size(types); ++i)
    for (std::size_t j = i + 1; j < std::size(types); ++j)
      if (types[i] == types[j]) return false;
  return true;
}
static_assert(type_bytes_unique(), "two weft messages share a type byte");

struct ByteSink {
  gossip::Bytes& out;
  void write(const char* p, std::size_t n) { out.insert(out.end(), p, p + n); }
};
struct StringSink {
  std::string& out;
  void write(const char* p, std::size_t n) { out.append(p, n); }
};

template <class T>
void pack_body(msgpack::packer<ByteSink>& pk, const T& m) {
  if constexpr (std::is_same_v<T, TableEntries>)
    pk.pack(m.entries);  // the bare array: the snapshot files' format
  else
    pack_fields(pk, T::fields(m));
}

template <class T>
void read_body(const msgpack::object& o, T& m) {
  if constexpr (std::is_same_v<T, TableEntries>)
    o.convert(m.entries);
  else
    convert_fields(o, T::fields(m));
}

template <std::size_t I = 0>
WeftMessage decode_body(std::uint8_t type, const msgpack::object& o) {
  if constexpr (I == std::variant_size_v<WeftMessage>) {
    throw DecodeError(fmt::format("unknown weft message type {:#04x}", type));
  } else {
    using T = std::variant_alternative_t<I, WeftMessage>;
    if (type != static_cast<std::uint8_t>(T::kType)) return decode_body<I + 1>(type, o);
    T m;
    try {
      read_body(o, m);
    } catch (const std::exception& e) {
      throw DecodeError(fmt::format("weft message {:#04x} has the wrong shape: {}", type, e.what()));
    }
    return m;
  }
}

void encode_into(gossip::Bytes& out, const WeftMessage& message) {
  std::visit(
      [&out](const auto& m) {
        out.push_back(static_cast<std::uint8_t>(std::decay_t<decltype(m)>::kType));
        ByteSink sink{out};
        msgpack::packer<ByteSink> pk(sink);
        pack_body(pk, m);
      },
      message);
}

}  // namespace

gossip::Bytes encode(const WeftMessage& message) {
  gossip::Bytes out;
  encode_into(out, message);
  return out;
}

gossip::Bytes encode_direct(const WeftMessage& message) {
  gossip::Bytes out{gossip::kWeftUserMessageType};
  encode_into(out, message);
  return out;
}

WeftMessage decode(gossip::ByteView bytes) {
  if (bytes.empty()) throw DecodeError("empty weft message");
  const std::uint8_t type = bytes[0];
  const auto* body = reinterpret_cast<const char*>(bytes.data() + 1);
  const std::size_t size = bytes.size() - 1;
  // Every element takes at least a byte: no container may claim more.
  const msgpack::unpack_limit limits(size, size, size, size, size, /*depth=*/8);
  msgpack::object_handle handle;
  std::size_t offset = 0;
  try {
    handle = msgpack::unpack(body, size, offset, nullptr, nullptr, limits);
  } catch (const std::exception& e) {
    throw DecodeError(fmt::format("malformed weft message {:#04x}: {}", type, e.what()));
  }
  if (offset != size) throw DecodeError(fmt::format("weft message {:#04x} has {} trailing bytes", type, size - offset));
  return decode_body(type, handle.get());
}

namespace {
std::size_t entry_size_bound(std::size_t table, std::size_t key, std::size_t owner, std::size_t value) {
  // An array header, four strings (header up to 5 bytes each), a uint64, a bool.
  return 1 + (table + 5) + (key + 5) + (owner + 5) + (value + 5) + 9 + 1;
}
}  // namespace

std::size_t encoded_size_bound(const tables::TableEntry& e) {
  return entry_size_bound(e.table.size(), e.key.size(), e.owner.size(), e.value.size());
}

std::size_t encoded_size_bound(const tables::EntryView& e) {
  return entry_size_bound(e.table.size(), e.key.size(), e.owner.size(), e.value_size());
}

std::string encode_snapshot(const std::vector<tables::TableEntry>& entries) {
  // As encode(TableEntries{entries}), without copying a large table first.
  std::string out(1, static_cast<char>(TableEntries::kType));
  StringSink sink{out};
  msgpack::packer<StringSink> pk(sink);
  pk.pack(entries);
  return out;
}

std::string encode_snapshot(const tables::ReplicatedTables& tables) {
  std::string out;
  std::size_t bound = 1 + 5;  // (the type and the array's header)
  tables.for_each([&](const tables::EntryView& e) { bound += encoded_size_bound(e); });
  out.reserve(bound);  // (no reallocation: the copy would double the peak)
  encode_snapshot(tables, [&out](std::string_view piece) { out.append(piece); });
  return out;
}

void encode_snapshot(const tables::ReplicatedTables& tables, const std::function<void(std::string_view)>& write) {
  constexpr std::size_t kPiece = 1 << 20;
  std::string buffer(1, static_cast<char>(TableEntries::kType));
  buffer.reserve(kPiece + 4096);
  StringSink sink{buffer};
  msgpack::packer<StringSink> pk(sink);
  pk.pack_array(static_cast<std::uint32_t>(tables.size()));
  tables.for_each([&](const tables::EntryView& e) {
    pk.pack(e.entry());
    if (buffer.size() >= kPiece) {
      write(buffer);
      buffer.clear();
    }
  });
  if (!buffer.empty()) write(buffer);
}

std::vector<tables::TableEntry> decode_snapshot(std::string_view bytes) {
  auto message = decode(gossip::ByteView(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  auto* entries = std::get_if<TableEntries>(&message);
  if (!entries) throw DecodeError("not a table snapshot");
  return std::move(entries->entries);
}

}  // namespace weft::control::cluster
