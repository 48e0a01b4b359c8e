"""Artifact URLs that reach link-local or cloud metadata addresses are refused by the runtime's guard, however the
address is spelled and on every redirect. Run inside a loopback-only network namespace (tests/helpers/netns.py): a guard
that regressed gets "network unreachable", and the test tells that apart from a refusal."""

from __future__ import annotations

import ipaddress

import pytest

from aibrix.storage.policy import is_blocked
from tests.helpers.netns import probe_artifact_urls

METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/adapter.bin",
    "http://[fd00:ec2::254]/latest/adapter.bin",
    "http://[::ffff:169.254.169.254]/latest/meta-data/adapter.bin",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/adapter.bin",  # the same, in hex
    "http://[::169.254.169.254]/latest/meta-data/adapter.bin",  # IPv4-compatible
    "http://[64:ff9b::169.254.169.254]/latest/meta-data/adapter.bin",  # NAT64 well-known prefix
    "http://[2002:a9fe:a9fe::1]/latest/meta-data/adapter.bin",  # 6to4
    "http://2852039166/latest/meta-data/adapter.bin",  # one decimal number
    "http://0251.0376.0251.0376/latest/meta-data/adapter.bin",  # octal, zero-padded
    "http://169.254.169.254.:80/latest/meta-data/adapter.bin",  # trailing dot
    "http://[fe80::1]/adapter.bin",  # IPv6 link-local
    "http://100.100.100.200/latest/meta-data/adapter.bin",  # Alibaba Cloud metadata
]


def test_metadata_addresses_are_refused_however_spelled_through_redirects_and_for_every_caller() -> None:
    answers = probe_artifact_urls(METADATA_URLS)
    # adapter load and model download, each direct and redirected; S3 and TOS endpoints from credentials
    assert len(answers) == 6 * len(METADATA_URLS)
    for answer in answers:
        error = answer["error"]
        # A refusal by the guard: 403 naming the reason; a network error (502, "unreachable") means it got through.
        assert (answer["status"], error.get("type")) == (403, "AccessDenied"), answer
        assert "link-local or cloud metadata address" in error["message"], answer


@pytest.mark.parametrize(
    "address, blocked",
    [
        ("::ffff:169.254.169.254", True), ("::169.254.169.254", True), ("64:ff9b::a9fe:a9fe", True),
        ("2002:a9fe:a9fe::1", True), ("fd00:ec2::254", True), ("fe80::1", True), ("0.0.0.0", True),
        ("fd20:ce::254", True), ("fd00:ec2::23", True), ("192.0.0.192", True),
        ("64:ff9b:1::a9fe:a9fe", True), ("64:ff9b:1:a9fe:a9:fe00::", True), ("64:ff9b:1:a9:fe:a9fe::", True),
        ("64:ff9b:1::808:808", False), ("64:ff9b:1:808:8:800::", False), ("64:ff9b::808:808", False),
        ("127.0.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False), ("10.1.2.3", False), ("::", False),
    ],
)  # fmt: skip
def test_every_spelling_of_an_address_is_judged_by_the_ipv4_it_reaches(address: str, blocked: bool) -> None:
    assert is_blocked(ipaddress.ip_address(address)) is blocked
