#include "control/discovery/cluster_name_view.h"

#include <algorithm>
#include <bitset>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "control/model/packed_endpoint.h"

namespace weft::control::discovery {
namespace {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What the responder can put on the wire as a name: letters, digits, '-',
// '_' and dots between labels of 1..63, 253 in all.
bool dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

const char* proto_name(PortProtocol p) { return p == PortProtocol::udp ? "udp" : "tcp"; }

std::uint64_t hash_of(std::string_view name) { return std::hash<std::string_view>{}(name); }

// The slot a hash starts probing at, in a table of `size` slots (any size:
// the table is sized to its names, not to a power of two).
std::size_t home(std::uint64_t hash, std::size_t size) {
  return static_cast<std::size_t>((static_cast<unsigned __int128>(hash) * size) >> 64);
}

// Networks a name can have answers on: its answer count is 16 bits.
constexpr std::size_t kNetworksMax = 65535;

}  // namespace

// Compact: 76 bytes an endpoint at 10 000 services x 10 backends
// (bench_dns_index), against 805 as a map node with its own vectors per
// name. Each name is held once: its `<name>.<N>` forms are found by
// stripping a suffix that names one of the name's networks and answer the
// name's answer on that network (145 bytes an endpoint when each form was
// a name of its own). Every name's bytes in one string; one 16-byte record a name; a name with
// one answer of at most one address (an endpoint's, a VIP's, a service's
// owned names) holds it inline, others point into `answers` and
// `addresses`; an open-addressing table of 8-byte slots (hash tag, name
// number) finds a name in one probe mostly, without touching the records
// of other names; PTR entries sorted by address, found the same way.
struct ClusterNameView::Index {
  enum Flag : std::uint8_t {
    kService = 1,   // a service's name: `_<port>._<proto>.` under it is ours too
    kInline = 2,    // one answer: network in `first`, its address in `second` when kHasAddress
    kHasAddress = 4,
    // Its `<name>.<N>` forms are names of their own (below), not derived.
    kFormsStored = 8,
  };
  struct Name {
    std::uint32_t offset = 0;  // in `bytes`
    std::uint8_t size = 0;
    std::uint8_t flags = 0;
    std::uint16_t answer_count = 0;  // not kInline
    std::uint32_t first = 0;         // kInline: network; else first answer
    std::uint32_t second = 0;        // kInline: address; else its rotation counter
  };
  // What one name means on one network: addresses[first, first + count).
  struct Answer {
    std::uint32_t network = 0;
    std::uint32_t first = 0;
    std::uint32_t count = 0;
  };
  struct Srv {  // sorted by name, then as published
    std::uint32_t name = 0;
    std::uint32_t network = 0;
    std::uint32_t target = 0;  // a name: the target is `<target>.<network>`
    std::uint16_t port = 0;
  };
  struct Ptr {  // sorted by address, then as published (the first seen wins)
    std::uint32_t address = 0;
    std::uint32_t network = 0;
    std::uint32_t target = 0;  // a name: the answer is `<target>.<network>`
  };
  static constexpr std::uint32_t none = 0xffffffff;
  // A name as asked: a name of the index, or `<name>.<N>` derived from it
  // (network != none): the name's answer on network N alone.
  struct Form {
    std::uint32_t name = none;
    std::uint32_t network = none;
    bool found() const { return name != none; }
  };

  std::string bytes;
  std::vector<Name> names;
  std::vector<std::uint64_t> slots;  // 0 empty, else (name + 1) << 32 | low 32 bits of the name's hash
  std::vector<Answer> answers;
  std::vector<std::uint32_t> addresses;  // dns::Ipv4::to_uint()
  std::vector<Srv> srv;
  std::vector<Ptr> ptr;
  // An address's first entry in `ptr` (plus one; 0 empty), by open addressing.
  std::vector<std::uint32_t> ptr_slots;
  // The index is shared and immutable but for these: one per name with
  // answers out of line (the ones that can have several addresses).
  // After those, one per answer: a derived `<name>.<N>` form's.
  std::unique_ptr<std::atomic<std::uint32_t>[]> turns;
  std::uint32_t name_turns = 0;
  std::size_t ptr_addresses = 0;
  // Network number -> its (lower case) name; the names (for the builder's
  // checks) and their sizes (a lookup tries only suffixes of those sizes).
  std::vector<std::string> network_names;
  std::unordered_set<std::string, StringHash, std::equal_to<>> network_named;
  std::bitset<256> network_name_sizes;
  std::size_t forms = 0;  // derived `<name>.<N>` forms, for counts()
  // Context -> sorted network numbers it sees.
  std::unordered_map<std::string, std::vector<std::uint32_t>, StringHash, std::equal_to<>> contexts;
  std::size_t skipped = 0;

