#!/bin/bash
# srv.sh start|stop|pid KIND [extra-conf-line...]   KIND = cgid | prefork | lighttpd
set -e
L=/tmp/reload-lab; M=/usr/lib/apache2/modules
cmd=$1; kind=$2; shift 2
d=$L/$kind
case $kind in cgid) port=18481;; prefork) port=18482;; lighttpd) port=18483;; esac
case $cmd in
start)
  rm -rf $d; mkdir -p $d/cgi-bin $d/htdocs $d/run; chmod 755 $d $d/cgi-bin $d/htdocs
  cp $L/bin/probe.pl $d/cgi-bin/probe.cgi; cp $L/bin/probe.pl $d/cgi-bin/nph-probe.cgi; chmod 755 $d/cgi-bin/*
  : > $d/error.log; chmod 666 $d/error.log
  if [ $kind = lighttpd ]; then
    cat > $d/server.conf <<C
server.document-root = "$d/htdocs"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$d/error.log"
server.tag = "lighttpd-lab"
server.username = "www-data"
server.groupname = "www-data"
server.modules = ( "mod_alias", "mod_cgi" )
server.stream-response-body = 2
alias.url += ( "/cgi-bin/" => "$d/cgi-bin/" )
\$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ( ".cgi" => "" ) }
C
    for x in "$@"; do echo "$x" >> $d/server.conf; done
    chown www-data:www-data $d/run   # lighttpd re-exec (graceful-restart-bg) rewrites the pid file as www-data
    setsid perl -e '$SIG{INT}=$SIG{QUIT}="DEFAULT"; exec @ARGV' /usr/sbin/lighttpd -D -f $d/server.conf </dev/null >>$d/stderr.log 2>&1 &
    echo $! > $d/run/started.pid
  else
    if [ $kind = cgid ]; then mpm=mpm_event; cgi=cgid; else mpm=mpm_prefork; cgi=cgi; fi
    cat > $d/server.conf <<C
ServerRoot "$d"
DefaultRuntimeDir "$d/run"
PidFile "$d/run/httpd.pid"
Listen 127.0.0.1:$port
ServerName 127.0.0.1
ErrorLog "$d/error.log"
LogLevel info
Timeout 30
DocumentRoot "$d/htdocs"
LoadModule ${mpm}_module $M/mod_${mpm}.so
LoadModule ${cgi}_module $M/mod_${cgi}.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule alias_module $M/mod_alias.so
LoadModule env_module $M/mod_env.so
User www-data
Group www-data
ScriptAlias /cgi-bin/ "$d/cgi-bin/"
<Directory "$d/cgi-bin">
  Options +ExecCGI
  Require all granted
</Directory>
C
    [ $kind = cgid ] && echo "ScriptSock \"$d/run/cgid.sock\"" >> $d/server.conf
    for x in "$@"; do echo "$x" >> $d/server.conf; done
    # like "apachectl start": apache2 daemonizes (fork + setsid) and writes PidFile
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin APACHE_RUN_DIR=$d/run perl -e '$SIG{INT}=$SIG{QUIT}="DEFAULT"; exec @ARGV' apache2 -f $d/server.conf </dev/null >>$d/stderr.log 2>&1
  fi
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$port/ && break; sleep 0.1; done
  ;;
pid)
  if [ $kind = lighttpd ]; then cat $d/run/started.pid; else cat $d/run/httpd.pid; fi ;;
esac
