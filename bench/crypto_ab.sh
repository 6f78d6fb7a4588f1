#!/usr/bin/env bash
# bench/crypto_ab.sh: what encrypting every link costs, as an A/B of two
# builds of the same tree (docs/benchmarks.md, "Secure links: the cost of
# encryption").
#
#   A  build-bench        Release, MRD_BENCH=ON: links sealed with
#                         ChaCha20-Poly1305, as shipped
#   B  build-bench-plain  the same plus MRD_BENCH_PLAINTEXT=ON: frames are
#                         copied instead of sealed (same framing, same
#                         handshakes, zero tag), link version 0xB0, and its
#                         meridiand starts only with MRD_BENCH_PLAINTEXT_OK=1
#
# Each build runs its own meridian_bench with its own meridiand and
# meridianctl (a plaintext client cannot talk to an encrypted node). For
# every round and every family, A and B run back to back, once each, and
# the build that goes first alternates between rounds (A B, B A, A B, ...),
# so the machine's noise and any drift over the session hit both alike.
# Each run is `meridian_bench --runs 1 --only FAMILY --csv FILE`, a fresh
# node or cluster per run; the table gives the median over the rounds of
# each figure and the cost of encryption:
#   throughput (events/s):        (plain - encrypted) / plain
#   latency (ms) and link bytes:  (encrypted - plain) / plain
# so a positive cost is always what encryption takes away.
#
# Usage: bench/crypto_ab.sh [--runs N] [--families "F ..."] [--full]
#                           [--no-build] [--dir DIR] [--out DIR]
#   --runs N       rounds (default 5)
#   --families     meridian_bench families, in the order run (default
#                  "lone inflight batch repl": the append and replication
#                  benchmarks); any of lone inflight batch state scan repl
#                  regions
#   --full         full sizes (default --quick sizes: a full round of these
#                  families takes several minutes per build)
#   --no-build     use the two trees as they are
#   --dir DIR      where the nodes keep their data (default $TMPDIR or /tmp)
#   --out DIR      keep every run's CSV and log there (default a temp dir,
#                  removed at the end)
# The last lines are the table, tab-separated after a header line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

runs=5
families="lone inflight batch repl"
quick=--quick
build=1
data_dir=${TMPDIR:-/tmp}
out=

usage() {
    sed -n '/^# Usage:/,/^# The last lines/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while (($# > 0)); do
    case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --families) families=${2:?}; shift 2 ;;
    --full) quick=; shift ;;
    --no-build) build=0; shift ;;
    --dir) data_dir=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) usage ;;
    esac
done
if [[ ! $runs =~ ^[0-9]+$ ]] || ((runs < 1)); then
    echo "crypto_ab.sh: --runs must be a number >= 1" >&2
    exit 2
fi
for f in $families; do
    case $f in
    lone | inflight | batch | state | scan | repl | regions) ;;
    *) echo "crypto_ab.sh: no family $f" >&2; exit 2 ;;
    esac
done

enc_dir="build-bench"
plain_dir="build-bench-plain"

# ----------------------------------------------------------------- build --
build_tree() {
    local dir=$1 plain=$2
    echo "crypto_ab.sh: building $dir (MRD_BENCH_PLAINTEXT=$plain)" >&2
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMRD_BENCH=ON \
        -DMRD_BENCH_PLAINTEXT="$plain" >"$dir.cmake.log" 2>&1 || {
        tail -n 30 "$dir.cmake.log" >&2
        exit 1
    }
    cmake --build "$dir" -j "$(nproc)" \
        --target meridiand meridianctl meridian_bench >"$dir.build.log" 2>&1 || {
        grep -E 'error' "$dir.build.log" | head -n 30 >&2 || true
        tail -n 20 "$dir.build.log" >&2
        exit 1
    }
    rm -f "$dir.cmake.log" "$dir.build.log"
}

if ((build)); then
    build_tree "$enc_dir" OFF
    build_tree "$plain_dir" ON