  std::string_view text(std::uint32_t name) const {
    const Name& n = names[name];
    return {bytes.data() + n.offset, n.size};
  }
  std::uint32_t find(std::string_view name, std::uint64_t hash) const {
    if (slots.empty()) return none;
    const auto tag = static_cast<std::uint32_t>(hash);
    for (std::size_t i = home(hash, slots.size());;) {
      const std::uint64_t slot = slots[i];
      if (slot == 0) return none;
      if (static_cast<std::uint32_t>(slot) == tag) {
        const auto number = static_cast<std::uint32_t>(slot >> 32) - 1;
        const Name& n = names[number];
        if (n.size == name.size() && std::memcmp(bytes.data() + n.offset, name.data(), name.size()) == 0)
          return number;
      }
      if (++i == slots.size()) i = 0;
    }
  }
  std::uint32_t find(std::string_view name) const { return find(name, hash_of(name)); }
  // The network named `network_name` that `name` has an answer on.
  std::uint32_t network_of(std::uint32_t name, std::string_view network_name) const {
    std::uint32_t out = none;
    for_each_answer(name, [&](std::uint32_t network, const std::uint32_t*, std::uint32_t) {
      if (out == none && network_names[network] == network_name) out = network;
    });
    return out;
  }
  // `<name>.<N>` for a name with an answer on a network named N, or else a
  // name of the index. The builder made every string that could be two
  // forms, or a form and a name, a name of its own (its name kFormsStored),
  // so the order of the tries does not matter: forms first, as a form asked
  // for is found by the same number of probes as a name, not after a miss.
  Form form(std::string_view name) const {
    for (auto dot = name.rfind('.'); dot != std::string_view::npos && dot != 0; dot = name.rfind('.', dot - 1)) {
      const std::size_t suffix = name.size() - dot - 1;
      if (suffix >= network_name_sizes.size()) break;
      if (!network_name_sizes.test(suffix)) continue;
      // network_of() tells a network's name: no set lookup on the way.
      const std::string_view network_name = name.substr(dot + 1);
      const std::uint32_t bare = find(name.substr(0, dot));
      if (bare == none || (names[bare].flags & kFormsStored)) continue;
      if (const std::uint32_t network = network_of(bare, network_name); network != none) return {bare, network};
    }
    return {find(name), none};
  }
  std::string qualified_text(std::uint32_t name, std::uint32_t network) const {
    std::string out(text(name));
    out += '.';
    out += network_names[network];
    return out;
  }
  static std::uint64_t address_hash(std::uint32_t address) { return address * 0x9e3779b97f4a7c15ULL; }
  // The first of an address's PTR entries, or ptr.size().
  std::size_t first_ptr(std::uint32_t address) const {
    if (ptr_slots.empty()) return ptr.size();
    for (std::size_t i = home(address_hash(address), ptr_slots.size());;) {
      const std::uint32_t slot = ptr_slots[i];
      if (slot == 0) return ptr.size();
      if (ptr[slot - 1].address == address) return slot - 1;
      if (++i == ptr_slots.size()) i = 0;
    }
  }
  // `_<port>._<proto>.<service>` for a port the service does not publish:
  // still under a name weft owns, so answered (empty), never forwarded.
  // A derived form of a service's name is a service's name on its network:
  // the builder stores the forms of a name that is a service on some of its
  // networks only.
  Form srv_parent(std::string_view name) const {
    if (!name.starts_with('_')) return {};
    const auto dot1 = name.find('.');
    if (dot1 == std::string_view::npos || dot1 + 1 >= name.size() || name[dot1 + 1] != '_') return {};
    const auto dot2 = name.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos) return {};
    const Form parent = form(name.substr(dot2 + 1));
    return parent.found() && (names[parent.name].flags & kService) ? parent : Form{};
  }
  const std::vector<std::uint32_t>* seen_by(std::string_view context) const {
    auto it = contexts.find(context);
    return it == contexts.end() ? nullptr : &it->second;
  }
  static bool sees(const std::vector<std::uint32_t>* seen, std::uint32_t network) {
    return seen && std::binary_search(seen->begin(), seen->end(), network);
  }
  // f(network, addresses, count) for each of the name's answers.
  template <typename F>
  void for_each_answer(std::uint32_t name, F&& f) const {
    const Name& n = names[name];
    if (n.flags & kInline) {
      f(n.first, &n.second, (n.flags & kHasAddress) ? 1u : 0u);
      return;
    }
    for (std::uint32_t i = n.first; i < n.first + n.answer_count; ++i)
      f(answers[i].network, addresses.data() + answers[i].first, answers[i].count);
  }
  bool visible(Form form, const std::vector<std::uint32_t>* seen) const {
    // A derived form has an answer on its network, by construction.
    if (form.network != none) return sees(seen, form.network);
    const std::uint32_t name = form.name;
    bool any = false;
    for_each_answer(name, [&](std::uint32_t network, const std::uint32_t*, std::uint32_t) {
      any = any || sees(seen, network);
    });
    return any;
  }
  // The addresses of the networks `seen`, without repeats, rotated.
  bool collect(Form form, const std::vector<std::uint32_t>* seen, std::vector<dns::Ipv4>& out) const {
    const std::uint32_t name = form.name;
    if (form.network != none) return collect_on(name, form.network, seen, out);
    bool any = false;
    for_each_answer(name, [&](std::uint32_t network, const std::uint32_t* first, std::uint32_t count) {
      if (!sees(seen, network)) return;
      const bool merge = any;  // a second network's addresses may repeat the first's
      any = true;
      for (std::uint32_t i = 0; i < count; ++i) {
        const dns::Ipv4 ip(first[i]);
        if (!merge || std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
      }
    });
    if (out.size() > 1) {
      const std::uint32_t turn = turns[names[name].second].fetch_add(1, std::memory_order_relaxed);
      std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
    }
    return any;
  }
  // `<name>.<network>`: the name's answer on that network, rotated by the
  // answer's own counter (as the form's were when it was a name).
  bool collect_on(std::uint32_t name, std::uint32_t network, const std::vector<std::uint32_t>* seen,
                  std::vector<dns::Ipv4>& out) const {
    if (!sees(seen, network)) return false;
    const Name& n = names[name];
    if (n.flags & kInline) {
      if (n.flags & kHasAddress) out.push_back(dns::Ipv4(n.second));
      return true;
    }
    for (std::uint32_t i = n.first; i < n.first + n.answer_count; ++i) {
      if (answers[i].network != network) continue;
      for (std::uint32_t j = 0; j < answers[i].count; ++j) out.push_back(dns::Ipv4(addresses[answers[i].first + j]));
      if (out.size() > 1) {
        const std::uint32_t turn = turns[name_turns + i].fetch_add(1, std::memory_order_relaxed);
        std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
      }
      break;
    }
    return true;
  }
};

// Builds an Index: names interned as they come, then every (name, network,
// address) item sorted by name and network into the compact layout. A
// name's `<name>.<N>` forms are items marked `qualified` on its own number;
// finish() drops them (lookups derive the forms) unless the name's forms
// must be names of their own (kFormsStored, see stores_forms()).
class ClusterNameView::Builder {
 public:
  explicit Builder(Index& index) : index_(index) {}

