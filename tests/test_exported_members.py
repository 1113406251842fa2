"""The public names: exported from the package root, sorted, with tidy reprs."""

from __future__ import annotations

import dagrt
import dagrt.storage


def test_all_public_names_are_exported_and_exist() -> None:
    for name in dagrt.__all__:
        assert hasattr(dagrt, name), name
    assert sorted(dagrt.__all__, key=str.lower) == sorted(set(dagrt.__all__), key=str.lower)
    for name in (
        "task",
        "DAG",
        "Node",
        "Client",
        "LocalCluster",
        "RunFuture",
        "TaskError",
        "compute",
        "StorageError",
        "SerializationError",
    ):
        assert name in dagrt.__all__


def test_public_classes_say_dagrt() -> None:
    for name in dagrt.__all__:
        obj = getattr(dagrt, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "dagrt", name


def test_storage_exports() -> None:
    for name in dagrt.storage.__all__:
        assert hasattr(dagrt.storage, name), name
