"""Identifier text and byte forms."""

from __future__ import annotations

import os

import pytest

from pyrestate.core.ids import AwakeableId, IdError, InvocationId, new_invocation_id


def test_invocation_id_text_round_trip_and_shape() -> None:
    inv = InvocationId(0x0123456789ABCDEF, bytes(range(16)))
    text = str(inv)
    assert text.startswith("inv_1") and len(text) == 38
    assert InvocationId.parse(text) == inv
    assert InvocationId.from_bytes(inv.to_bytes()) == inv


def test_ids_the_official_server_issued_parse() -> None:
    # Seen on the official server 1.7.12: same object key, same partition key prefix.
    a = InvocationId.parse("inv_1foAirY4KKzi1mEAgOVldFp8YOMp4PLSER")
    b = InvocationId.parse("inv_1foAirY4KKzi0Hht4Q82oGeErt6cyVqQl4")
    assert a.partition_key == b.partition_key and a.uuid != b.uuid
    assert str(a) == "inv_1foAirY4KKzi1mEAgOVldFp8YOMp4PLSER"


@pytest.mark.parametrize(
    "bad", ["abc", "inv_1", "inv_2foAirY4KKzi1mEAgOVldFp8YOMp4PLSER", "inv_1!!"]
)
def test_malformed_invocation_ids(bad: str) -> None:
    with pytest.raises(IdError):
        InvocationId.parse(bad)


def test_awakeable_ids_match_the_sdk_form() -> None:
    inv = InvocationId(7, bytes(16))
    awk = AwakeableId(inv, 17)
    assert str(awk).startswith("sign_1")
    assert AwakeableId.parse(str(awk)) == awk
    legacy = AwakeableId(inv, 3, legacy=True)
    assert str(legacy).startswith("prom_1") and AwakeableId.parse(str(legacy)) == legacy
    with pytest.raises(IdError):
        AwakeableId.parse("sign_1abc")


def test_idempotent_ids_are_derived_from_target_and_key() -> None:
    def make(entropy: bytes, key: str | None, idem: str | None) -> InvocationId:
        return new_invocation_id(
            entropy, service="Counter", handler="add", key=key, idempotency_key=idem
        )

    assert make(b"a" * 24, "k", "i1") == make(b"b" * 24, "k", "i1")
    assert make(b"a" * 24, "k", "i1") != make(b"a" * 24, "k", "i2")
    assert make(b"a" * 24, "k", None) != make(b"b" * 24, "k", None)
    # Same object key, same partition: one writer sees all of the key's invocations.
    assert make(b"a" * 24, "k", None).partition_key == make(b"b" * 24, "k", "x").partition_key


@pytest.mark.parametrize(
    ("service", "handler", "key", "idem", "run", "official"),
    [
        # Ids the official server 1.7.12 gave (docs/official-1.7.12-probe.md, item 4).
        ("Greeter", "greet", None, "abc", False, "inv_17wAacjsoPkD5V94Uwh9793XSUOPmpouFs"),
        ("Greeter", "greet", None, "nokey", False, "inv_14fRetsZtgdB7ER1gvG41J4fqta1jO8pUS"),
        ("Counter", "add", "k1", "c1", False, "inv_1foAirY4KKzi3bC0YSjP0Lagsz2O0Ncy6d"),
        ("Wf", "run", "w1", None, True, "inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8"),
        ("Wf", "run", "nope", None, True, "inv_1gcBcCJiwLuP1a4tgVlBtHbEIftgRBFnfU"),
    ],
)
def test_derived_ids_are_the_official_ones(
    service: str, handler: str, key: str | None, idem: str | None, run: bool, official: str
) -> None:
    derived = new_invocation_id(
        os.urandom(24),
        service=service,
        handler=handler,
        key=key,
        idempotency_key=idem,
        workflow_run=run,
    )
    assert str(derived) == official


def test_a_workflows_shared_handlers_share_its_partition_key() -> None:
    # The official gave Wf/w1/status inv_12kpUQONmeFb2tk...: the run's partition key.
    shared = new_invocation_id(
        os.urandom(24), service="Wf", handler="status", key="w1", idempotency_key=None
    )
    assert str(shared)[:16] == "inv_12kpUQONmeFb"
