// A table entry's key as the replicated tables hold it: weft's ids (64
// lowercase hex digits: the keys of endpoints, services, networks, tasks)
// packed two digits a byte in the object itself, anything else a heap copy
// of the text. Orders as the texts do, so the tables' order and every
// digest over it stay as they were.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft::control::tables {

class SlotKey {
 public:
  explicit SlotKey(std::string_view text);
  SlotKey(SlotKey&& other) noexcept;
  SlotKey& operator=(SlotKey&& other) noexcept;
  SlotKey(const SlotKey&) = delete;
  SlotKey& operator=(const SlotKey&) = delete;
  ~SlotKey();

  static constexpr std::size_t kHexDigits = 64;
  using Buffer = std::array<char, kHexDigits>;
  using IdBytes = std::array<unsigned char, kHexDigits / 2>;  // '0'-'9' 0-9, 'a'-'f' 10-15: the texts' order
  // An id packed; nullopt when `text` is not one.
  static std::optional<IdBytes> pack_id(std::string_view text);
  static std::string_view unpack_id(const IdBytes& id, Buffer& buffer);

  // The text: written into `buffer` when packed (valid while it is), else
  // the heap copy's.
  std::string_view text(Buffer& buffer) const;
  std::string str() const;
  std::size_t size() const { return packed_ ? kHexDigits : heap_.size; }
  bool packed() const { return packed_; }
  // Bytes on the heap for it (0 when packed).
  std::size_t heap_bytes() const { return packed_ ? 0 : heap_.size; }

  // <0, 0, >0 as the texts compare.
  int compare(const SlotKey& other) const;
  int compare(std::string_view other) const;

 private:
  struct Heap {
    char* data;
    std::uint32_t size;
  };
  union {
    IdBytes nibbles_;
    Heap heap_;
  };
  bool packed_ = false;
};

}  // namespace weft::control::tables
