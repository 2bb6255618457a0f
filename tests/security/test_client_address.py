"""The client address behind proxies and the allow-list match (app.auth.network, pure)."""

from __future__ import annotations

import pytest

from app.auth.network import client_address, is_allowed, parse_networks
from app.config import ConfigError, Settings

PROXIES = parse_networks("10.0.0.0/24, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("198.51.100.9", [], "198.51.100.9"),
        ("198.51.100.9", ["203.0.113.7"], "198.51.100.9"),  # untrusted peer: header ignored
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.5", ["203.0.113.7, 10.0.0.9"], "203.0.113.7"),
        ("10.0.0.5", ["1.2.3.4, 203.0.113.7"], "203.0.113.7"),  # the client wrote 1.2.3.4
        ("10.0.0.5", ["1.2.3.4", "203.0.113.7"], "203.0.113.7"),  # two header lines
        ("10.0.0.5", ["10.0.0.7, 10.0.0.9"], "10.0.0.7"),  # only proxies: the farthest
        ("10.0.0.5", ["garbage, 10.0.0.9"], "garbage"),
        ("10.0.0.5", ["203.0.113.7:4711"], "203.0.113.7"),
        ("10.0.0.5", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:10.0.0.5", ["203.0.113.7"], "203.0.113.7"),  # IPv4-mapped peer
        ("testclient", ["203.0.113.7"], "testclient"),  # not an address: as it is
        (None, ["203.0.113.7"], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded_for: list[str], expected: str) -> None:
    assert client_address(peer, forwarded_for, trusted=PROXIES) == expected


def test_without_trusted_proxies_the_header_never_counts() -> None:
    assert client_address("127.0.0.1", ["203.0.113.7"], trusted=()) == "127.0.0.1"


def test_a_very_long_header_is_read_only_from_the_right() -> None:
    hops = ", ".join(["10.0.0.9"] * 10_000)
    assert client_address("10.0.0.5", [hops], trusted=PROXIES) == "10.0.0.9"


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("203.0.113.7", True),
        ("::ffff:203.0.113.7", True),
        ("10.1.255.255", True),
        ("10.2.0.0", False),
        ("2001:db8::1", False),
        ("unknown", False),
        ("", False),
    ],
)
def test_is_allowed(client: str, allowed: bool) -> None:
    assert is_allowed(client, parse_networks("203.0.113.7, 10.1.0.0/16")) is allowed


def test_an_empty_allow_list_allows_everyone() -> None:
    assert is_allowed("unknown", ())


def test_parse_networks_accepts_spaces_hosts_and_cidrs() -> None:
    assert [str(n) for n in parse_networks(" 203.0.113.7 ,, 10.1.2.3/16 ,2001:db8::/32")] == [
        "203.0.113.7/32",
        "10.1.0.0/16",
        "2001:db8::/32",
    ]


@pytest.mark.parametrize(
    ("field", "env_name"),
    [
        ("bolna_webhook_allowed_ips", "BOLNA_WEBHOOK_ALLOWED_IPS"),
        ("trusted_proxies", "TRUSTED_PROXIES"),
    ],
)
@pytest.mark.parametrize("value", ["203.0.113.300", "bolna.ai", "10.0.0.0/33"])
def test_a_bad_entry_refuses_to_start_naming_the_setting(
    field: str, env_name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"{env_name}: '{value}' is not an IP address"):
        Settings(_env_file=None, **{field: f"10.0.0.1, {value}"})
