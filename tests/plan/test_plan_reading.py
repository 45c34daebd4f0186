"""Reading plan files: bounded, duplicate keys refused, every problem located."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from phaser.plan import PlanError, load_plans, validate_plan
from phaser.plan.load import read_documents
from phaser.plan.read import MAX_DEPTH, MAX_STRING_CHARS, MAX_VALUES, PlanYamlLoader, read_yaml_documents

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9)
)


def read_error(tmp_path: Path, text: str | bytes, name: str = "plan.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.perf_counter()
    with pytest.raises(PlanError) as info:
        load_plans(path)
    # a bound for a hang, not a speed test: refusing takes milliseconds, a hang never ends
    assert time.perf_counter() - started < 60, "reading must fail fast"
    assert str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: a\nname: b\n", "line 1, column 1 and at line 2, column 1"),
        ("engines:\n- niter: 1\n  niter: 2\n", "line 2, column 3 and at line 3, column 3"),
        ("raw_data: {type: manual, type: empad}\n", "line 1, column 12 and at line 1, column 26"),
    ],
)
def test_duplicate_yaml_keys_are_refused_with_both_places(tmp_path: Path, text: str, where: str) -> None:
    message = read_error(tmp_path, text)
    assert "written twice" in message and where in message


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert read_documents(path) == [{"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}]


def test_duplicate_json_keys_are_refused_with_lines(tmp_path: Path) -> None:
    message = read_error(tmp_path, '{\n "name": "a",\n "niter": 1,\n "name": "b"\n}', "plan.json")
    assert "'name' written twice" in message and "lines 2, 4" in message


def test_billion_laughs_fails_fast(tmp_path: Path) -> None:
    message = read_error(tmp_path, LAUGHS)
    assert f"more than {MAX_VALUES} values" in message and "line" in message


def test_self_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "contains it" in read_error(tmp_path, "a: &a [1, *a]\n")
    assert "contains it" in read_error(tmp_path, "a: &a {b: *a}\n")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    assert "levels deep" in read_error(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
    assert "levels deep" in read_error(tmp_path, '{"a": ' + "[" * depth + "]" * depth + "}", "plan.json")


def test_nesting_at_the_limit_is_read() -> None:
    assert read_yaml_documents("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))


def test_huge_strings_are_refused_and_not_echoed(tmp_path: Path) -> None:
    message = read_error(tmp_path, "name: " + "x" * (MAX_STRING_CHARS + 1) + "\n")
    assert f"{MAX_STRING_CHARS + 1} characters" in message and len(message) < 500
    message = read_error(tmp_path, "name: " + "x" * 50_000_000 + "\n")
    assert "larger than a plan can be" in message and len(message) < 500


def test_huge_strings_in_data_are_refused_and_not_echoed() -> None:
    with pytest.raises(PlanError) as info:
        validate_plan({"name": "y" * 50_000_000})
    assert "name" in str(info.value) and len(str(info.value)) < 500


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(PlanError) as info:
        validate_plan({"name": "ok", "dtype": "z" * 5000, "engines": []}, check_files=False)
    assert "(5002 characters)" in str(info.value) and len(str(info.value)) < 1000


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: [unclosed\n", "line 2, column 1"),
        ("name: a\n  bad: indent\n", "line 2, column 6"),
        ("a: *nowhere\n", "line 1, column 4"),
    ],
)
def test_yaml_parse_errors_have_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    message = read_error(tmp_path, text)
    assert "not valid YAML" in message and where in message


def test_json_parse_errors_have_line_and_column(tmp_path: Path) -> None:
    assert "line 2, column 11" in read_error(tmp_path, '{"name":\n "a", "x" 1}', "plan.json")
    assert "NaN is not a number" in read_error(tmp_path, '{"name": NaN}', "plan.json")


def test_binary_and_hdf5_files_are_refused(tmp_path: Path) -> None:
    assert "HDF5 file, not a plan" in read_error(tmp_path, b"\x89HDF\r\n\x1a\n\x00\x00rest", "out.h5")
    assert "HDF5 file, not a plan" in read_error(tmp_path, b"\x89HDF\r\n\x1a\n\x00\x00rest", "plan.yaml")
    assert "not UTF-8" in read_error(tmp_path, b"name: \xff\xfe\n")
    assert "NUL character at line 2" in read_error(tmp_path, b"name: a\nb: \x00\n")


def test_loader_class_is_reusable() -> None:
    class Tagged(PlanYamlLoader):
        pass

    Tagged.add_constructor("!twice", lambda loader, node: 2 * loader.construct_scalar(node))
    assert read_yaml_documents("a: !twice ab\n", Tagged) == [{"a": "abab"}]
    with pytest.raises(ValueError, match="written twice"):
        read_yaml_documents("a: 1\na: 2\n", Tagged)
