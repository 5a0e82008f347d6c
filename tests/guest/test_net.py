"""accept, accept4, connect, bind: fds, addresses of every family, errors."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from .audit import assert_return, auditing, failed


def sock_token(rec):  # type: ignore[no-untyped-def]
    return rec.first("sock_inet32", "sock_inet128", "sock_unix")


def fd_of(rec) -> int:  # type: ignore[no-untyped-def]
    arg = rec.first("arg32")
    assert (arg.num, arg.text) == (1, "fd")
    return int(arg.value)


def test_tcp_ipv4_bind_connect_accept() -> None:
    with auditing() as a:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        srv.listen()
        cli = socket.create_connection(("127.0.0.1", port))
        conn, peer = srv.accept()
        for s in (conn, cli, srv):
            s.close()
        me = os.getpid()
        bind = a.one("AUE_BIND", me)
        conn_rec = a.one("AUE_CONNECT", me)
        acc = a.one("AUE_ACCEPT", me)
    tok = sock_token(bind)  # the address asked for: any port
    assert (tok.name, tok.port, tok.address) == ("sock_inet32", 0, "127.0.0.1")
    tok = sock_token(conn_rec)
    assert (tok.name, tok.port, tok.address) == ("sock_inet32", port, "127.0.0.1")
    tok = sock_token(acc)
    assert (tok.name, tok.port, tok.address) == ("sock_inet32", peer[1], "127.0.0.1")
    assert fd_of(bind) == fd_of(acc)  # the listening socket
    assert_return(acc)
    assert acc.return_token.value > fd_of(acc)  # the new descriptor


def test_tcp_ipv6_accept_peer() -> None:
    with auditing() as a:
        srv = socket.socket(socket.AF_INET6)
        srv.bind(("::1", 0))
        port = srv.getsockname()[1]
        srv.listen()
        cli = socket.create_connection(("::1", port))
        conn, peer = srv.accept()
        for s in (conn, cli, srv):
            s.close()
        acc = a.one("AUE_ACCEPT", os.getpid())
        con = a.one("AUE_CONNECT", os.getpid())
    tok = sock_token(acc)
    assert (tok.name, tok.port, tok.address) == ("sock_inet128", peer[1], "::1")
    assert sock_token(con).port == port


def test_unix_socket_paths(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with auditing() as a:
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen()
        cli = socket.socket(socket.AF_UNIX)
        cli.connect(path)
        conn, _ = srv.accept()
        for s in (conn, cli, srv):
            s.close()
        me = os.getpid()
        recs = [a.one(e, me) for e in ("AUE_BIND", "AUE_CONNECT", "AUE_ACCEPT")]
    for rec in recs:
        tok = sock_token(rec)
        assert (tok.name, tok.path) == ("sock_unix", path)


def test_refused_connect_and_address_in_use() -> None:
    with auditing() as a:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        other = socket.socket()
        try:
            other.bind(("127.0.0.1", port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE
        try:
            srv.accept()  # bound, not listening
        except OSError as e:
            assert e.errno == errno.EINVAL
        srv.close()
        cli = socket.socket()
        assert cli.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        other.close()
        cli.close()
        inuse = a.one("AUE_BIND", os.getpid(), where=failed)
        refused = a.one("AUE_CONNECT", os.getpid(), where=failed)
        not_listening = a.one("AUE_ACCEPT", os.getpid(), where=failed)
    assert_return(inuse, errno=errno.EADDRINUSE)
    assert_return(refused, errno=errno.ECONNREFUSED)
    assert sock_token(refused).port == port
    assert_return(not_listening, errno=errno.EINVAL)
    assert sock_token(not_listening) is None
