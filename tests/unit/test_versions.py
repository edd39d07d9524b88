import pytest

from bot.domain.errors import InvalidVersion
from bot.domain.versions import known_versions, parse_version, versions_between


def test_versions_compare_as_versions_not_strings():
    assert parse_version("3.10.0") > parse_version("3.9.1")
    assert parse_version("3.9.0.3") < parse_version("3.9.1")
    assert parse_version("3.9.1") == parse_version("3.9.1.0")


def test_the_text_is_kept_as_written():
    assert parse_version(" 3.9.0.3 ").text == "3.9.0.3"


@pytest.mark.parametrize(
    "text",
    ["3.9.1; rm -rf /", "$(reboot)", "latest", "", "v", "3.9.1 && true", "../3.9", "3.9.1\n" * 2],
)
def test_anything_but_a_version_is_refused_with_the_expected_form(text):
    with pytest.raises(InvalidVersion) as caught:
        parse_version(text)
    assert "such as 3.9.1" in str(caught.value)


def test_known_versions_ignores_tags_that_are_not_versions_and_sorts():
    found = known_versions(["latest", "3.10.0", "3.9.1", "3.9.0.3", "stable", "3.9.1"])
    assert [v.text for v in found] == ["3.9.0.3", "3.9.1", "3.10.0"]


def test_versions_between_includes_skipped_versions_in_order():
    available = known_versions(["3.0.0", "3.1.0", "3.2.0", "3.10.0", "3.9.0"])
    between = versions_between(available, parse_version("3.1.0"), parse_version("3.10.0"))
    assert [v.text for v in between] == ["3.2.0", "3.9.0", "3.10.0"]
