#!/bin/bash
# client.sh URL OUT : curl -N, each line timestamped (epoch), end + curl rc recorded; curl pid in OUT.pid
url=$1; out=$2
ts() { perl -ne 'BEGIN{$|=1; use Time::HiRes qw(time)} printf "%.3f %s", time, $_'; }
curl -sN --http1.1 -D - "$url" > >(ts >> "$out") &
echo $! > "$out.pid"; wait $!; rc=$?
sleep 0.2; perl -e 'use Time::HiRes qw(time); printf "%.3f CLIENT-END curl rc='$rc'\n", time' >> "$out"
