// One node of weft's replicated tables over a real memberlist on 127.0.0.1
// (ReplicatedTables + TableGossip + SerfCompat + Memberlist), for tests that
// drive several of them on one io_context. Probes are an hour apart:
// memberlist staggers its first tick randomly within the interval and
// piggybacks queued broadcasts on probes, both out of a test's way.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/cluster/table_gossip.h"
#include "control/gossip/keyring.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"
#include "control/tables/replicated_tables.h"

namespace weft::testing {

struct TableGossipTimings {
  std::chrono::milliseconds gossip_interval;
  std::chrono::milliseconds push_pull_interval;
  std::size_t push_fanout;
  std::chrono::milliseconds tcp_timeout{1000};
  std::size_t max_stream_size = 0;  // 0: memberlist's default
};

inline control::gossip::Config table_gossip_config(const std::string& name, const TableGossipTimings& t) {
  control::gossip::Config c;
  c.name = name;
  c.bind_addr = "127.0.0.1";
  c.bind_port = 0;
  c.probe_interval = std::chrono::hours(1);
  c.gossip_interval = t.gossip_interval;
  c.push_pull_interval = t.push_pull_interval;
  c.tcp_timeout = t.tcp_timeout;
  if (t.max_stream_size) c.max_stream_size = t.max_stream_size;
  c.keyring = std::make_shared<control::gossip::Keyring>(control::gossip::Bytes(32, 0x42));
  return c;
}

// Its tables have one node-scoped table, "endpoints".
struct TableGossipNode {
  TableGossipNode(boost::asio::io_context& io, const std::string& name, const TableGossipTimings& t)
      : tables(name, {"endpoints"}),
        table_gossip(io,
                     control::cluster::TableGossipConfig{
                         .node_name = name, .node_scoped_tables = {"endpoints"}, .push_fanout = t.push_fanout},
                     tables),
        serf(io, name, {{"role", "weft"}}, &table_gossip, &table_gossip),
        ml(io, table_gossip_config(name, t), &serf, &serf) {
    serf.attach(&ml);
    table_gossip.attach(&ml);
    ml.start();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(ml.bound_port()); }

  control::tables::ReplicatedTables tables;
  control::cluster::TableGossip table_gossip;
  control::gossip::SerfCompat serf;
  control::gossip::Memberlist ml;  // last: destroyed first, before its delegates
};

}  // namespace weft::testing
