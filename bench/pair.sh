#!/usr/bin/env bash
# Paired A/B for a shared, noisy machine: A and B run at the same time, both pinned to
# CPU 0, each loaded by its own wrk (1 thread, 64 connections) on CPU 1; ports swap every
# round. Whatever else runs on the machine hits both alike, so the ratio B/A (req/s) and
# the CPU microseconds per request (us=A/B) hold where back-to-back runs scatter by 2x.
# Both proxies get about half a CPU each: compare ratios, never the absolute req/s.
#   UPSTREAM=127.0.0.1:19080 ROUNDS=4 bench/pair.sh 'before=node /tmp/old/bin/gatehouse.js start -c bench/proxy.yaml' \
#     'after=node bin/gatehouse.js start -c bench/proxy.yaml'
# Each command gets PORT (where to listen) and UPSTREAM; hwm= is each one's peak RSS (MiB).
# H2=1: HTTPS + HTTP/2 with h2load (-m1, as the harness's h2 scenario); the commands also get
# TLS_CERT and TLS_KEY (made once in /tmp/gatehouse-pair-tls), so use bench/proxy-tls.yaml.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$ROOT/node_modules/.bin:$PATH NODE_PATH=$ROOT/node_modules UPSTREAM=${UPSTREAM:?UPSTREAM=host:port of an upstream serving /small and /16k}
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-5}; PATHS=${PATHS:-"/small /16k"}; OUT=${OUT:-/dev/null}; PORT_A=${PORT_A:-19081}; PORT_B=${PORT_B:-19082}; TMP=$(mktemp -d)
A=$1; B=$2
SCHEME=http
if [[ "${H2:-0}" == 1 ]]; then
  SCHEME=https
  export TLS_CERT=/tmp/gatehouse-pair-tls/cert.pem TLS_KEY=/tmp/gatehouse-pair-tls/key.pem
  if [[ ! -f $TLS_KEY ]]; then
    mkdir -p /tmp/gatehouse-pair-tls
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1 -keyout "$TLS_KEY" -out "$TLS_CERT" 2> /dev/null
  fi
fi
# load DURATION URL OUT: 64 connections from CPU 1; prints "requests-done req/s" into OUT.
load() {
  if [[ $SCHEME == https ]]; then
    taskset -c 1 h2load -t1 -c64 -m1 -D "$1" "$2" > "$3.raw" 2>&1
    awk '/^requests:/ {done=$8} /finished in/ {gsub(",", "", $4); rps=$4} END {print done, rps}' "$3.raw" > "$3"
  else
    taskset -c 1 wrk -t1 -c64 -d"$1"s "$2" > "$3.raw"
    awk '/requests in/ {done=$1} /Requests\/sec/ {rps=$2} END {print done, rps}' "$3.raw" > "$3"
  fi
}
for r in $(seq $ROUNDS); do
  # swap ports every round
  if (( r % 2 )); then pa=$PORT_A; pb=$PORT_B; else pa=$PORT_B; pb=$PORT_A; fi
  PORT=$pa setsid taskset -c 0 bash -c "exec ${A#*=}" > $TMP/pa.log 2>&1 < /dev/null & ida=$!
  PORT=$pb setsid taskset -c 0 bash -c "exec ${B#*=}" > $TMP/pb.log 2>&1 < /dev/null & idb=$!
  for port in $pa $pb; do for i in $(seq 100); do [[ "$(curl -sk -o /dev/null -w '%{http_code}' $SCHEME://127.0.0.1:$port/small)" == 200 ]] && break; sleep 0.1; done; done
  line="r$r"
  for p in $PATHS; do
    load 1 $SCHEME://127.0.0.1:$pa$p $TMP/wa.txt & w1=$!
    load 1 $SCHEME://127.0.0.1:$pb$p $TMP/wb.txt; wait $w1
    ta0=$(awk '{print $14+$15}' /proc/$ida/stat); tb0=$(awk '{print $14+$15}' /proc/$idb/stat)
    load $DUR $SCHEME://127.0.0.1:$pa$p $TMP/wa.txt & wa=$!
    load $DUR $SCHEME://127.0.0.1:$pb$p $TMP/wb.txt
    wait $wa
    ta1=$(awk '{print $14+$15}' /proc/$ida/stat); tb1=$(awk '{print $14+$15}' /proc/$idb/stat)
    read -r na ra < $TMP/wa.txt; read -r nb rb < $TMP/wb.txt
    ua=$(awk -v d=$((ta1-ta0)) -v n=$na 'BEGIN {printf "%.1f", d*10000/n}'); ub=$(awk -v d=$((tb1-tb0)) -v n=$nb 'BEGIN {printf "%.1f", d*10000/n}')
    line="$line $p: ${A%%=*}=$ra ${B%%=*}=$rb ratio=$(awk -v a=$ra -v b=$rb 'BEGIN {printf "%.3f", b/a}') us=$ua/$ub"
  done
  ha=$(awk '/VmHWM/ {print $2}' /proc/$ida/status); hb=$(awk '/VmHWM/ {print $2}' /proc/$idb/status)
  line="$line hwm=$((ha/1024))/$((hb/1024))"
  kill -TERM $ida $idb; wait $ida $idb 2>/dev/null
  echo "$line" | tee -a $OUT
done
rm -rf "$TMP"
