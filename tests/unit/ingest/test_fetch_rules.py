"""The fetcher's pure parts: allow-list parsing, address categories, sniffing, Retry-After."""

from __future__ import annotations

import ipaddress
import socket
from email.utils import formatdate

import pytest

from ingest.fetcher import (
    AddressGuard,
    AddressRefused,
    describe_content,
    parse_allow,
    retry_after_s,
    sniff_image,
)
from tests.integration.ingest_support import images


@pytest.fixture
def no_connections(monkeypatch):
    """Classifying must never open a connection: any attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_allow_list_entries():
    rules = parse_allow("127.0.0.0/8, 10.1.2.3:8080, [::1]:9000, fd00::/8")
    ip = ipaddress.ip_address
    assert rules[0].matches(ip("127.0.0.5"), 1) and not rules[0].matches(ip("10.0.0.1"), 1)
    assert rules[1].matches(ip("10.1.2.3"), 8080) and not rules[1].matches(ip("10.1.2.3"), 8081)
    assert rules[2].matches(ip("::1"), 9000) and rules[3].matches(ip("fd00::5"), 80)
    with pytest.raises(ValueError, match="allow-list entry"):
        parse_allow("not-an-ip")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.8", "private-use"),
        ("192.168.1.1", "private-use"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1: loopback"),
        ("0.0.0.0", "this host on this network"),
        ("100.64.0.1", "shared address space"),
        ("192.0.0.8", "IPv4 dummy address"),  # public to Python 3.11's ipaddress
        ("2002:7f00:1::1", "6to4 form of 127.0.0.1: loopback"),
        ("fec0::1", "site-local"),
    ],
)
def test_guard_refuses_non_global_addresses(host, why, no_connections):
    with pytest.raises(AddressRefused, match=why):
        AddressGuard().permitted(host, 80)


def test_guard_allows_listed_destinations_and_public_ones(no_connections):
    assert AddressGuard(parse_allow("127.0.0.1:8080")).permitted("127.0.0.1", 8080) == [(2, "127.0.0.1")]
    with pytest.raises(AddressRefused):
        AddressGuard(parse_allow("127.0.0.1:8080")).permitted("127.0.0.1", 8081)
    assert AddressGuard().permitted("93.184.215.14", 443)  # a literal: no DNS needed


def test_sniffing_reads_bytes_not_names():
    assert sniff_image(images.jpeg(1)[:16]) == "image/jpeg"
    assert sniff_image(images.webp()[:16]) == "image/webp"
    assert sniff_image(images.tiff()[:16]) == "image/tiff"
    assert sniff_image(images.HTML) is None
    assert describe_content(images.HTML) == "HTML"
    assert describe_content(images.SVG).startswith("SVG")


def test_retry_after_seconds_date_and_reset():
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == pytest.approx(
        30
    )
    assert retry_after_s({"x-rate-limit-reset": "1000045"}, now=1_000_000) == 45
    assert retry_after_s({}) is None
