#!/usr/bin/env bash
# make perf: the README's Benchmarks ratio table, measured now (about 2.5
# minutes a round, PERF_ROUNDS rounds, default 3; not part of make test).
# Every ratio compares figures measured in the same round on the same
# servers; the table gives each ratio's median over the rounds and, after
# it, the lowest and highest round (two quiet runs of one round differed by
# up to 20%, so one round is not a figure):
#   locks — cycles/s of each lock against redsync and redislock, and the
#           cycle p50 in Go-client PING p50s (the round's calibration), at 1
#           client and at 32 clients on 4 keys;
#   txns  — each transaction protocol against single-db (bank workload);
#   raw   — faultline's own throughput on PING/SET (no lock) against
#           redis-benchmark at 1 and 50 clients (faultline ceiling, once:
#           it alternates its own rounds).
# Usage: scripts/perf.sh BIN OUTDIR [README]  — with README, the block
# between <!-- perf:begin --> and <!-- perf:end --> is replaced by the table.
set -euo pipefail
bin=${1:?usage: perf.sh BIN OUTDIR [README]}
out=${2:?usage: perf.sh BIN OUTDIR [README]}
readme=${3:-}
command -v jq >/dev/null || { echo "perf: jq is needed (apt-get install jq, or make deps)" >&2; exit 2; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
rounds=${PERF_ROUNDS:-3}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "perf: PERF_ROUNDS=$rounds: want a whole number of rounds ≥ 1" >&2; exit 2; }
# PERF_REUSE=1 re-renders the table from OUTDIR's last measurements.
if [[ "${PERF_REUSE:-}" != 1 ]]; then
rm -rf "$out" && mkdir -p "$out"
echo "$load" >"$out/load"
# step NAME CMD…: runs CMD with its output in OUTDIR/NAME.log; on failure
# prints the log's tail and stops.
step() {
	local name=$1; shift
	echo "perf: $name ($(cut -d' ' -f1 /proc/loadavg))" >&2
	"$@" >"$out/$name.log" 2>&1 || { echo "perf: $name failed:" >&2; tail -20 "$out/$name.log" >&2; exit 1; }
}
locks=redis-setnx,redis-fenced,redislock,redlock,redsync,pg-advisory,pg-lease
common=(--provider local --path direct --seed 1)

for r in $(seq 1 "$rounds"); do
	d=r$r
	mkdir -p "$out/$d"
	step "$d/locks-1" "$bin" run "${common[@]}" --workload counter --impl "$locks" --clients 1 --keys 1 --ttl 1s \
		--duration 3s --warmup 500ms --out "$out/$d/locks-1"
	step "$d/locks-32" "$bin" run "${common[@]}" --workload counter --impl "$locks" --clients 32 --keys 4 --ttl 1s \
		--duration 3s --warmup 500ms --out "$out/$d/locks-32"
	step "$d/txns" "$bin" run "${common[@]}" --workload bank --impl 2pc,tcc,saga,outbox --clients 8 \
		--duration 4s --warmup 500ms --out "$out/$d/txns"
done
echo "perf: ceiling" >&2
"$bin" ceiling --json --requests 20000 --rounds 3 >"$out/ceiling.json" 2>"$out/ceiling.log" ||
	{ echo "perf: ceiling failed:" >&2; cat "$out/ceiling.log" >&2; exit 1; }
fi
load=$(cat "$out/load" 2>/dev/null || echo "$load")

rounds_done=$(find "$out" -maxdepth 1 -name 'r[0-9]*' -type d | wc -l)
[[ "$rounds_done" -gt 0 ]] || { echo "perf: no rounds under $out (run without PERF_REUSE first)" >&2; exit 2; }
# Shared jq: med/lo/hi of a list of numbers (nulls dropped); fx formats a
# ratio list as "median× (lowest–highest)"; fn a plain number list as its
# rounded median.
jqlib='
  def nums: map(select(. != null));
  def med: nums | sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r2: (. * 100 | round) / 100;
  def fx: nums as $v | if ($v | length) == 0 then "–"
    elif ($v | length) == 1 then "\($v[0] | r2)×"
    else "\($v | med | r2)× (\($v | min | r2)–\($v | max | r2))" end;
  def fn: med as $m | if $m == null then "–" else ($m | round | tostring) end;
'

table() {
	echo "Measured by \`make perf\` on $(date -u -r "$out/ceiling.json" +%Y-%m-%d), $(nproc) cores, load average $load at the start; local servers, direct path, \`--seed 1\`; $rounds_done rounds: each figure is the median of the rounds, in brackets the lowest and highest round (every ratio is taken within one round, same servers)."
	echo
	echo "Locks (counter workload, 3 s each after 0.5 s warm-up; ×: cycles/s ÷ the other's; PING: cycle p50 ÷ the round's Go-client PING p50):"
	echo
	echo "| implementation | 1 client: cycles/s | × redsync | × redislock | p50 in PINGs | 32 clients/4 keys: cycles/s | × redsync | × redislock |"
	echo "|---|---|---|---|---|---|---|---|"
	jq -r -n --slurpfile a <(cat "$out"/r*/locks-1/results.json) --slurpfile b <(cat "$out"/r*/locks-32/results.json) "$jqlib"'
	  def tp($r; $n): ([$r.impls[] | select(.name == $n) | .ops.cycle.throughput][0]) // null;
	  def x($r; $n; $o): (tp($r; $n)) as $t | (tp($r; $o)) as $u | if $t == null or $u == null or $u == 0 then null else $t / $u end;
	  def pings($r; $n): ([$r.impls[] | select(.name == $n) | .ops.cycle.p50_us][0]) as $p | ($r.calibration.go_ping_p50_us // 0) as $g |
	    if $p == null or $g == 0 then null else $p / $g end;
	  def xs($rs; $n; $o): if $n == $o then "1" else [$rs[] | x(.; $n; $o)] | fx end;
	  $a[0].impls[] | .name as $n |
	  "| \($n) | \([$a[] | tp(.; $n)] | fn) | \(xs($a; $n; "redsync")) | \(xs($a; $n; "redislock")) | " +
	  "\([$a[] | pings(.; $n)] | med | if . == null then "–" else ((. * 10 | round) / 10 | tostring) end) | " +
	  "\([$b[] | tp(.; $n)] | fn) | \(xs($b; $n; "redsync")) | \(xs($b; $n; "redislock")) |"
	'
	echo
	echo "Transactions (bank workload, 8 clients, 4 s each; × single-db: same round):"
	echo
	echo "| implementation | transfers/s | throughput × single-db | p50 | p50 × single-db | p99 × single-db |"
	echo "|---|---|---|---|---|---|"
	jq -r -n --slurpfile t <(cat "$out"/r*/txns/results.json) "$jqlib"'
	  def im($r; $n): [$r.impls[] | select(.name == $n)][0];
	  $t[0].impls[] | select(.mutant != true) | .name as $n | (.baseline != null) as $hasbase |
	  [$t[] | im(.; $n)] as $xs |
	  "| \($n) | \([$xs[] | .ops.transfer.throughput] | fn) | \(if $hasbase then [$xs[] | .ratio.throughput] | fx else "1" end) | " +
	  "\([$xs[] | .ops.transfer.p50_us] | med | if . == null then "–" else "\((. / 10 | round) / 100) ms" end) | " +
	  "\(if $hasbase then [$xs[] | .ratio.p50] | fx else "1" end) | \(if $hasbase then [$xs[] | .ratio.p99] | fx else "1" end) |"
	'
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
