"""``python -m lmsync.lms.embedded`` with TCP_NODELAY on its connections (``--lms-nodelay``).

The embedded LMS creates its listening socket with protocol 0, so asyncio does not set
TCP_NODELAY on the connections it accepts, and every response written in two parts (headers, then
body) waits for the client's delayed ACK (about 40 ms on Linux). This launcher only swaps the
socket factory for one created with ``IPPROTO_TCP``, to measure what that one-line fix would
change; everything else is the embedded LMS itself.
"""

from __future__ import annotations

import socket

import lmsync.lms.embedded as embedded


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((embedded.HOST, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    embedded._listen = _listen
    embedded.main()