  std::uint32_t intern(std::string_view name) {
    const std::uint64_t hash = hash_of(name);
    if (const auto found = index_.find(name, hash); found != Index::none) return found;
    if ((index_.names.size() + 1) * 3 > index_.slots.size() * 2)
      rehash(std::max<std::size_t>(64, index_.slots.size() * 2));
    const auto number = static_cast<std::uint32_t>(index_.names.size());
    Index::Name n;
    n.offset = static_cast<std::uint32_t>(index_.bytes.size());
    n.size = static_cast<std::uint8_t>(name.size());  // a DNS name: 253 at most
    index_.bytes.append(name);
    index_.names.push_back(n);
    place(number, hash);
    return number;
  }
  // The name alone and `<name>.<network>`, for the network's answer.
  void address(std::uint32_t name, std::uint32_t network, std::uint32_t ip) {
    items_.push_back({name, network, ip, true, false});
    items_.push_back({name, network, ip, true, true});
  }
  // An owned name without records yet (a VIP service before its VIP, a
  // dnsrr service without active backends): NOERROR/empty, not forwarded.
  void owned(std::uint32_t name, std::uint32_t network) {
    items_.push_back({name, network, 0, false, false});
    items_.push_back({name, network, 0, false, true});
  }
  // A service's name on a network, and its `<name>.<network>`.
  void service(std::uint32_t name, std::uint32_t network) {
    index_.names[name].flags |= Index::kService;
    services_.push_back({name, network});
  }
  void srv(std::uint32_t name, std::uint32_t network, std::uint32_t target, std::uint16_t port) {
    owned(name, network);
    index_.srv.push_back({name, network, target, port});
    srv_qualified_.push_back(false);
    index_.srv.push_back({name, network, target, port});
    srv_qualified_.push_back(true);
  }
  void ptr(std::uint32_t address, std::uint32_t network, std::uint32_t target) {
    index_.ptr.push_back({address, network, target});
  }

