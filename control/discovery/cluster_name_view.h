// The cluster's names for the embedded DNS: a dns::NameView over the last
// published Snapshot, compiled into an immutable index and swapped whole.
// The DNS thread reads while the control plane publishes: every call takes
// the index current at that moment, so once publish() returns no answer
// comes from an entry the new snapshot no longer has.
//
// Names (lower case), per network N the context sees:
//   <service>, <service>.<N>        vip: the VIP on N; dnsrr: N's active backends
//   tasks.<service>[.<N>]           N's active backends (draining ones never)
//   <endpoint>[.<N>], <alias>[.<N>] the endpoint's address
//   _<port>._<proto>.<service>[.<N>] SRV to <service>.<N> for a published port
//   PTR of endpoint, backend and VIP addresses: <endpoint>.<N> or <service>.<N>
// A name that exists only on networks the context does not see is hidden
// (NXDOMAIN); the responder answers any other type of an owned name
// NOERROR/empty. Answers with several addresses rotate on every lookup.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

#include "control/discovery/snapshot.h"
#include "dns/name_view.h"

namespace weft::control::discovery {

class ClusterNameView final : public dns::NameView {
 public:
  ClusterNameView();
  ~ClusterNameView() override;

  // Compiles the snapshot (on the caller's thread) and swaps it in.
  void publish(const Snapshot& snapshot);

  struct Counts {
    std::size_t names = 0;
    std::size_t addresses = 0;  // PTR keys
    std::size_t contexts = 0;
    std::size_t skipped = 0;    // names that are no DNS names (bad characters, too long)
  };
  Counts counts() const;

  dns::Ownership owns(std::string_view context, std::string_view name) const override;
  std::vector<dns::Ipv4> lookup_a(std::string_view context, std::string_view name) const override;
  std::optional<std::string> lookup_ptr(std::string_view context, dns::Ipv4 address) const override;
  std::vector<dns::SrvRecord> lookup_srv(std::string_view context, std::string_view name) const override;
  // owns() and lookup_a() on one load of the index, into the caller's vector.
  dns::Ownership resolve_a(std::string_view context, std::string_view name,
                           std::vector<dns::Ipv4>& out) const override;


 private:
  struct Index;
  class Builder;
  std::atomic<std::shared_ptr<const Index>> index_;
};

}  // namespace weft::control::discovery
