#include "control/tables/slot_key.h"

#include <cstring>
#include <new>
#include <limits>
#include <stdexcept>
#include <utility>

namespace weft::control::tables {

namespace {

// 0-15 for a lowercase hex digit, -1 otherwise (upper case would not come
// back as it was).
int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool lower_hex_id(std::string_view text) {
  if (text.size() != SlotKey::kHexDigits) return false;
  for (const char c : text)
    if (nibble(c) < 0) return false;
  return true;
}

int sign(int v) { return (v > 0) - (v < 0); }

}  // namespace

std::optional<SlotKey::IdBytes> SlotKey::pack_id(std::string_view text) {
  if (!lower_hex_id(text)) return std::nullopt;
  IdBytes id;
  for (std::size_t i = 0; i < id.size(); ++i)
    id[i] = static_cast<unsigned char>(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
  return id;
}

std::string_view SlotKey::unpack_id(const IdBytes& id, Buffer& buffer) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < id.size(); ++i) {
    buffer[2 * i] = kDigits[id[i] >> 4];
    buffer[2 * i + 1] = kDigits[id[i] & 0xf];
  }
  return {buffer.data(), buffer.size()};
}

SlotKey::SlotKey(std::string_view text) {
  if (auto id = pack_id(text)) {
    packed_ = true;
    nibbles_ = *id;
    return;
  }
  if (text.size() > std::numeric_limits<std::uint32_t>::max()) throw std::length_error("table key over 4 GiB");
  heap_ = {text.empty() ? nullptr : new char[text.size()], static_cast<std::uint32_t>(text.size())};
  if (!text.empty()) std::memcpy(heap_.data, text.data(), text.size());
}

SlotKey::SlotKey(SlotKey&& other) noexcept : packed_(other.packed_) {
  if (packed_) {
    nibbles_ = other.nibbles_;
  } else {
    heap_ = std::exchange(other.heap_, Heap{nullptr, 0});
  }
}

SlotKey& SlotKey::operator=(SlotKey&& other) noexcept {
  if (this != &other) {
    this->~SlotKey();
    new (this) SlotKey(std::move(other));
  }
  return *this;
}

SlotKey::~SlotKey() {
  if (!packed_) delete[] heap_.data;
}

std::string_view SlotKey::text(Buffer& buffer) const {
  if (!packed_) return {heap_.data, heap_.size};
  return unpack_id(nibbles_, buffer);
}

std::string SlotKey::str() const {
  Buffer buffer;
  return std::string(text(buffer));
}

int SlotKey::compare(const SlotKey& other) const {
  if (packed_ && other.packed_) return sign(std::memcmp(nibbles_.data(), other.nibbles_.data(), nibbles_.size()));
  Buffer buffer;
  return compare(other.text(buffer));
}

int SlotKey::compare(std::string_view other) const {
  Buffer buffer;
  return sign(text(buffer).compare(other));
}

}  // namespace weft::control::tables