  void finish() {
    store_forms();
    std::stable_sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
      return a.name != b.name ? a.name < b.name : a.network < b.network;
    });
    std::size_t turns = 0;
    std::unordered_set<std::uint32_t> seen;
    for (std::size_t i = 0; i < items_.size();) {
      const std::uint32_t number = items_[i].name;
      std::size_t end = i;
      while (end < items_.size() && items_[end].name == number) ++end;
      auto& n = index_.names[number];
      const auto first_answer = static_cast<std::uint32_t>(index_.answers.size());
      const auto first_address = index_.addresses.size();
      for (std::size_t j = i; j < end;) {
        const std::uint32_t network = items_[j].network;
        Index::Answer answer{network, static_cast<std::uint32_t>(index_.addresses.size()), 0};
        seen.clear();
        for (; j < end && items_[j].network == network; ++j) {
          if (!items_[j].is_address) continue;
          const std::uint32_t ip = items_[j].value;
          // Small answers (nearly all) are checked in place, large ones through the set.
          const auto from = index_.addresses.begin() + answer.first;
          const bool repeat = answer.count < 16 ? std::find(from, index_.addresses.end(), ip) != index_.addresses.end()
                                                : !seen.insert(ip).second;
          if (repeat) continue;
          index_.addresses.push_back(ip);
          if (++answer.count == 16) seen.insert(index_.addresses.begin() + answer.first, index_.addresses.end());
        }
        index_.answers.push_back(answer);
      }
      const std::size_t count = index_.answers.size() - first_answer;
      if (!(n.flags & Index::kFormsStored)) index_.forms += count;
      if (count == 1 && index_.answers.back().count <= 1) {
        // Inline: the common case (an endpoint's name, a VIP).
        const auto answer = index_.answers.back();
        n.flags |= Index::kInline;
        n.first = answer.network;
        if (answer.count == 1) {
          n.flags |= Index::kHasAddress;
          n.second = index_.addresses.back();
        }
        index_.answers.pop_back();
        index_.addresses.resize(first_address);
      } else {
        n.first = first_answer;
        n.answer_count = static_cast<std::uint16_t>(count);  // at most one a network: kNetworksMax
        n.second = static_cast<std::uint32_t>(turns++);
      }
      i = end;
    }
    std::vector<Item>().swap(items_);
    index_.name_turns = static_cast<std::uint32_t>(turns);
    index_.turns.reset(new std::atomic<std::uint32_t>[turns + index_.answers.size()]());
    std::stable_sort(index_.srv.begin(), index_.srv.end(),
                     [](const Index::Srv& a, const Index::Srv& b) { return a.name < b.name; });
    std::stable_sort(index_.ptr.begin(), index_.ptr.end(),
                     [](const Index::Ptr& a, const Index::Ptr& b) { return a.address < b.address; });
    for (std::size_t i = 0; i < index_.ptr.size(); ++i)
      if (i == 0 || index_.ptr[i].address != index_.ptr[i - 1].address) ++index_.ptr_addresses;
    index_.ptr_slots.assign(index_.ptr_addresses + index_.ptr_addresses / 2 + 1, 0);
    for (std::size_t i = 0; i < index_.ptr.size(); ++i) {
      if (i != 0 && index_.ptr[i].address == index_.ptr[i - 1].address) continue;
      std::size_t slot = home(Index::address_hash(index_.ptr[i].address), index_.ptr_slots.size());
      while (index_.ptr_slots[slot] != 0)
        if (++slot == index_.ptr_slots.size()) slot = 0;
      index_.ptr_slots[slot] = static_cast<std::uint32_t>(i + 1);
    }
    // Exact sizes: the index lives until the next publish.
    rehash(std::max<std::size_t>(8, index_.names.size() + index_.names.size() / 2 + 1));
    index_.bytes.shrink_to_fit();
    index_.names.shrink_to_fit();
    index_.answers.shrink_to_fit();
    index_.addresses.shrink_to_fit();
    index_.srv.shrink_to_fit();
    index_.ptr.shrink_to_fit();
  }

 private:
  struct Item {
    std::uint32_t name;
    std::uint32_t network;
    std::uint32_t value;  // the address
    bool is_address;
    bool qualified;  // for `<name>.<network>`
  };
  using Pair = std::pair<std::uint32_t, std::uint32_t>;  // name, network

  // Derived forms answer as the forms did when they were names of their own
  // only when no string is two things: a name whose form is another name
  // (or another name's form: networks `b` and `a.b`), a name on two
  // networks of one name, a name that is a service on some of its networks
  // only. Those names (rare) keep their forms as names, interned here, so a
  // lookup finds them first: every item and SRV entry of a form goes to it
  // in the order published, as before.
  void store_forms() {
    std::vector<Pair> on;  // (name, network) of the names as published
    for (const auto& item : items_)
      if (!item.qualified) on.emplace_back(item.name, item.network);
    std::sort(on.begin(), on.end());
    on.erase(std::unique(on.begin(), on.end()), on.end());
    std::sort(services_.begin(), services_.end());
    const auto& networks = index_.network_names;
    auto networks_of = [&](std::uint32_t name) {
      return std::equal_range(on.begin(), on.end(), Pair{name, 0},
                              [](const Pair& a, const Pair& b) { return a.first < b.first; });
    };
    const auto bare_names = static_cast<std::uint32_t>(index_.names.size());
    std::vector<bool> stored(bare_names, false);
    for (auto it = on.begin(); it != on.end();) {
      const std::uint32_t name = it->first;
      const auto [first, last] = networks_of(name);
      it = last;
      const bool service = index_.names[name].flags & Index::kService;
      for (auto p = first; p != last; ++p) {
        const std::string& network_name = networks[p->second];
        for (auto q = first; q != p; ++q)
          if (networks[q->second] == network_name) stored[name] = true;
        if (service && !std::binary_search(services_.begin(), services_.end(), *p)) stored[name] = true;
        scratch_.assign(index_.text(name));
        scratch_ += '.';
        scratch_ += network_name;
        if (const auto other = index_.find(scratch_); other != Index::none) stored[name] = stored[other] = true;
        // `<name>.<x>.<m>` is also `<name>.<x>` on a network named m.
        for (auto dot = network_name.find('.'); dot != std::string::npos; dot = network_name.find('.', dot + 1)) {
          const std::string_view suffix = std::string_view(network_name).substr(dot + 1);
          if (!index_.network_named.contains(suffix)) continue;
          scratch_.assign(index_.text(name));
          scratch_ += '.';
          scratch_.append(network_name, 0, dot);
          const auto other = index_.find(scratch_);
          if (other == Index::none) continue;
          const auto [ofirst, olast] = networks_of(other);
          for (auto o = ofirst; o != olast; ++o)
            if (networks[o->second] == suffix) stored[name] = stored[other] = true;
        }
      }
    }
    auto form_of = [&](std::uint32_t name, std::uint32_t network) {
      scratch_.assign(index_.text(name));
      scratch_ += '.';
      scratch_ += networks[network];
      const std::uint32_t form = intern(scratch_);
      if (form >= bare_names) index_.names[form].flags |= Index::kFormsStored;
      return form;
    };
    std::size_t kept = 0;
    for (auto& item : items_) {
      if (item.qualified) {
        if (!stored[item.name]) continue;
        item.name = form_of(item.name, item.network);
      }
      items_[kept++] = item;
    }
    items_.resize(kept);
    for (const auto& [name, network] : services_)
      if (stored[name]) index_.names[form_of(name, network)].flags |= Index::kService;
    kept = 0;
    for (std::size_t i = 0; i < index_.srv.size(); ++i) {
      auto entry = index_.srv[i];
      if (srv_qualified_[i]) {
        if (!stored[entry.name]) continue;
        entry.name = form_of(entry.name, entry.network);
      }
      index_.srv[kept++] = entry;
    }
    index_.srv.resize(kept);
    for (std::uint32_t name = 0; name < bare_names; ++name)
      if (stored[name]) index_.names[name].flags |= Index::kFormsStored;
  }

  void place(std::uint32_t number, std::uint64_t hash) {
    auto& slots = index_.slots;
    std::size_t i = home(hash, slots.size());
    while (slots[i] != 0)
      if (++i == slots.size()) i = 0;
    slots[i] = (std::uint64_t{number} + 1) << 32 | static_cast<std::uint32_t>(hash);
  }
  void rehash(std::size_t size) {
    std::vector<std::uint64_t>(size, 0).swap(index_.slots);
    for (std::uint32_t number = 0; number < index_.names.size(); ++number)
      place(number, hash_of(index_.text(number)));
  }

  Index& index_;
  std::vector<Item> items_;
  std::vector<Pair> services_;
  std::vector<bool> srv_qualified_;
  std::string scratch_;
};