fi
for d in "$enc_dir" "$plain_dir"; do
    if [[ ! -x $d/meridian_bench || ! -x $d/meridiand ]]; then
        echo "crypto_ab.sh: $d has no meridian_bench or meridiand" >&2
        exit 1
    fi
done
# Each tree must be what its column says (with --no-build too).
if ! grep -q '^MRD_BENCH_PLAINTEXT:BOOL=ON' "$plain_dir/CMakeCache.txt" \
    || grep -q '^MRD_BENCH_PLAINTEXT:BOOL=ON' "$enc_dir/CMakeCache.txt"; then
    echo "crypto_ab.sh: $plain_dir must be the MRD_BENCH_PLAINTEXT=ON" \
        "build and $enc_dir not" >&2
    exit 1
fi

# ------------------------------------------------------------------- run --
if [[ -z $out ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/crypto-ab-XXXXXX")
    trap 'rm -rf "$out"' EXIT
else
    mkdir -p "$out"
fi
values=$out/values.tsv # side, family, figure, value
: >"$values"

# The figures of each family: "CSV workload|column|figure|kind", kind t
# (throughput), l (latency) or b (bytes). Columns: 2 events/s, 3 p50,
# 4 p99, 5 p999. The repl and regions rows whose name carries a number
# are matched by their start.
figures() {
    case $1 in
    lone)
        echo 'append 1 ev, 1 client|2|lone: 1 ev, 1 client (ev/s)|t'
        echo 'append 1 ev, 1 client|3|lone: 1 ev, 1 client p50 (ms)|l'
        echo 'append 1 ev, 1 client|4|lone: 1 ev, 1 client p99 (ms)|l'
        ;;
    inflight)
        echo 'append 1 ev, 64 in flight, 1 stream|2|1 ev, 64 in flight, 1 stream (ev/s)|t'
        echo 'append 1 ev, 64 in flight, 64 streams|2|1 ev, 64 in flight, 64 streams (ev/s)|t'
        echo 'append 1 ev, 256 in flight, 64 str.|2|1 ev, 256 in flight, 64 streams (ev/s)|t'
        echo 'append 1 ev, 64 in flight, 64 streams|3|1 ev, 64 in flight, 64 streams p50 (ms)|l'
        ;;
    batch)
        echo '100-ev batches, 16 in flight|2|100-ev batches, 16 in flight (ev/s)|t'
        echo '100-ev batches, 64 in flight|2|100-ev batches, 64 in flight (ev/s)|t'
        echo '100-ev batches, 16 in flight|3|100-ev batches, 16 in flight p50 (ms)|l'
        ;;
    state)
        echo 'state: 1 ev, 64 in flight, 1 counter op|2|state: 1 ev, 64 in flight, 1 op (ev/s)|t'
        echo 'state: 100-ev batches, 1 counter op/ev|2|state: 100-ev batches, 1 op/ev (ev/s)|t'
        ;;
    scan)
        echo 'read scan 1M events, 1 reader|2|scan, 1 reader (ev/s)|t'
        echo 'read scan 1M events, 4 readers|2|scan, 4 readers (ev/s)|t'
        ;;
    repl)
        echo 'repl r1->r2: 100-ev batches|2|bulk r1->r2 until r2 holds all (ev/s)|t'
        echo 'repl r1 appends during bulk|2|r1 appends acked during the bulk (ev/s)|t'
        echo 'repl catch-up of a fresh node|2|catch-up of a fresh r3 (ev/s)|t'
        echo 'repl lag r1->r2: 2000 ev/s steady|2|steady: rate achieved (ev/s)|t'
        echo 'repl lag r1->r2: 2000 ev/s steady|3|steady lag p50 (ms)|l'
        echo 'repl lag r1->r2: 2000 ev/s steady|4|steady lag p99 (ms)|l'
        echo 'repl lag r1->r2: 1 ev per|3|sparse lag p50 (ms)|l'
        echo 'repl link bytes/event bulk|2|link bytes/event, bulk|b'
        echo 'repl link bytes/event steady|2|link bytes/event, steady|b'
        ;;
    regions)
        echo 'regions r1->r2: 100-ev batches|2|bulk r1->both r2 nodes (ev/s)|t'
        echo 'regions r1 appends during bulk|2|r1 appends acked during the bulk (ev/s)|t'
        echo 'regions lag r1->r2: 2000 ev/s steady|3|steady lag p50 (ms)|l'
        echo 'regions lag r1->r2: 2000 ev/s steady|4|steady lag p99 (ms)|l'
        echo 'regions link bytes/event r1->r2|2|link bytes/event r1->r2|b'
        ;;
    esac
}

