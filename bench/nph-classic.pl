#!/usr/bin/perl
# The classic NPH Server-Sent Events CGI, as widely copied (LF line ends, no
# ids, no heartbeat). Used only as the baseline in bench/cgi_vs_perl.rs.
$| = 1;
print "HTTP/1.1 200 OK\n";
print "Content-Type: text/event-stream\n";
print "Cache-Control: no-cache\n\n";
while (1) {
    print "data: message from CGI\n\n";
    sleep 10;
}
