"""`config.container`: an image, a command (argument list or shell string) and an env map,
checked by the domain before anything is written; `container_argv` is what runs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailplane.domain.errors import InvalidValueError
from sailplane.domain.jobs import (
    COMMAND_ARGS_MAX,
    ENV_MAX,
    check_container,
    check_version_fields,
    container_argv,
)

GOOD = {"image": "alpine:3.20", "command": ["echo", "hello"], "env": {"STAGE": "prod"}}


def refused(container: Any) -> InvalidValueError:
    with pytest.raises(InvalidValueError) as raised:
        check_version_fields({"config": {"container": container}})
    return raised.value


def test_a_container_with_image_command_and_env_is_accepted() -> None:
    assert check_version_fields({"config": {"container": GOOD}}) == {"config": {"container": GOOD}}
    assert check_container({"image": "alpine", "command": "exit 3"})["env"] == {}


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ("alpine", "config.container"),
        ({**GOOD, "entrypoint": "x"}, "config.container"),
        ({**GOOD, "image": ""}, "config.container.image"),
        ({**GOOD, "image": "a" * 513}, "config.container.image"),
        ({**GOOD, "command": []}, "config.container.command"),
        ({**GOOD, "command": [""]}, "config.container.command"),
        ({**GOOD, "command": ["echo", 3]}, "config.container.command"),
        ({**GOOD, "command": ["x"] * (COMMAND_ARGS_MAX + 1)}, "config.container.command"),
        ({**GOOD, "command": "   "}, "config.container.command"),
        ({**GOOD, "command": {"run": "x"}}, "config.container.command"),
        ({"image": "alpine"}, "config.container.command"),
        ({**GOOD, "env": {"1BAD": "x"}}, "config.container.env"),
        ({**GOOD, "env": {"SAILPLANE_RUN_ID": "forged"}}, "config.container.env"),
        ({**GOOD, "env": {"OK": 1}}, "config.container.env"),
        ({**GOOD, "env": {"OK": "a\0b"}}, "config.container.env"),
        ({**GOOD, "env": {f"V{i}": "x" for i in range(ENV_MAX + 1)}}, "config.container.env"),
        ({**GOOD, "env": ["A=1"]}, "config.container.env"),
    ],
)
def test_a_malformed_container_is_refused_naming_its_field(container: Any, field: str) -> None:
    assert refused(container).field == field


def test_a_config_names_one_kind_of_work() -> None:
    with pytest.raises(InvalidValueError) as raised:
        check_version_fields({"config": {"container": GOOD, "python": {"source": "print(1)"}}})
    assert raised.value.field == "config"


@given(st.text(min_size=1, max_size=200).filter(str.strip))
def test_a_shell_string_runs_through_sh_and_a_list_runs_as_it_is(command: str) -> None:
    assert container_argv(command) == ["/bin/sh", "-c", command]
    assert container_argv([command, "--flag"]) == [command, "--flag"]


@pytest.mark.parametrize(
    "tags",
    [["a"], {"": "x"}, {"k": 1}, {"k": "a\nb"}, {f"t{i}": "x" for i in range(65)}],
)
def test_malformed_tags_are_refused(tags: Any) -> None:
    with pytest.raises(InvalidValueError) as raised:
        check_version_fields({"config": {"container": GOOD, "tags": tags}})
    assert raised.value.field == "config.tags"


def test_tags_are_kept() -> None:
    config = {"container": GOOD, "tags": {"team": "data", "tier": "gold"}}
    assert check_version_fields({"config": config}) == {"config": config}
