#!/usr/bin/env bash
# Before/after comparison of the relay throughput benchmark, side by side in one session.
#
#   relay/benches/compare.sh BASE [ROUNDS]
#
# Builds this checkout's relay/benches/throughput.rs against the relay at commit BASE (in a git
# worktree under target/bench/compare; BASE must already have the benchmark's dev-dependencies
# and glowworm_relay::metrics, as c807db5 and later do), and against this checkout's relay. Then
# runs the two alternately ROUNDS times (default 3), so that both see the same noise of a shared
# machine, and prints for each run the median of the rounds and the after/before ratio.
# Each round's table is kept in target/bench/compare/{before,after}-N.md. The benchmark's
# GLOWWORM_BENCH_* settings apply to both; GLOWWORM_BENCH_SUSTAINED defaults to 0 here, so that
# both run the same fixed rates.
set -euo pipefail

base=${1:?usage: relay/benches/compare.sh BASE-COMMIT [ROUNDS]}
rounds=${2:-3}
root=$(git rev-parse --show-toplevel)
out=$root/target/bench/compare
work=$out/worktree
mkdir -p "$out"
export GLOWWORM_BENCH_SUSTAINED=${GLOWWORM_BENCH_SUSTAINED:-0}
rm -f "$out"/before-*.md "$out"/after-*.md "$out/summary.md"

if [ -d "$work" ]; then
    git -C "$work" checkout --quiet --force --detach "$base"
else
    git -C "$root" worktree add --quiet --force --detach "$work" "$base"
fi
cp "$root/relay/benches/throughput.rs" "$work/relay/benches/throughput.rs"
# Before replication (a9ca032 and older), protocol::lease took no adapter and jobs::Split had no
# replicas; the benchmark's contributors name no adapter and its jobs use Freivalds' check, so the
# requests and jobs are the same either way.
if ! grep -q 'adapter: Option<&AdapterClass>' "$work/crate/src/protocol.rs"; then
    sed -i -e 's/protocol::lease(http, key, None)/protocol::lease(http, key)/' \
        -e '/^ *replicas: None,$/d' "$work/relay/benches/throughput.rs"
fi

# The path of the benchmark executable cargo builds in directory $1 with target directory $2.
bench_exe() {
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench -p glowworm-relay --bench throughput --no-run \
        --message-format=json 2>/dev/null) |
        grep '"executable":"[^"]*throughput' | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -1
}
before=$(bench_exe "$work" "$out/target")
after=$(bench_exe "$root" "${CARGO_TARGET_DIR:-$root/target}")
[ -x "$before" ] && [ -x "$after" ] || { echo "could not build the benchmark" >&2; exit 1; }

for round in $(seq 1 "$rounds"); do
    for side in before after; do
        exe=$before
        [ "$side" = after ] && exe=$after
        echo "== round $round: $side"
        GLOWWORM_BENCH_LABEL="$side (round $round)" GLOWWORM_BENCH_OUT="$out/$side-$round.md" \
            "$exe" --bench >/dev/null
    done
done

# Columns of a run's row: 2 run, 3 results/s, 4 p50, 5 p99, 6 max, 7 errors, 8 CPU µs/result.
awk -F'|' '
    FNR == 1 { side = (FILENAME ~ /\/before-[0-9]+\.md$/) ? "before" : "after" }
    /^\| [0-9]+ contributors/ {
        run = $2; sub(/, [0-9]+ starts over 2 ms late/, "", run); gsub(/^ +| +$/, "", run)
        if (!(run in seen)) { seen[run] = 1; order[++runs] = run }
        n = ++count[side, run]
        tput[side, run, n] = $3 + 0; p99[side, run, n] = $5 + 0; cpu[side, run, n] = $8 + 0
    }
    function median(a, side, run, n,    i, j, t, v) {
        for (i = 1; i <= n; i++) v[i] = a[side, run, i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function ratio(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "-" }
    END {
        print "| Run | results/s before | after | ratio | p99 ms before | after | ratio | CPU µs/result before | after | ratio |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= runs; i++) {
            r = order[i]; nb = count["before", r]; na = count["after", r]
            if (!nb || !na) continue
            tb = median(tput, "before", r, nb); ta = median(tput, "after", r, na)
            pb = median(p99, "before", r, nb); pa = median(p99, "after", r, na)
            cb = median(cpu, "before", r, nb); ca = median(cpu, "after", r, na)
            printf "| %s | %.0f | %.0f | %s | %.1f | %.1f | %s | %.0f | %.0f | %s |\n", r, tb, ta, ratio(ta, tb), pb, pa, ratio(pa, pb), cb, ca, ratio(ca, cb)
        }
        printf "\nMedians of %d alternating rounds each; every round is in target/bench/compare/.\n", nb
    }
' "$out"/before-*.md "$out"/after-*.md | tee "$out/summary.md"
