#!/bin/bash
# scenario.sh KIND NAME SIGNAL [WATCH_SECONDS] [extra conf lines...]
# starts KIND fresh, opens 3 streams (nph, nph, parsed), sends SIGNAL to the server's main pid,
# watches for WATCH seconds, snapshots processes; then cleans up by PID.
L=/tmp/reload-lab; kind=$1; name=$2; sig=$3; watch=${4:-10}; shift 4
case $kind in cgid) port=18481;; prefork) port=18482;; lighttpd) port=18483;; esac
R=$L/runs/$kind-$name; rm -rf $R; mkdir -p $R; rm -f $L/logs/$kind-$name-c[0-9]-*.log $L/logs/$kind-$name-g[0-9]*-c[0-9]-*.log
now() { perl -MTime::HiRes=time -e 'printf "%.3f", time'; }
ev() { echo "$(now) $*" | tee -a $R/events.txt; }
$L/bin/srv.sh start $kind "${EXTRA[@]}" "$@"
spid=$($L/bin/srv.sh pid $kind); ev "server started pid=$spid"
cpids=()
for i in 1 2 3; do
  n=nph-probe.cgi; [ $i = 3 ] && n=probe.cgi
  tag="$kind-$name-c$i"
  $L/bin/client.sh "http://127.0.0.1:$port/cgi-bin/$n?tag=$tag&sleep=${SLEEP:-0.5}${Q}" $R/client$i.txt &
  cpids+=($!)
done
sleep 3
$L/bin/ptree.sh "reload-lab/$kind/" > $R/ps-before.txt
for k in $(seq ${REPEAT:-1}); do
  ev "kill -$sig $spid (#$k)"; kill -$sig $spid
  if [ -n "$REOPEN" ]; then sleep 1; for i in 1 2 3; do $L/bin/client.sh "http://127.0.0.1:$port/cgi-bin/nph-probe.cgi?tag=$kind-$name-g$k-c$i&sleep=0.5" $R/client-g$k-$i.txt & done; fi
  [ $k -lt ${REPEAT:-1} ] && { sleep ${GAP:-3}; $L/bin/ptree.sh "reload-lab/$kind/" > $R/ps-after-$k.txt; }
done
t0=$(now); exited=""
for i in $(seq $((watch*10))); do
  sleep 0.1
  if ! kill -0 $spid 2>/dev/null; then exited=$(now); ev "server pid $spid gone"; break; fi
  [ $i = 20 ] && $L/bin/ptree.sh "reload-lab/$kind/" > $R/ps-2s.txt
done
$L/bin/ptree.sh "reload-lab/$kind/" > $R/ps-end.txt
[ -z "$exited" ] && ev "server pid $spid still running after ${watch}s"
# cleanup: clients, then server (SIGTERM by pid), then leftover probes by pid
for f in $R/client*.txt.pid; do kill -TERM $(cat $f) 2>/dev/null; done  # our curl pids
sleep 1
[ -n "$AFTERPS" ] && { ev "clients closed; sampling"; sleep $AFTERPS; $L/bin/ptree.sh "reload-lab/$kind/" > $R/ps-afterclients.txt; }
if kill -0 $spid 2>/dev/null; then ev "cleanup: kill -TERM $spid"; kill -TERM $spid; for i in $(seq 150); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done; ev "cleanup: server gone=$(kill -0 $spid 2>/dev/null && echo no || echo yes)"; fi
# new-generation/new lighttpd pid (lighttpd graceful restart may re-exec) 
for f in $L/$kind/run/httpd.pid $L/$kind/run/lighttpd.pid; do [ -f $f ] && p=$(cat $f) && kill -0 $p 2>/dev/null && { ev "cleanup: pidfile pid $p alive, TERM"; kill -TERM $p; sleep 3; }; done
sleep 1
for f in $L/logs/$kind-$name-c[0-9]-*.log $L/logs/$kind-$name-g[0-9]*-c[0-9]-*.log; do p=${f##*-}; p=${p%.log}; kill -0 $p 2>/dev/null && { ev "cleanup: leftover probe $p, KILL"; kill -KILL $p; }; done
cp $L/$kind/error.log $R/error.log; cp $L/$kind/server.conf $R/
cat $L/logs/$kind-$name-c[0-9]-*.log $L/logs/$kind-$name-g[0-9]*-c[0-9]-*.log 2>/dev/null > $R/probes.txt
ev done
