#!/usr/bin/env bash
# service_vip.sh on the nftables fallback (weftd --lb-backend nftables).
WEFT_LB_BACKEND=nftables exec bash "$(dirname "${BASH_SOURCE[0]}")/service_vip.sh"
