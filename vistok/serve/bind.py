"""Where `vistok serve` may listen: loopback by default, other addresses only with an API key or --insecure."""

from __future__ import annotations

import ipaddress

LOOPBACK = ("127.0.0.1", "localhost")
LITSERVE_HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # the only addresses litserve binds


def check_bind(host: str, api_key: str | None, insecure: bool) -> str:
    """The address to bind, or a ValueError: loopback by default; any other address needs an API key or
    an explicit --insecure."""
    if host in LOOPBACK:
        return "127.0.0.1"
    if host not in LITSERVE_HOSTS:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"--host {host!r} is not an IP address") from None
        raise ValueError(f"--host {host}: litserve binds 127.0.0.1 (default), 0.0.0.0 (all IPv4 interfaces) or :: "
                         "(all interfaces) only")
    if not api_key and not insecure:
        raise ValueError(f"refusing to bind {host} (reachable from other machines) without authentication: pass "
                         "--api-key KEY (or set VISTOK_API_KEY), or --insecure to serve without a key anyway")
    return host
