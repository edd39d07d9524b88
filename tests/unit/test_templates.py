import shlex

import pytest

from bot.domain.templates import (
    TemplateSyntaxError,
    as_is,
    placeholders,
    render,
    render_preview,
)


def test_values_are_quoted_as_one_shell_word():
    evil = "3.9.1; rm -rf / $(reboot) `id`"
    command = render("{home}/bin/pull.sh {version}", {"home": "/opt/myst", "version": evil})
    assert shlex.split(command) == ["/opt/myst/bin/pull.sh", evil]


def test_placeholders_in_order():
    assert placeholders("{a} and {b_2} then {a}") == ["a", "b_2", "a"]


@pytest.mark.parametrize("template", ["{x.y}", "{x[0]}", "{x!r}", "{x:>4}", "{X}", "{", "}"])
def test_only_plain_placeholders_are_template_syntax(template):
    with pytest.raises(TemplateSyntaxError):
        placeholders(template)


def test_preview_shows_later_values_by_name():
    text = render_preview("restore {backup_path} on {host}", {"host": "h1"}, quote=as_is)
    assert text == "restore <backup_path> on h1"


def test_literal_braces_survive():
    assert render("echo {{}} {v}", {"v": "x"}) == "echo {} x"
