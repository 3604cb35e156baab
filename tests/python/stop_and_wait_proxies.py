#!/usr/bin/env python3
"""Minimal, independent proxy1 and proxy2 for the course's stop-and-wait protocol.

Written from the table in DESIGN.md the way the course's Python scripts are (threads,
blocking sockets, `.decode()` of every datagram, 1500-byte UDP reads, 4096-byte TCP reads
sent as one D, a fixed retransmission timer, loss on send like the course's `send_loss`),
and deliberately sharing no code with tunlab: the interop tests run it against tunlab's
proxies in both directions to prove the two interoperate.

    stop_and_wait_proxies.py proxy1 TCP_PORT PROXY2_HOST PROXY2_UDP_PORT [LOSS_PCT [RTO_S]]
    stop_and_wait_proxies.py proxy2 UDP_PORT SERVER_HOST SERVER_PORT [LOSS_PCT [RTO_S]]

Port 0 picks a free port; the bound port is printed on stdout as "listening PORT".

Datagrams: C<id>0, C<id>0OK / C<id>0NOK, D<id><seq><text>, A<id><seq>, X<id><seq>; id one
digit, seq '0'/'1' alternating per connection and per direction. Like course peers, C and X
are sent once and never retransmitted; D is resent every RTO_S seconds until its A arrives.
LOSS_PCT drops that share of D and A sends at random (C and X are spared: a course peer that
loses one of those hangs, which is not what these tests are about). Text only: the payload is
decoded as UTF-8, as the course's scripts do.
"""
import random
import socket
import sys
import threading

BUF = 1500          # UDP receive size, as the course's scripts
TCP_READ = 4096     # the course's TCP read size: one D can be longer than 1500 bytes
LOSS = 0.0
RTO = 1.0


def send_loss(udp, text, addr):
    """Sends a D or A datagram unless the dice say it is lost (the course's send_loss)."""
    if random.random() * 100 >= LOSS:
        udp.sendto(text.encode(), addr)


class Conn:
    """One connection id: its TCP socket and the alternating bits of both directions."""

    def __init__(self, sock):
        self.sock = sock
        self.expected = 0               # the seq the receiver delivers next
        self.acked = threading.Event()  # set when the D in flight is acked
        self.waiting_for = None         # the seq of the D in flight


def on_data_or_ack(udp, conns, lock, msg, addr):
    """Handles D and A (both proxies do the same). Returns False for other types."""
    kind, cid = msg[0], int(msg[1])
    with lock:
        conn = conns.get(cid)
    if kind == "A":
        seq = int(msg[2])
        if conn is not None and conn.waiting_for == seq:
            conn.acked.set()
        return True
    if kind == "D":
        seq, text = int(msg[2]), msg[3:]
        if conn is None:
            return True
        if seq == conn.expected:
            conn.sock.sendall(text.encode())
            conn.expected ^= 1
        send_loss(udp, "A%d%d" % (cid, seq), addr)   # every D is acked, duplicates too
        return True
    return False


def pump(udp, conns, lock, cid, conn, addr):
    """TCP -> D frames, one at a time, each resent on the fixed timer until acked."""
    seq = 0
    while True:
        try:
            data = conn.sock.recv(TCP_READ)
        except OSError:
            data = b""
        if not data:
            break
        text = data.decode()
        conn.waiting_for = seq
        conn.acked.clear()
        while True:
            with lock:
                closed = conns.get(cid) is not conn
            if closed:
                # The peer's X arrived: stop resending, or a stale D would reach whoever gets
                # this id next.
                conn.sock.close()
                return
            send_loss(udp, "D%d%d%s" % (cid, seq, text), addr)
            if conn.acked.wait(RTO):
                break
        seq ^= 1
    udp.sendto(("X%d%d" % (cid, seq)).encode(), addr)
    with lock:
        if conns.get(cid) is conn:
            del conns[cid]
    conn.sock.close()


def proxy1(tcp_port, p2_host, p2_port):
    p2 = (socket.gethostbyname(p2_host), p2_port)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    lock = threading.Lock()
    conns = {}      # id -> Conn
    answers = {}    # id -> (threading.Event, [ok?])

    def udp_rdr():
        while True:
            data, addr = udp.recvfrom(BUF)
            if addr != p2:
                continue
            try:
                msg = data.decode()
                if on_data_or_ack(udp, conns, lock, msg, addr):
                    continue
                kind, cid = msg[0], int(msg[1])
            except (UnicodeDecodeError, ValueError, IndexError):
                continue
            with lock:
                if kind == "C" and cid in answers:
                    answers[cid][1].append(msg[3:] == "OK")
                    answers[cid][0].set()
                elif kind == "X" and cid in conns:
                    conn = conns.pop(cid)
                    try:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def serve(client):
        with lock:
            cid = next((i for i in range(10) if i not in conns and i not in answers), None)
            if cid is None:
                client.close()
                return
            answers[cid] = (threading.Event(), [])
        udp.sendto(("C%d0" % cid).encode(), p2)     # once, as course peers do
        ok = answers[cid][0].wait(10) and answers[cid][1][0]
        conn = Conn(client)
        with lock:
            del answers[cid]
            if ok:
                conns[cid] = conn
        if not ok:
            client.close()
            return
        pump(udp, conns, lock, cid, conn, p2)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", tcp_port))
    listener.listen(16)
    print("listening", listener.getsockname()[1], flush=True)
    threading.Thread(target=udp_rdr, daemon=True).start()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


def proxy2(udp_port, server_host, server_port):
    server = (socket.gethostbyname(server_host), server_port)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", udp_port))
    print("listening", udp.getsockname()[1], flush=True)
    lock = threading.Lock()
    conns = {}  # id -> Conn (one proxy1, as the course's proxy2 per process)

    while True:
        data, addr = udp.recvfrom(BUF)
        try:
            msg = data.decode()
            if on_data_or_ack(udp, conns, lock, msg, addr):
                continue
            kind, cid = msg[0], int(msg[1])
        except (UnicodeDecodeError, ValueError, IndexError):
            continue
        if kind == "C":
            with lock:
                known = cid in conns
            if known:
                udp.sendto(("C%d0OK" % cid).encode(), addr)
                continue
            try:
                sock = socket.create_connection(server, timeout=3)
                sock.settimeout(None)
            except OSError:
                udp.sendto(("C%d0NOK" % cid).encode(), addr)
                continue
            conn = Conn(sock)
            with lock:
                conns[cid] = conn
            udp.sendto(("C%d0OK" % cid).encode(), addr)
            threading.Thread(
                target=pump, args=(udp, conns, lock, cid, conn, addr), daemon=True
            ).start()
        elif kind == "X":
            with lock:
                conn = conns.pop(cid, None)
            if conn is not None:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


if __name__ == "__main__":
    role, port, host, peer_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if len(sys.argv) > 5:
        LOSS = float(sys.argv[5])
    if len(sys.argv) > 6:
        RTO = float(sys.argv[6])
    {"proxy1": proxy1, "proxy2": proxy2}[role](port, host, peer_port)