# Pulls the family's figures out of one run's CSV into $values.
collect() {
    local side=$1 family=$2 csv=$3
    while IFS='|' read -r row col name kind; do
        awk -F'"' -v row="$row" -v col="$col" -v side="$side" \
            -v fam="$family" -v name="$name" -v kind="$kind" '
            index($2, row) == 1 {
                split($3, v, ",")
                # $3 is ",rate,p50,p99,p999": field col of the row is v[col].
                if (v[col] != "") {
                    printf "%s\t%s\t%s\t%s\t%s\n", side, fam, name, kind, v[col]
                    exit
                }
            }' "$csv" >>"$values"
    done < <(figures "$family")
}

# One run of one build: side enc or plain.
run_one() {
    local side=$1 family=$2 round=$3
    local dir=$enc_dir env=()
    if [[ $side == plain ]]; then
        dir=$plain_dir
        env=(MRD_BENCH_PLAINTEXT_OK=1)
    fi
    local csv=$out/$family-$round-$side.csv log=$out/$family-$round-$side.log
    rm -f "$csv"
    # The binaries built with each bench: no A/B override from outside.
    if ! env -u MRD_BENCH_MERIDIAND -u MRD_BENCH_MERIDIANCTL "${env[@]}" \
        "$dir/meridian_bench" --runs 1 $quick --only "$family" \
        --dir "$data_dir" --csv "$csv" >"$log" 2>&1; then
        echo "crypto_ab.sh: $side $family round $round failed:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    collect "$side" "$family" "$csv"
}

start=$(date +%s)
for ((round = 1; round <= runs; round++)); do
    for family in $families; do
        if ((round % 2)); then order="enc plain"; else order="plain enc"; fi
        for side in $order; do
            echo "crypto_ab.sh: round $round/$runs, $family, $side" >&2
            run_one "$side" "$family" "$round"
        done
    done
done
elapsed=$(($(date +%s) - start))

# ----------------------------------------------------------------- table --
# Medians per side and figure, in the order the figures were first seen.
echo
printf 'crypto_ab.sh: %d rounds of %s%s, %d s; medians, encrypted (%s) vs plaintext (%s)\n' \
    "$runs" "$families" "${quick:+ (--quick sizes)}" "$elapsed" "$enc_dir" "$plain_dir"
printf 'family\tfigure\tencrypted\tplaintext\tcost %%\n'
awk -F'\t' '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) {           # insertion sort: n is small
            t = a[i] + 0
            for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
            a[j + 1] = t
        }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        key = $2 SUBSEP $3
        if (!(key in kind)) { order[++count] = key; kind[key] = $4; fam[key] = $2; fig[key] = $3 }
        vals[$1, key] = vals[$1, key] " " $5
    }
    END {
        for (i = 1; i <= count; i++) {
            key = order[i]
            e = median(vals["enc", key]); p = median(vals["plain", key])
            cost = "n/a"
            if (kind[key] == "t" && p > 0) cost = sprintf("%.1f", 100 * (p - e) / p)
            if (kind[key] != "t" && p > 0) cost = sprintf("%.1f", 100 * (e - p) / p)
            fmt = kind[key] == "l" ? "%.2f" : "%.0f"
            printf "%s\t%s\t" fmt "\t" fmt "\t%s\n", fam[key], fig[key], e, p, cost
        }
    }' "$values"
