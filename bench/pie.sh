#!/bin/sh
# Memory per idle CGI process: static-pie against non-PIE static, the two
# variants `cgi-bin/install --pie` / `--no-pie` build, with the plain dynamic
# `cargo build --release` binary for reference.
#
#   bench/pie.sh [PROCESSES [ROUNDS]]        (defaults: 50 processes, 5 rounds)
#
# Each measurement starts PROCESSES copies of one binary as CGI GET requests
# (the variables Apache passes; NPH output; no ticker), their stdout a fifo
# that one `cat` keeps reading, so they sit idle exactly as a connected
# client's process does: in poll(2), waiting for a publish or the next
# heartbeat. After 1 s it sums `Pss:` of /proc/PID/smaps_rollup over them and
# divides; then it stops them (SIGTERM, by PID). Variants alternate within
# each round, in turn first, and the medians over the rounds are reported.
# PSS divides shared pages among the processes that map them, so the result
# depends on PROCESSES: compare variants at the same count.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-50}
rounds=${2:-5}
case "$n$rounds" in *[!0-9]*|"") echo "usage: $0 [PROCESSES [ROUNDS]]" >&2; exit 2 ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/nph-events-pie.XXXXXX")
pids=""
cleanup() {
    # Only the processes this script started, by PID.
    # shellcheck disable=SC2086 # a list of PIDs
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building (cgi-bin/install --build-only; cargo build --release)..." >&2
pie=$("$root/cgi-bin/install" --pie --build-only)
nopie=$("$root/cgi-bin/install" --no-pie --build-only)
[ "$pie" != "$nopie" ] || { echo "$0: this host cannot link statically (see the warning above)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml" >&2
dynamic="${CARGO_TARGET_DIR:-$root/target}/release/nph-events"
case "$dynamic" in /*) ;; *) dynamic="$PWD/$dynamic" ;; esac

variants="static-pie static dynamic"
for v in $variants; do
    mkdir "$work/$v"
    case $v in
        static-pie) cp "$pie" "$work/$v/nph-events.cgi" ;;
        static) cp "$nopie" "$work/$v/nph-events.cgi" ;;
        dynamic) cp "$dynamic" "$work/$v/nph-events.cgi" ;;
    esac
done

# measure VARIANT: appends the mean PSS and RSS per process (KiB) to
# $work/pss-VARIANT and $work/rss-VARIANT. Runs in this shell (not in $(...)),
# so that cleanup knows the PIDs if it fails.
measure() {
    bin="$work/$1/nph-events.cgi"
    spool="$work/spool"
    rm -rf "$spool" "$work/out"
    mkfifo "$work/out"
    cat "$work/out" >/dev/null &
    reader=$!
    pids=""
    i=0
    while [ "$i" -lt "$n" ]; do
        env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SERVER_PROTOCOL=HTTP/1.1 \
            QUERY_STRING= SCRIPT_NAME=/cgi-bin/nph-events.cgi HTTP_ACCEPT=text/event-stream \
            NPH_EVENTS_SPOOL="$spool" NPH_EVENTS_INTERVAL=0 \
            "$bin" </dev/null >"$work/out" 2>>"$work/stderr" &
        pids="$pids $!"
        i=$((i + 1))
    done
    sleep 1
    pss=0
    rss=0
    for p in $pids; do
        # A process that exited (an error, in $work/stderr) fails the run.
        if ! kill -0 "$p" 2>/dev/null \
            || ! line=$(awk '/^Pss:/ { p = $2 } /^Rss:/ { r = $2 } END { print p, r }' "/proc/$p/smaps_rollup") \
            || [ "$line" = " " ]; then
            echo "$0: $1: process $p is gone:" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        pss=$((pss + ${line% *}))
        rss=$((rss + ${line#* }))
    done
    # shellcheck disable=SC2086 # a list of PIDs
    kill $pids
    # shellcheck disable=SC2086
    wait $pids $reader || true
    pids=""
    awk -v p="$pss" -v n="$n" 'BEGIN { printf "%.1f\n", p / n }' >>"$work/pss-$1"
    awk -v r="$rss" -v n="$n" 'BEGIN { printf "%.1f\n", r / n }' >>"$work/rss-$1"
}

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "PSS / RSS per idle process (KiB), $n processes per measurement:"
r=1
while [ "$r" -le "$rounds" ]; do
    # Rotate the order, so no variant is always first after a pause.
    order=$variants
    k=1
    while [ "$k" -lt "$r" ]; do
        order="${order#* } ${order%% *}"
        k=$((k + 1))
    done
    printf 'round %d:' "$r"
    for v in $order; do
        measure "$v"
        printf '  %s %s / %s' "$v" "$(tail -n 1 "$work/pss-$v")" "$(tail -n 1 "$work/rss-$v")"
    done
    echo
    r=$((r + 1))
done

echo
echo "| variant | binary bytes | PSS median (KiB) | RSS median (KiB) |"
echo "|---|---:|---:|---:|"
for v in $variants; do
    size=$(wc -c <"$work/$v/nph-events.cgi" | tr -d ' ')
    echo "| $v | $size | $(median <"$work/pss-$v") | $(median <"$work/rss-$v") |"
done
