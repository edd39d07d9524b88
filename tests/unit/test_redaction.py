import pytest

from bot.domain.redaction import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("token xoxb-1234567890-abcdefghij leaked", "token "),
        ("export PASSWORD=hunter2hunter", "export PASSWORD="),
        ('{"api_key": "abcd1234efgh"}', '{"api_key": '),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y", "Authorization: Bearer "),
        ("pulling https://bot:s3cr3tpw@registry.example.com/v2/", "pulling https://"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", ""),
    ],
)
def test_secret_looking_text_is_masked(text, kept):
    redacted = Redactor().text(text)
    assert redacted.startswith(kept)
    assert MASK in redacted
    secret_part = text[len(kept) :].split()[0].strip('"')
    assert secret_part not in redacted


def test_known_secrets_are_masked_wherever_they_appear():
    redactor = Redactor(["correct-horse-battery", None, "abc"])
    message = {"text": "pw is correct-horse-battery", "blocks": [{"t": ["correct-horse-battery"]}]}
    assert "correct-horse-battery" not in str(redactor.value(message))
    assert (
        redactor.text("abc stays: too short to be a secret")
        == "abc stays: too short to be a secret"
    )


def test_ordinary_output_is_left_alone():
    text = "Backed up to /opt/myst-studio/backup/myst-studio-1700000000.sql"
    assert Redactor(["s3cr3t-value"]).text(text) == text


def test_log_records_are_redacted_with_their_arguments_and_tracebacks():
    import logging

    from bot.logs import RedactingFilter

    record = logging.LogRecord(
        "bot", logging.ERROR, __file__, 1, "token %s", ("xoxb-123456789-abc",), None
    )
    try:
        raise RuntimeError("password=hunter2hunter2")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(Redactor()).filter(record)
    assert "xoxb-123456789" not in record.getMessage()
    assert "hunter2hunter2" not in (record.exc_text or "")
