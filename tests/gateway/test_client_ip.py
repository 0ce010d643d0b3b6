from __future__ import annotations

from app.kit.client_ip import client_ip, parse_trusted_proxies


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 1234), "headers": headers}


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_ip(scope("198.51.100.7", "1.2.3.4"), ()) == "198.51.100.7"


def test_spoofed_header_from_untrusted_peer_is_ignored():
    trusted = parse_trusted_proxies(["10.0.0.0/8"])
    assert client_ip(scope("198.51.100.7", "1.2.3.4"), trusted) == "198.51.100.7"


def test_trusted_proxy_chain_is_walked_from_the_right():
    trusted = parse_trusted_proxies(["10.0.0.0/8"])
    # client spoofs 6.6.6.6, real client 203.0.113.9, then two trusted proxies
    header = "6.6.6.6, 203.0.113.9, 10.0.0.2"
    assert client_ip(scope("10.0.0.1", header), trusted) == "203.0.113.9"


def test_garbage_in_forwarded_header_falls_back_to_peer():
    trusted = parse_trusted_proxies(["127.0.0.1"])
    assert client_ip(scope("127.0.0.1", "not-an-ip"), trusted) == "127.0.0.1"


def test_a_proxy_that_adds_its_own_header_line_is_read_after_the_clients():
    # HAProxy's `option forwardfor` adds a line instead of appending to the client's.
    trusted = parse_trusted_proxies(["10.0.0.1"])
    request = {
        "client": ("10.0.0.1", 1234),
        "headers": [
            (b"x-forwarded-for", b"6.6.6.6"),  # what the client wrote
            (b"accept", b"*/*"),
            (b"x-forwarded-for", b"203.0.113.9"),  # what the proxy saw
        ],
    }
    assert client_ip(request, trusted) == "203.0.113.9"
