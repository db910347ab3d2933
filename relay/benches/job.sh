#!/usr/bin/env bash
# End-to-end job benchmark: a requester submits an N x N x N matmul with the `glowworm` CLI, W
# native workers compute it (on lavapipe where there is no GPU), the relay verifies every tile
# with Freivalds' check and assembles C.
#
#   relay/benches/job.sh [N] [WORKERS]        (defaults: 1024 and 2)
#
# Prints, and writes to target/bench/job.md: the seconds from submission to the downloaded
# result, GFLOP/s, and the input bytes moved per unit, as the workers fetched them (with their
# input caches) and as the units read them (what would move without caches). Everything runs
# on this machine, so the relay, the workers and the CPU "GPU" share its cores.
set -euo pipefail

n=${1:-1024}
workers=${2:-2}
root=$(git rev-parse --show-toplevel)
out=$root/target/bench
mkdir -p "$out"
cd "$root"
cargo build --release -p glowworm-relay -p glowworm-cli -p glowworm-worker >&2

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

target/release/glowworm-relay serve --listen 127.0.0.1:0 --database "$work/relay.sqlite" \
    --no-demo --www-dir www >"$work/relay.out" 2>"$work/relay.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "listening on" "$work/relay.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/relay.out")
key=$(target/release/glowworm-relay keys create --name bench --database "$work/relay.sqlite" 2>/dev/null)

# A and B: N x N float32 .npy files of pseudo-random values in [-1, 1).
python3 - "$work" "$n" <<'EOF'
import array, random, struct, sys
work, n = sys.argv[1], int(sys.argv[2])
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, n)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
for name, seed in (("a", 1), ("b", 2)):
    rng = random.Random(seed)
    values = array.array("f", (rng.uniform(-1, 1) for _ in range(n * n)))
    with open(f"{work}/{name}.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(values.tobytes())
EOF

for i in $(seq "$workers"); do
    XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg} target/release/glowworm-worker \
        --relay "$url" --key "$work/worker$i.key" >"$work/worker$i.out" 2>"$work/worker$i.log" &
    pids+=($!)
done

start=$(date +%s.%N)
GLOWWORM_RELAY=$url GLOWWORM_API_KEY=$key target/release/glowworm submit matmul \
    --a "$work/a.npy" --b "$work/b.npy" --out "$work/c.npy" >"$work/submit.out" 2>&1
end=$(date +%s.%N)

# Workers finish what they hold and print their totals on SIGINT.
for pid in "${pids[@]:1}"; do kill -INT "$pid"; done
for pid in "${pids[@]:1}"; do wait "$pid" || true; done

python3 - "$work" "$n" "$workers" "$start" "$end" "$out/job.md" <<'EOF'
import re, sys
work, n, workers, start, end, table = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
units = downloaded = used = 0
for i in range(1, workers + 1):
    text = open(f"{work}/worker{i}.out").read()
    m = re.search(r"(\d+) units verified.*?inputs: (\d+) bytes downloaded, (\d+) bytes read", text)
    units += int(m.group(1)); downloaded += int(m.group(2)); used += int(m.group(3))
seconds = end - start
rows = [
    ("matmul", f"{n} x {n} x {n}"),
    ("workers", str(workers)),
    ("units verified", str(units)),
    ("submission to result (s)", f"{seconds:.1f}"),
    ("GFLOP/s end to end", f"{2 * n**3 / seconds / 1e9:.2f}"),
    ("input bytes per unit, with the workers' caches", f"{downloaded / units:,.0f}"),
    ("input bytes per unit, without caches", f"{used / units:,.0f}"),
    ("moved / read", f"{downloaded / used:.3f}"),
]
text = "| Job benchmark | |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
open(table, "w").write(text)
print(text)
print(open(f"{work}/submit.out").read().strip().splitlines()[-1])
EOF
