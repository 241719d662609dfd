"""The fetcher's address guard, row by row: every block of IANA's IPv4 and IPv6 special-purpose
address registries (their "Globally Reachable" column), the IPv6 forms that carry an IPv4 address
(IPv4-mapped and -compatible, NAT64, 6to4, Teredo) judged by what they carry, and the same answers
whatever the Python version. Nothing here connects anywhere: the guard's refusal comes first."""

from __future__ import annotations

import ipaddress

import pytest

from ingest.fetcher import (
    IPV4_SPECIAL,
    IPV6_SPECIAL,
    AddressRefused,
    FetchConfig,
    Fetcher,
    address_category,
    embedded_ipv4,
)

# (address, what the guard must say: a part of the refusal, or None for "may be reached").
# Restated by hand from the registries rather than derived from the table under test.
IPV4_CASES = [
    ("0.1.2.3", '"this network"'),
    ("0.0.0.0", '"this host on this network"'),
    ("10.0.0.1", "private-use"),
    ("10.255.255.255", "private-use"),
    ("11.0.0.0", None),
    ("100.64.0.0", "shared address space"),
    ("100.127.255.255", "shared address space"),
    ("100.128.0.0", None),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private-use"),
    ("172.31.255.255", "private-use"),
    ("172.32.0.0", None),
    ("192.0.0.1", "IPv4 service continuity prefix"),
    ("192.0.0.7", "IPv4 service continuity prefix"),
    ("192.0.0.8", "IPv4 dummy address"),
    ("192.0.0.9", None),  # Port Control Protocol anycast: globally reachable
    ("192.0.0.10", None),  # TURN anycast: globally reachable
    ("192.0.0.11", "IETF protocol assignments"),
    ("192.0.0.170", "NAT64/DNS64 discovery"),
    ("192.0.0.171", "NAT64/DNS64 discovery"),
    ("192.0.0.255", "IETF protocol assignments"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.31.196.1", None),  # AS112-v4
    ("192.52.193.1", None),  # AMT
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.88.99.2", "6a44 relay anycast"),
    ("192.168.0.1", "private-use"),
    ("192.169.0.0", None),
    ("192.175.48.1", None),  # AS112 direct delegation
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.20.0.0", None),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.9", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.255", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("1.1.1.1", None),
    ("8.8.8.8", None),
    ("93.184.215.14", None),
    ("223.255.255.255", None),
]
IPV6_CASES = [
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:8.8.8.8", None),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1: loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254: link-local"),
    ("::10.0.0.1", "IPv4-compatible form of 10.0.0.1: private-use"),
    ("::8.8.8.8", None),
    ("64:ff9b::8.8.8.8", None),  # NAT64 of a public address: globally reachable
    ("64:ff9b::10.1.2.3", "NAT64 form of 10.1.2.3: private-use"),
    ("64:ff9b::192.0.0.8", "NAT64 form of 192.0.0.8: IPv4 dummy address"),
    ("64:ff9b:1::1", "local-use IPv4-IPv6 translation"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy IPv6 prefix"),
    ("2001:2::1", "benchmarking"),
    ("2001:1::1", None),  # PCP anycast
    ("2001:1::2", None),  # TURN anycast
    ("2001:1::3", None),  # DNS-SD SRP anycast
    ("2001:1::4", "IETF protocol assignments"),
    ("2001:3::1", None),  # AMT
    ("2001:4:112::1", None),  # AS112-v6
    ("2001:10::1", "deprecated ORCHID"),
    ("2001:20::1", None),  # ORCHIDv2
    ("2001:30::1", None),  # drone remote ID
    ("2001:1ff::1", "IETF protocol assignments"),
    ("2001:200::1", None),  # just past 2001::/23
    ("2001:db8::1", "documentation"),
    ("2002:808:808::1", None),  # 6to4 of 8.8.8.8
    ("2002:7f00:1::1", "6to4 form of 127.0.0.1: loopback"),
    ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254: link-local"),
    # Teredo (RFC 4380's example): server 65.54.227.120, client 192.0.2.45 stored inverted.
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo client form of 192.0.2.45"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo client form of 127.0.0.1: loopback"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo server form of 10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),  # server and client (8.8.8.8) public
    ("2620:4f:8000::1", None),  # AS112 direct delegation
    ("3fff::1", "documentation"),
    ("3fff:fff::1", "documentation"),
    ("3fff:1000::1", None),
    ("5f00::1", "segment routing"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("4000::1", "reserved by the IETF"),
    ("::2:0:0", "reserved by the IETF"),
    ("2606:4700:4700::1111", None),
    ("2a00:1450:4001:81c::200e", None),
]


@pytest.mark.parametrize(("address", "expected"), IPV4_CASES + IPV6_CASES)
def test_each_registry_row_and_embedded_form(address, expected):
    why = address_category(ipaddress.ip_address(address))
    if expected is None:
        assert why is None, f"{address} refused: {why}"
    else:
        assert why is not None and expected in why, f"{address}: {why!r}, expected {expected!r}"


def test_every_row_of_the_tables_is_exercised():
    for table, cases in ((IPV4_SPECIAL, IPV4_CASES), (IPV6_SPECIAL, IPV6_CASES)):
        for block in table:
            hit = [a for a, _ in cases if ipaddress.ip_address(a) in block.network]
            assert hit, f"no case inside {block.network} ({block.name})"


def test_the_answers_do_not_depend_on_the_standard_librarys_classification(monkeypatch):
    # Python's is_private / is_global changed between versions; the guard must not ask them.
    def forbidden(self):
        raise AssertionError("the guard asked ipaddress for a classification")

    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for name in (
            "is_private",
            "is_global",
            "is_reserved",
            "is_loopback",
            "is_link_local",
            "is_multicast",
            "is_unspecified",
            "is_site_local",
            "ipv4_mapped",
            "sixtofour",
            "teredo",
        ):
            if hasattr(cls, name):
                monkeypatch.setattr(cls, name, property(forbidden))
    for address, expected in IPV4_CASES + IPV6_CASES:
        why = address_category(ipaddress.ip_address(address))
        assert (why is None) == (expected is None), address


def test_embedded_addresses_by_bit_arithmetic():
    ip = ipaddress.IPv6Address
    assert embedded_ipv4(ip("2002:c000:0204::1")) == [("6to4", ipaddress.IPv4Address("192.0.2.4"))]
    assert embedded_ipv4(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == [
        ("Teredo server", ipaddress.IPv4Address("65.54.227.120")),
        ("Teredo client", ipaddress.IPv4Address("192.0.2.45")),
    ]
    assert embedded_ipv4(ip("2606:4700::1")) == []


@pytest.mark.parametrize("host", ["192.0.0.8", "[2002:7f00:1::1]", "[fec0::1]", "[64:ff9b::7f00:1]"])
def test_a_fetch_to_such_an_address_is_refused_before_any_connection(host, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection left for {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(AddressRefused, match="not on the fetch allow-list"):
        Fetcher(FetchConfig(total_timeout_s=5)).get(f"http://{host}/image.png")
