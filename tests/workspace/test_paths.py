"""Workspace names, uploaded paths and owners."""

from __future__ import annotations

import pytest

from cerebrum.workspace.paths import (
    InvalidPath,
    check_name,
    check_path,
    name_for_directory,
    owner_id,
)


@pytest.mark.parametrize("path", ["a.py", "src/pkg/mod.py", "a-b/c_d/.hidden.py", "x/..y.py"])
def test_clean_relative_paths_pass(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", [
    "../etc/passwd", "a/../../b.py", "/etc/passwd", "./a.py", "a//b.py", "a/./b.py", "a/",
    "C:/win.py", "a\\b.py", "a\x00.py", "a\nb.py", "", "a/" * 70 + "b.py", "x" * 2000,
])
def test_escaping_or_odd_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_path(path)


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidPath):
        check_path(None)
    with pytest.raises(InvalidPath):
        check_name(["x"])


@pytest.mark.parametrize("name", ["cerebrum", "my-repo_2", "a.b"])
def test_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "-x", "a/b", "a b", "x" * 65, "w.sqlite", "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidPath):
        check_name(name)


def test_a_directory_name_becomes_a_valid_name() -> None:
    assert name_for_directory("My Repo!") == "My-Repo"
    assert check_name(name_for_directory("...")) == "workspace"


def test_owners_are_digests_of_keys_never_the_keys() -> None:
    first, second = owner_id("key-one-123", False), owner_id("key-two-456", False)
    assert first != second and "key" not in first
    assert owner_id("key-one-123", False) == first
    assert owner_id(None, False) == "open"
    assert owner_id("key-one-123", True) == owner_id("key-two-456", True) == "shared"
