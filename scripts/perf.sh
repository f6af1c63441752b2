#!/usr/bin/env bash
# make perf: the README's Benchmarks ratio table, measured now (about 3-4
# minutes; not part of make test). Every ratio compares figures measured in
# the same run on the same servers:
#   locks — cycles/s of each lock against redsync and redislock, and the
#           cycle p50 in Go-client PING p50s (the run's calibration), at 1
#           client and at 32 clients on 4 keys;
#   txns  — each transaction protocol against single-db (bank workload);
#   raw   — faultline's own throughput on PING/SET (no lock) against
#           redis-benchmark at 1 and 50 clients (faultline ceiling).
# Usage: scripts/perf.sh BIN OUTDIR [README]  — with README, the block
# between <!-- perf:begin --> and <!-- perf:end --> is replaced by the table.
set -euo pipefail
bin=${1:?usage: perf.sh BIN OUTDIR [README]}
out=${2:?usage: perf.sh BIN OUTDIR [README]}
readme=${3:-}
command -v jq >/dev/null || { echo "perf: jq is needed (apt-get install jq, or make deps)" >&2; exit 2; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
# PERF_REUSE=1 re-renders the table from OUTDIR's last measurements.
if [[ "${PERF_REUSE:-}" != 1 ]]; then
rm -rf "$out" && mkdir -p "$out"
echo "$load" >"$out/load"
# step NAME CMD…: runs CMD with its output in OUTDIR/NAME.log; on failure
# prints the log's tail and stops.
step() {
	local name=$1; shift
	echo "perf: $name" >&2
	"$@" >"$out/$name.log" 2>&1 || { echo "perf: $name failed:" >&2; tail -20 "$out/$name.log" >&2; exit 1; }
}
locks=redis-setnx,redis-fenced,redislock,redlock,redsync,pg-advisory,pg-lease
common=(--provider local --path direct --seed 1)

step locks-1 "$bin" run "${common[@]}" --workload counter --impl "$locks" --clients 1 --keys 1 --ttl 1s \
	--duration 3s --warmup 500ms --out "$out/locks-1"
step locks-32 "$bin" run "${common[@]}" --workload counter --impl "$locks" --clients 32 --keys 4 --ttl 1s \
	--duration 3s --warmup 500ms --out "$out/locks-32"
step txns "$bin" run "${common[@]}" --workload bank --impl 2pc,tcc,saga,outbox --clients 8 \
	--duration 4s --warmup 500ms --out "$out/txns"
echo "perf: ceiling" >&2
"$bin" ceiling --json --requests 20000 --rounds 3 >"$out/ceiling.json" 2>"$out/ceiling.log" ||
	{ echo "perf: ceiling failed:" >&2; cat "$out/ceiling.log" >&2; exit 1; }
fi
load=$(cat "$out/load" 2>/dev/null || echo "$load")

table() {
	echo "Measured by \`make perf\` on $(date -u -r "$out/ceiling.json" +%Y-%m-%d), $(nproc) cores, load average $load at the start; local servers, direct path, \`--seed 1\`."
	echo
	echo "Locks (counter workload, 3 s each after 0.5 s warm-up; ×: cycles/s ÷ the other's, same run; PING: cycle p50 ÷ the run's Go-client PING p50):"
	echo
	echo "| implementation | 1 client: cycles/s | × redsync | × redislock | p50 in PINGs | 32 clients/4 keys: cycles/s | × redsync | × redislock |"
	echo "|---|---|---|---|---|---|---|---|"
	jq -r -s '
	  def tp($r; $n): ($r.impls[] | select(.name == $n) | .ops.cycle.throughput) // 0;
	  def x($a; $b): if $b > 0 then "\(($a / $b * 100 | round) / 100)×" else "–" end;
	  .[0] as $a | .[1] as $b |
	  $a.impls[] | .name as $n |
	  "| \($n) | \(.ops.cycle.throughput | round) | \(x(.ops.cycle.throughput; tp($a; "redsync"))) | \(x(.ops.cycle.throughput; tp($a; "redislock"))) | " +
	  "\(if ($a.calibration.go_ping_p50_us // 0) > 0 then ((.ops.cycle.p50_us / $a.calibration.go_ping_p50_us * 10 | round) / 10 | tostring) else "–" end) | " +
	  "\(tp($b; $n) | round) | \(x(tp($b; $n); tp($b; "redsync"))) | \(x(tp($b; $n); tp($b; "redislock"))) |"
	' "$out/locks-1/results.json" "$out/locks-32/results.json"
	echo
	echo "Transactions (bank workload, 8 clients, 4 s each; × single-db: same run):"
	echo
	echo "| implementation | transfers/s | throughput × single-db | p50 | p50 × single-db | p99 × single-db |"
	echo "|---|---|---|---|---|---|"
	jq -r '
	  def r($v): if $v == null then "–" else "\(($v * 100 | round) / 100)×" end;
	  .impls[] | select(.mutant != true) |
	  "| \(.name) | \(.ops.transfer.throughput | round) | \(if .baseline then r(.ratio.throughput) else "1" end) | \((.ops.transfer.p50_us / 10 | round) / 100) ms | " +
	  "\(if .baseline then r(.ratio.p50) else "1" end) | \(if .baseline then r(.ratio.p99) else "1" end) |"
	' "$out/txns/results.json"
	echo
	echo "Harness ceiling (\`faultline ceiling\`: raw commands, no lock; each faultline request logged to a compressed history and timed, as in a run, one go-redis connection per client speaking RESP2 as redis-benchmark does; io: how faultline's connections wait for replies, as in a run with as many clients — blocking in the kernel at 1 client, Go's netpoller above; go-redis alone: the same loop unrecorded; best of 3 alternating rounds of 20,000 requests per tool):"
	echo
	echo "| command | clients | io | faultline req/s | redis-benchmark req/s | faultline ÷ redis-benchmark | go-redis alone req/s | history bytes/request |"
	echo "|---|---|---|---|---|---|---|---|"
	jq -r '.[] | "| \(.op | ascii_upcase) | \(.clients) | \(.io // "netpoll") | \(.faultline_rps | round) | \(.redis_benchmark_rps | round) | \((.ratio * 100 | round) / 100) | \(.go_redis_rps | round) | \((.history_bytes_per_op * 10 | round) / 10) |"' "$out/ceiling.json"
}

table | tee "$out/table.md"
if [[ -n "$readme" ]]; then
	grep -q '<!-- perf:begin -->' "$readme" || { echo "perf: no <!-- perf:begin --> marker in $readme" >&2; exit 2; }
	awk -v table="$out/table.md" '
	  /<!-- perf:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
	  /<!-- perf:end -->/ { skip = 0 }
	  !skip
	' "$readme" >"$readme.tmp" && mv "$readme.tmp" "$readme"
	echo "perf: $readme updated" >&2
fi
