#!/usr/bin/perl
# Instrumented SSE CGI: logs signals, ppid, pgid/sid, stdin/stdout state, write results.
use strict; use warnings; no strict "refs";
use Time::HiRes qw(time sleep);
use POSIX qw(getpgrp setsid :errno_h);
use IO::Poll qw(POLLIN POLLOUT POLLHUP POLLERR POLLNVAL);
my $nph = ($0 =~ m{/nph-[^/]*$}) ? 1 : 0;
my %q = map { split /=/, $_, 2 } grep { /=/ } split /&/, ($ENV{QUERY_STRING} // '');
my $tag = $q{tag} // 'x';
my $interval = $q{sleep} // 0.5;
my $burn = $q{burn} // 0;
my $log = "/tmp/reload-lab/logs/$tag-$$.log";
open(my $L, '>>', $log) or die "log $log: $!";
select((select($L), $| = 1)[0]);
sub lg { my $t = time; printf $L "%.3f pid=%d %s\n", $t, $$, join(' ', @_); }
sub slurp { my $f = shift; open(my $h, '<', $f) or return ''; local $/; my $s = <$h>; $s }
my $st = slurp("/proc/$$/stat"); $st =~ s/^.*\) //; my @st = split / /, $st;
my ($ppid0, $pgid, $sid) = @st[1,2,3];
my $status = slurp("/proc/$$/status");
my ($blk) = $status =~ /SigBlk:\s*(\S+)/; my ($ign) = $status =~ /SigIgn:\s*(\S+)/;
my ($cpu) = slurp("/proc/$$/limits") =~ /^(Max cpu time.*)$/m;
my $pcmd = slurp("/proc/$ppid0/cmdline"); $pcmd =~ s/\0/ /g;
my $gcmd = slurp("/proc/$pgid/cmdline"); $gcmd =~ s/\0/ /g;
my $scmd = slurp("/proc/$sid/cmdline"); $scmd =~ s/\0/ /g;
my $o1 = readlink("/proc/$$/fd/1") // '?'; my $o0 = readlink("/proc/$$/fd/0") // '?';
lg("START nph=$nph uid=$< ppid=$ppid0 [$pcmd] pgid=$pgid [$gcmd] sid=$sid [$scmd] fd0=$o0 fd1=$o1 SigBlk=$blk SigIgn=$ign");
lg("RLIMIT $cpu");
# signals: log; TERM/INT/HUP/QUIT: exit like default (unless ign=1); others: continue
my $exit_on = $q{ign} ? '' : 'TERM INT HUP QUIT';
use Config; my %SIGNUM; @SIGNUM{split " ", $Config{sig_name}} = split " ", $Config{sig_num};
use POSIX qw(sigaction SA_SIGINFO);
for my $s (qw(HUP INT QUIT USR1 USR2 TERM PIPE WINCH XCPU ALRM)) {
  my $h = sub { my ($name, $info) = @_; my $cur = getppid();
                my $from = (ref $info eq 'HASH') ? ($info->{pid} // '?') : '?';
                my $code = (ref $info eq 'HASH') ? ($info->{code} // '?') : '?';
                my $fc = ($from =~ /^\d+$/ && $from > 0) ? slurp("/proc/$from/cmdline") : ''; $fc =~ s/\0/ /g; $fc =~ s/\s+$//;
                my @tm = times; lg(sprintf("cpu=%.2f ", $tm[0]+$tm[1]) . "SIGNAL $s from_pid=$from si_code=$code [$fc] ppid_now=$cur");
                if ($exit_on =~ /\b$s\b/) { lg("EXIT on SIG$s"); exit(128); } };
  my $num = $SIGNUM{$s}; sigaction($num, POSIX::SigAction->new($h, POSIX::SigSet->new, SA_SIGINFO)) or lg("sigaction $s failed: $!");
}
if ($q{pdeath}) { my $r = syscall(157, 1, 12); lg("prctl(PR_SET_PDEATHSIG, SIGUSR2) = $r ppid=" . getppid()); }
$| = 1;
my $head = $nph ? "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Probe-Pid: $$\r\n\r\n"
               : "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Probe-Pid: $$\r\n\r\n";
my $w = syswrite(STDOUT, $head); lg("HEAD written=" . ($w // "undef err=$!"));
my $seq = 0; my $lastppid = $ppid0; my $stdin_eof = 0; my $lastrev = '';
my $poll = IO::Poll->new;
while (1) {
  $seq++;
  # state checks
  my $ppid = getppid();
  if ($ppid != $lastppid) { lg("PPID CHANGED $lastppid -> $ppid"); $lastppid = $ppid; }
  my $p = IO::Poll->new; $p->mask(\*STDOUT => POLLOUT|POLLHUP|POLLERR);
  $p->mask(\*STDIN => POLLIN) unless $stdin_eof;
  $p->poll(0);
  my $r1 = $p->events(\*STDOUT); my $r0 = $stdin_eof ? 0 : $p->events(\*STDIN);
  my $rev = sprintf "out=%s%s%s in=%s", ($r1 & POLLOUT ? 'OUT' : '-'), ($r1 & POLLHUP ? '+HUP' : ''), ($r1 & POLLERR ? '+ERR' : ''), ($r0 & POLLIN ? 'IN' : '-');
  if ($rev ne $lastrev) { lg("POLL $rev (seq $seq)"); $lastrev = $rev; }
  if (!$stdin_eof && ($r0 & (POLLIN|POLLHUP))) {
    my $n = sysread(STDIN, my $buf, 4096);
    if (!defined $n) { lg("STDIN read error $!"); $stdin_eof = 1 }
    elsif ($n == 0) { lg("STDIN EOF (seq $seq)"); $stdin_eof = 1 }
    else { lg("STDIN read $n bytes") }
  }
  my $line = "id: $seq\ndata: pid=$$ seq=$seq t=" . sprintf("%.3f", time) . "\n\n";
  my $n = syswrite(STDOUT, $line);
  if (!defined $n) { lg("WRITE seq=$seq FAILED errno=" . ($!+0) . " ($!)"); lg("EXIT on write error"); exit 3; }
  { my @tm = times; lg("WROTE seq=$seq n=$n ppid=$ppid" . sprintf(" cpu=%.2f", $tm[0]+$tm[1])); }
  if ($burn) { my $end = time + $interval; my $x = 0; while (time < $end) { $x++ } } else { my $end = time + $interval; while ((my $left = $end - time) > 0) { sleep $left } }
}
