#!/usr/bin/env python3
"""Minimal, independent proxy1 and proxy2 for the course's classic C/D/X protocol.

Written the way the course's Python scripts are (threads, blocking sockets, a 1500-byte
receive buffer), and deliberately sharing no code with tunlab: the interop tests run it
against tunlab's proxies to prove the two speak the same bytes.

    classic_proxies.py proxy1 TCP_PORT PROXY2_HOST PROXY2_UDP_PORT
    classic_proxies.py proxy2 UDP_PORT SERVER_HOST SERVER_PORT

Port 0 picks a free port; the bound port is printed on stdout as "listening PORT".
"""
import socket
import sys
import threading

BUF = 1500
MAX_PAYLOAD = BUF - 2


def proxy1(tcp_port, p2_host, p2_port):
    p2 = (socket.gethostbyname(p2_host), p2_port)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    lock = threading.Lock()
    conns = {}      # id -> client socket
    answers = {}    # id -> (threading.Event, [ok?])

    def udp_rdr():
        while True:
            data, addr = udp.recvfrom(BUF)
            if addr != p2 or len(data) < 2:
                continue
            kind, cid, rest = data[0:1], data[1] - ord("0"), data[2:]
            with lock:
                if kind == b"C" and cid in answers:
                    answers[cid][1].append(rest == b"OK")
                    answers[cid][0].set()
                elif kind == b"D" and cid in conns:
                    conns[cid].sendall(rest)
                elif kind == b"X" and cid in conns:
                    conns[cid].shutdown(socket.SHUT_RDWR)

    def serve(client):
        with lock:
            cid = next((i for i in range(10) if i not in conns and i not in answers), None)
            if cid is None:
                client.close()
                return
            answers[cid] = (threading.Event(), [])
        ok = False
        for _ in range(5):
            udp.sendto(b"C%d" % cid, p2)
            if answers[cid][0].wait(0.5):
                ok = answers[cid][1][0]
                break
        with lock:
            del answers[cid]
            if ok:
                conns[cid] = client
        if not ok:
            client.close()
            return
        while True:
            try:
                data = client.recv(MAX_PAYLOAD)
            except OSError:
                data = b""
            if not data:
                break
            udp.sendto(b"D%d" % cid + data, p2)
        udp.sendto(b"X%d" % cid, p2)
        with lock:
            conns.pop(cid, None)
        client.close()

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
    conns = {}  # (proxy1 address, id) -> server socket

    def pump(key, sock):
        addr, cid = key
        while True:
            try:
                data = sock.recv(MAX_PAYLOAD)
            except OSError:
                data = b""
            if not data:
                break
            udp.sendto(b"D%d" % cid + data, addr)
        with lock:
            if conns.get(key) is sock:
                del conns[key]
                udp.sendto(b"X%d" % cid, addr)
        sock.close()

    while True:
        data, addr = udp.recvfrom(BUF)
        if len(data) < 2:
            continue
        kind, cid, rest = data[0:1], data[1] - ord("0"), data[2:]
        key = (addr, cid)
        if kind == b"C":
            with lock:
                known = key in conns
            if known:
                udp.sendto(b"C%dOK" % cid, addr)
                continue
            try:
                sock = socket.create_connection(server, timeout=3)
                sock.settimeout(None)
            except OSError:
                udp.sendto(b"C%dNOK" % cid, addr)
                continue
            with lock:
                conns[key] = sock
            udp.sendto(b"C%dOK" % cid, addr)
            threading.Thread(target=pump, args=(key, sock), daemon=True).start()
        elif kind == b"D":
            with lock:
                sock = conns.get(key)
            if sock is None:
                udp.sendto(b"X%d" % cid, addr)
            else:
                sock.sendall(rest)
        elif kind == b"X":
            with lock:
                sock = conns.pop(key, None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)


if __name__ == "__main__":
    role, port, host, peer_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    {"proxy1": proxy1, "proxy2": proxy2}[role](port, host, peer_port)
