"""Keyed events land where the azure-eventhub client itself would route them."""

from __future__ import annotations

import uuid

# The client's own router (private, used here only as the reference to agree with).
from azure.eventhub._buffered_producer._partition_resolver import (  # noqa: E402
    PartitionResolver,
    generate_hash_code,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from iotlib.ingest.partitioning import hash_code, lookup3, partition_for_key, partition_index

ascii_keys = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=64)


@settings(max_examples=400, deadline=None)
@given(ascii_keys)
def test_hash_code_matches_the_client(key: str) -> None:
    assert hash_code(key) == generate_hash_code(key)


@settings(max_examples=200, deadline=None)
@given(ascii_keys.filter(bool), st.integers(min_value=1, max_value=32))
def test_partition_matches_the_clients_resolver(key: str, count: int) -> None:
    ids = [str(i) for i in range(count)]
    assert partition_for_key(key, ids) == PartitionResolver(ids).get_partition_id_by_partition_key(key)


def test_device_guids_spread_over_partitions() -> None:
    keys = [str(uuid.UUID(int=i * 7919 + 12345)) for i in range(8000)]
    counts = [0] * 8
    for key in keys:
        counts[partition_index(key, 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts


def test_lookup3_known_values() -> None:
    # Published test vectors of hashlittle2 (lookup3.c's driver5).
    assert lookup3(b"", 0, 0) == (0xDEADBEEF, 0xDEADBEEF)
    assert lookup3(b"", 0, 0xDEADBEEF) == (0xBD5B7DDE, 0xDEADBEEF)
    assert lookup3(b"Four score and seven years ago", 0, 0) == (0x17770551, 0xCE7226E6)