ClusterNameView::ClusterNameView() : index_(std::make_shared<const Index>()) {}
ClusterNameView::~ClusterNameView() = default;

void ClusterNameView::publish(const Snapshot& snapshot) {
  auto index = std::make_shared<Index>();
  Builder build(*index);
  std::unordered_map<std::string, std::uint32_t> network_number;
  auto& network_names = index->network_names;
  for (const auto& n : snapshot.networks) {
    const std::string name = lower(n.name);
    // A name has one answer a network, counted in 16 bits.
    if (!dns_name(name) || network_names.size() >= kNetworksMax) {
      ++index->skipped;
      continue;
    }
    network_number.emplace(n.id, static_cast<std::uint32_t>(network_names.size()));
    network_names.push_back(name);
    index->network_name_sizes.set(name.size());  // a DNS name: 253 at most
    index->network_named.insert(name);
  }
  auto number_of = [&](const std::string& id) -> const std::uint32_t* {
    auto it = network_number.find(id);
    return it == network_number.end() ? nullptr : &it->second;
  };
  // A name and its network suffix must both stay a DNS name.
  std::string scratch;
  auto usable = [&](std::string_view name, std::uint32_t network) {
    scratch.assign(name);
    scratch += '.';
    scratch += network_names[network];
    if (dns_name(name) && dns_name(scratch)) return true;
    ++index->skipped;
    return false;
  };
  // The name alone and with its network's name as a suffix.
  auto add_address = [&](std::string_view name, std::uint32_t network, std::uint32_t ip) {
    const std::uint32_t bare = build.intern(name);
    build.address(bare, network, ip);
    return bare;
  };
  auto add_owned = [&](std::string_view name, std::uint32_t network) {
    const std::uint32_t bare = build.intern(name);
    build.owned(bare, network);
    return bare;
  };

  // Endpoints first: their PTR names win over a service's for one address.
  struct Backend {
    std::uint32_t network;
    std::uint32_t ip;
    bool named;
  };
  // Service id (viewing the snapshot's records) -> its active backends.
  std::unordered_map<std::string_view, std::vector<Backend>> backends;
  std::string name;
  auto add_endpoint = [&](const std::string& network_id, const std::string& service_id, BackendState state,
                          std::string_view endpoint_name, const std::vector<std::string>& aliases,
                          dataplane::Ipv4 ip) {
    const std::uint32_t* net = number_of(network_id);
    if (!net) return;
    if (!service_id.empty() && state == BackendState::active)
      backends[service_id].push_back(Backend{*net, ip.value, !endpoint_name.empty()});
    name = lower(endpoint_name);
    if (!name.empty() && usable(name, *net)) build.ptr(ip.value, *net, add_address(name, *net, ip.value));
    for (const auto& alias : aliases) {
      const std::string a = lower(alias);
      if (usable(a, *net)) add_address(a, *net, ip.value);
    }
  };
  for (const auto& e : snapshot.endpoints) add_endpoint(e.network_id, e.service_id, e.state, e.name, e.aliases, e.ip);
  if (snapshot.shared_endpoints)
    for (const auto& e : snapshot.shared_endpoints->endpoints)
      add_endpoint(e->network_id(), e->service_id(), e->backend_state(), e->name(), e->aliases(), e->ip());

  for (const auto& svc : snapshot.services) {
    name = lower(svc.name);
    const std::string tasks = "tasks." + name;
    const auto found = backends.find(svc.id);
    for (const auto& network_id : svc.network_ids) {
      const std::uint32_t* net = number_of(network_id);
      if (!net || !usable(tasks, *net)) continue;
      // PTR and SRV targets are `<service>.<N>`: the name with the entry's network.
      const std::uint32_t service_name = add_owned(name, *net);
      build.service(service_name, *net);
      add_owned(tasks, *net);
      if (found != backends.end())
        for (const auto& b : found->second)
          if (b.network == *net) add_address(tasks, *net, b.ip);
      if (svc.mode == EndpointMode::dnsrr) {
        if (found != backends.end())
          for (const auto& b : found->second)
            if (b.network == *net) add_address(name, *net, b.ip);
      } else {
        for (const auto& [vip_network, vip] : svc.vips) {
          if (vip_network != network_id) continue;
          add_address(name, *net, vip.value);
          build.ptr(vip.value, *net, service_name);
        }
      }
      // A backend without a name of its own answers PTR as its service.
      if (found != backends.end())
        for (const auto& b : found->second)
          if (b.network == *net && !b.named) build.ptr(b.ip, *net, service_name);
      for (const auto& port : svc.ports) {
        // Appended, not `"_" + ...`: GCC 12 warns falsely (-Wrestrict) on that here.
        std::string srv(1, '_');
        srv += std::to_string(port.port);
        srv += "._";
        srv += proto_name(port.protocol);
        srv += '.';
        srv += name;
        if (!usable(srv, *net)) continue;
        build.srv(build.intern(srv), *net, service_name, port.port);
      }
    }
  }
  build.finish();

  for (const auto& [context, network_ids] : snapshot.contexts) {
    auto& seen = index->contexts[context];
    for (const auto& id : network_ids)
      if (const std::uint32_t* net = number_of(id)) seen.push_back(*net);
    std::sort(seen.begin(), seen.end());
  }
  index_.store(std::move(index));
}

