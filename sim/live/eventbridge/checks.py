"""Resource checks of S15 and the header rules config and requests share: pure string checks.

Each check returns the cleaned value or raises ValueError with a message meant for users;
`check_endpoint` returns a problem string (or None) since callers attach their own key path.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REFUSED_METHODS = ("CONNECT", "TRACE")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name token
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except horizontal tab
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
PRIVATE_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def check_method(method: str) -> str:
    """An HTTP method of S15: any of the usual ones; CONNECT and TRACE are refused."""
    upper = method.strip().upper()
    if upper in REFUSED_METHODS:
        raise ValueError(f"{upper} is not allowed for an API destination")
    if upper not in ALLOWED_METHODS:
        allowed = ", ".join(ALLOWED_METHODS)
        raise ValueError(f"{method!r} is not an HTTP method (use one of {allowed})")
    return upper


def check_header_name(name: str) -> str:
    """A header name must be an HTTP token (no spaces, colons or control characters)."""
    if not _TOKEN.match(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")
    return name


def has_control_characters(value: str) -> bool:
    """True if a header value holds CR, LF or another control character (tab is allowed)."""
    return bool(_CONTROL.search(value))


def check_header_value(value: str) -> str:
    """A header value must not contain CR, LF or other control characters."""
    if has_control_characters(value):
        raise ValueError("header values must not contain CR, LF or control characters")
    return value


def is_private_address(address: str) -> bool:
    """True for loopback, private, shared (100.64/10), link-local, reserved, multicast and
    unspecified IPs."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or not ip.is_global
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def is_private_host(host: str) -> bool:
    """True for a private/loopback IP literal or a local-only name such as `localhost`."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        return is_private_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):  # 2130706433, 127.1, 0x7f.0.0.1, 0177.0.0.1: resolvers accept them
        try:
            return is_private_address(socket.inet_ntoa(socket.inet_aton(host)))
        except OSError:
            return True  # numeric but not an address: nothing public looks like this
    return host in PRIVATE_NAMES or host.endswith((".localhost", ".local", ".internal"))


def check_endpoint(url: str, allow_private: bool, *, wildcards: bool) -> str | None:
    """The S15 problem with an endpoint URL, or None: HTTPS, public host, no credentials.

    With `allow_private` (local testing only) plain HTTP and private/loopback hosts pass.
    `*` path wildcards are allowed only where `wildcards` is set, and only in the path.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"not a valid URL ({err})"
    del port
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        hint = "" if allow_private else " (plain HTTP only with sim.allow_private_endpoints)"
        return f"must be an https:// URL{hint}"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials do not belong in the URL; put them in a Connection"
    if not allow_private and is_private_host(parts.hostname):
        return (
            f"{parts.hostname} is a private or loopback address; endpoints must be public "
            "(set sim.allow_private_endpoints: true for local testing)"
        )
    if "*" in parts.netloc or "*" in parts.query or "*" in parts.fragment:
        return "'*' wildcards are allowed only in the path"
    if "*" in parts.path and not wildcards:
        return "'*' wildcards are not allowed here"
    if has_control_characters(url) or " " in url:
        return "the URL contains spaces or control characters"
    return None


def reference_name(reference: str, kind: str) -> str:
    """The resource name in a reference: a plain name or an ARN `...:{kind}/NAME[/UUID]`."""
    if reference.startswith("arn:"):
        resource = reference.split(":", 5)[-1]
        prefix = f"{kind}/"
        if resource.startswith(prefix):
            return resource[len(prefix) :].split("/")[0]
    return reference
