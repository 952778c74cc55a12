"""The push-URL policy: the SDK's address rules, applied to every address a name resolves to, then pinned."""

from __future__ import annotations

import pytest
from a2a.utils.push_url_validator import validate_push_notification_url

from gateway.push.addresses import PinnedTarget, PushAddressPolicy, Refusal

LITERALS = [
    "http://127.0.0.1:8080/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fd00::1]/hook",
    "https://93.184.216.34/hook",
    "http://[2606:4700:4700::1111]/hook",
    "ftp://93.184.216.34/hook",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", LITERALS)
async def test_registration_check_answers_as_the_sdk_validator(url: str) -> None:
    assert await PushAddressPolicy(allow_private=False).allows(url) == await validate_push_notification_url(url)


class Fixed:
    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    async def __call__(self, host: str, port: int) -> list[str]:
        return self.addresses


async def test_one_private_answer_among_public_ones_is_refused() -> None:
    policy = PushAddressPolicy(allow_private=False, resolver=Fixed("93.184.216.34", "10.0.0.7"))
    refusal = await policy.pin("https://hooks.example/hook")
    assert isinstance(refusal, Refusal) and refusal.reason == "address-refused" and "10.0.0.7" in refusal.detail


async def test_https_target_is_pinned_to_the_address_with_the_name_as_host_and_server_name() -> None:
    policy = PushAddressPolicy(allow_private=False, resolver=Fixed("2606:4700:4700::1111"))
    target = await policy.pin("https://hooks.example:8443/a/hook?x=1")
    assert isinstance(target, PinnedTarget)
    assert str(target.url) == "https://[2606:4700:4700::1111]:8443/a/hook?x=1"
    assert target.host_header == "hooks.example:8443"
    assert target.extensions == {"sni_hostname": "hooks.example"}


async def test_a_name_that_does_not_resolve_is_retryable_and_allowed_private_still_pins() -> None:
    async def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    refusal = await PushAddressPolicy(allow_private=False, resolver=nowhere).pin("http://gone.example/hook")
    assert isinstance(refusal, Refusal) and refusal.retryable and refusal.reason == "unresolvable"
    target = await PushAddressPolicy(allow_private=True, resolver=Fixed("127.0.0.1")).pin("http://local.test/h")
    assert isinstance(target, PinnedTarget) and str(target.url) == "http://127.0.0.1/h" and target.extensions == {}