ClusterNameView::Counts ClusterNameView::counts() const {
  auto index = index_.load();
  return Counts{index->names.size() + index->forms, index->ptr_addresses, index->contexts.size(), index->skipped};
}

dns::Ownership ClusterNameView::owns(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  auto entry = index->form(name);
  if (!entry.found()) entry = index->srv_parent(name);
  if (!entry.found()) return dns::Ownership::not_ours;
  return index->visible(entry, index->seen_by(context)) ? dns::Ownership::visible : dns::Ownership::hidden;
}

std::vector<dns::Ipv4> ClusterNameView::lookup_a(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  const auto entry = index->form(name);
  std::vector<dns::Ipv4> out;
  if (entry.found()) index->collect(entry, index->seen_by(context), out);
  return out;
}

dns::Ownership ClusterNameView::resolve_a(std::string_view context, std::string_view name,
                                          std::vector<dns::Ipv4>& out) const {
  out.clear();
  auto index = index_.load();
  const auto entry = index->form(name);
  if (!entry.found()) return index->srv_parent(name).found() ? owns(context, name) : dns::Ownership::not_ours;
  return index->collect(entry, index->seen_by(context), out) ? dns::Ownership::visible : dns::Ownership::hidden;
}

std::optional<std::string> ClusterNameView::lookup_ptr(std::string_view context, dns::Ipv4 address) const {
  auto index = index_.load();
  const std::uint32_t key = address.to_uint();
  const auto* seen = index->seen_by(context);
  for (std::size_t i = index->first_ptr(key); i < index->ptr.size() && index->ptr[i].address == key; ++i)
    if (Index::sees(seen, index->ptr[i].network)) return index->qualified_text(index->ptr[i].target, index->ptr[i].network);
  return std::nullopt;
}

std::vector<dns::SrvRecord> ClusterNameView::lookup_srv(std::string_view context, std::string_view name) const {
  auto index = index_.load();
  const auto entry = index->form(name);
  if (!entry.found()) return {};
  const auto* seen = index->seen_by(context);
  std::vector<dns::SrvRecord> out;
  auto it = std::lower_bound(index->srv.begin(), index->srv.end(), entry.name,
                             [](const Index::Srv& s, std::uint32_t n) { return s.name < n; });
  for (; it != index->srv.end() && it->name == entry.name; ++it)
    if ((entry.network == Index::none || it->network == entry.network) && Index::sees(seen, it->network))
      out.push_back(dns::SrvRecord{0, 0, it->port, index->qualified_text(it->target, it->network)});
  return out;
}

}  // namespace weft::control::discovery
