# -*- test-case-name: tests.unit.test_addresses -*-
"""
A host and a port as users write them: C{127.0.0.1:1200}, C{[::1]:1200}.
Every line caps prints or parses names an address this one way.
"""


def host_port(host: str, port: int | str) -> str:
    """C{host:port}, with an IPv6 literal (any host with a colon) in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
