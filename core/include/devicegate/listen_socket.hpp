#pragma once
// Socket options for the HTTP servers DeviceGate's programs run (the worker's metrics, the
// bridge's API): cpp-httplib's default_socket_options also set SO_REUSEPORT, with which a
// second process binds the same port without an error, and the kernel then spreads
// connections over both (a scrape alternates between two workers' counters; issue found
// by an operator trial). SO_REUSEADDR alone still lets a restarted server bind at once
// while old connections sit in TIME_WAIT, and makes a port in use fail to bind, as it should.
#include <sys/socket.h>

namespace devicegate {

inline void exclusive_listen_options(int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

}  // namespace devicegate
