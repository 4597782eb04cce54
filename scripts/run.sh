#!/usr/bin/env bash
# run.sh starts a small pod on loopback, no root or services needed: sample
# containers on [::1], razor answering the routes of examples/pods.yaml, and
# an edge proxying the example hosts to the containers. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN_DIR:-$(mktemp -d /tmp/v6pod-run.XXXXXX)}
DNS=${DNS_ADDR:-127.0.0.1:5353}
HTTP_PORT=${HTTP_PORT:-8080}

cp examples/pods.yaml "$RUN/pods.yaml"   # ops may write to it; keep the example clean

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; echo "run: stopped; logs in $RUN"; }
trap cleanup EXIT INT TERM

bin/appserver --listen '[::1]:9081,[::1]:9082,[::1]:9083' >"$RUN/apps.log" 2>&1 & pids+=($!)
bin/razor --listen "$DNS" --metrics 127.0.0.1:9153 --store "file://$RUN/pods.yaml" \
  --zone v6pod.test=examples/v6pod.test.zone --zone customer.test=examples/customer.test.zone \
  >"$RUN/razor.log" 2>&1 & pids+=($!)
bin/edge --listen "127.0.0.1:$HTTP_PORT,[::1]:$HTTP_PORT" --metrics '[::1]:9100' --node local-01 \
  --source "file://$RUN/pods.yaml" >"$RUN/edge.log" 2>&1 & pids+=($!)

for i in $(seq 50); do
  if dig +short +time=1 +tries=1 @"${DNS%:*}" -p "${DNS##*:}" ns1.v6pod.test A >/dev/null 2>&1 &&
     curl -sf -o /dev/null "http://[::1]:9100/readyz"; then break; fi
  sleep 0.2
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { tail -n 20 "$RUN"/*.log; echo "run: a process died"; exit 1; }; done

cat <<MSG

v6pod is running (store: $RUN/pods.yaml, logs: $RUN/*.log). Try:

  dig @${DNS%:*} -p ${DNS##*:} www.customer.test A        # CNAME → route → 4 of the pool's addresses
  dig @${DNS%:*} -p ${DNS##*:} www.customer.test AAAA
  dig @${DNS%:*} -p ${DNS##*:} +tcp shop.shard.v6pod.test AAAA   # 2 answers, always from this label's 4-address shard
  curl -s http://www.shop.test:$HTTP_PORT/ --resolve "www.shop.test:$HTTP_PORT:\$(dig +short @${DNS%:*} -p ${DNS##*:} local.customer.test A | tail -1)"
  curl -s -H 'Host: a.blog.test' 'http://[::1]:$HTTP_PORT/'
  bin/ops --store file://$RUN/pods.yaml pool drain edge-doc-01 192.0.2.1 # razor stops handing it out
  curl -s http://127.0.0.1:9153/metrics | grep ^razor_

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
