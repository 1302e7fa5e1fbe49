#!/bin/bash
# ptree.sh PATTERN : server + probe processes with pid/ppid/pgid/sid
ps -eo pid,ppid,pgid,sid,user,etimes,stat,args --sort=pid | awk -v p="$1" 'NR==1 || $0 ~ p && $0 !~ /awk|ptree/'
