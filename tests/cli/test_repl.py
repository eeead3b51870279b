"""The REPL's commands, without a service: ``/model`` checked against the service's list."""

from __future__ import annotations

import io

from cerebrum.cli.render import Output
from cerebrum.cli.repl import HELP, Conversation


def run(conversation: Conversation, line: str, models: list[str] | None) -> str:
    stream = io.StringIO()
    assert conversation.command(line, Output(stream), models) is True
    return stream.getvalue()


def test_model_is_checked_against_the_services_list() -> None:
    chat = Conversation(None, True, {})
    models = ["smollm2-135m", "auto"]
    said = run(chat, "/model nonexistent", models)
    assert "unknown model 'nonexistent'" in said and "smollm2-135m, auto" in said
    assert chat.model is None  # refused now, not on the next message
    assert "model: smollm2-135m" in run(chat, "/model smollm2-135m", models)
    assert chat.model == "smollm2-135m"
    assert run(chat, "/model", models) == "model: smollm2-135m (the service has: " \
                                          "smollm2-135m, auto)\n"
    run(chat, "/model default", models)
    assert chat.model is None
    assert chat.request("hi").get("model") is None


def test_model_is_taken_unchecked_when_the_list_is_unknown() -> None:
    chat = Conversation(None, True, {})
    assert run(chat, "/model qwen", None) == "model: qwen\n"
    assert chat.request("hi")["model"] == "qwen"


def test_help_says_what_model_with_and_without_a_name_does() -> None:
    assert "/model               show the model in use and those the service has" in HELP
    assert "/model NAME          use NAME from the next message on" in HELP
    assert "/model default: the service's choice" in HELP


def test_what_went_wrong_goes_to_stderr_and_the_rest_to_stdout() -> None:
    chat = Conversation(None, True, {})
    for line in ("/model nonexistent", "/file /no/such/file.py", "/bogus", "/optimize maybe",
                 "/file"):
        out, err = io.StringIO(), io.StringIO()
        assert chat.command(line, Output(out), ["smollm2-135m"], Output(err)) is True
        assert out.getvalue() == "" and err.getvalue(), line
    out, err = io.StringIO(), io.StringIO()
    chat.command("/reset", Output(out), None, Output(err))
    assert "conversation cleared" in out.getvalue() and err.getvalue() == ""
