#!/usr/bin/env bash
# Bounded libFuzzer run over the local API's request handling (routing, body
# parsing, name validation) against in-memory fakes, no kernel: builds the
# CMake target with clang (it links weft_api, in a build dir of its own, see
# scripts/lib/fuzz_build.sh) and fuzzes for a fixed time. A crash, a sanitizer report
# or a broken invariant (malformed response, unvalidated input reaching a
# service) fails the test.
set -euo pipefail
src=${WEFT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${WEFT_FUZZ_SECONDS:-45}
work=$(mktemp -d /tmp/weft-fuzz-api.XXXXXX)
trap 'rm -rf "$work"' EXIT
source "$src/scripts/lib/fuzz_build.sh"
fuzzer=$(fuzz_build api_request_fuzz)

# Seeds: one request per route, so the run starts from bodies that parse.
# The first byte picks the method: 0 GET, 1 POST, 2 DELETE, 3 HEAD.
mkdir -p "$work/corpus"
seed() { printf "$1" >"$work/corpus/seed$((++n))"; }
n=0
seed '\x01/networks/create\n{"Name": "net-a", "Driver": "overlay", "Attachable": true, "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.1"}]}}'
seed '\x00/v1.41/networks'
seed '\x00/networks/web'
seed '\x02/networks/web'
seed '\x01/networks/web/connect\n{"Container": "c1", "Name": "api.web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.0.1.7"}}}'
seed '\x01/networks/web/connect\n{"Container": "/proc/42/ns/net"}'
seed '\x01/networks/web/disconnect\n{"Container": "c1", "Force": true}'
seed '\x00/endpoints'
seed '\x01/swarm/init\n{"AdvertiseAddr": "192.0.2.11:7946"}'
seed '\x01/swarm/join\n{"JoinToken": "WEFT-1-abc-0123", "RemoteAddrs": ["192.0.2.11:7946"]}'
seed '\x00/nodes/node1'
seed '\x03/_ping'
seed '\x00/v1.41/info'
seed '\x00/v1.41/nodes'
seed '\x00/v1.41/swarm'
seed '\x00/v1.99/version'
seed '\x00/v1.41/containers/json'
seed '\x01/v1.41/swarm/init\n{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathPort":0,"Spec":{"Labels":null}}'

fuzz_run "$fuzzer" "$work" "$seconds" -timeout=10
echo "fuzzed API request handling for ${seconds}s without a crash"
