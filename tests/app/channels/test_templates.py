"""Jinja2 sandboxed templates: customer variables, errors by field and line."""

from __future__ import annotations

import pytest

from app.channels.templates import TemplateProblem, compile_templates


def test_renders_customer_fields_and_escapes_html_only() -> None:
    compiled = compile_templates("Hi {{ first_name }}", "Plan: {{ plan }} <b>",
                                 "<p>{{ name }}</p>")
    subject, text, html = compiled.render({"first_name": "Ana", "plan": "Turbo",
                                           "name": "Ana <script>"})
    assert subject == "Hi Ana"
    assert text == "Plan: Turbo <b>"
    assert html == "<p>Ana &lt;script&gt;</p>"


def test_syntax_error_names_field_and_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        compile_templates("ok", "line one\nline two\n{% if %}")
    assert caught.value.field == "body_text" and caught.value.line == 3


def test_undefined_variable_names_field_and_line() -> None:
    compiled = compile_templates("ok", "a\n{{ nope }}")
    with pytest.raises(TemplateProblem) as caught:
        compiled.render({})
    assert caught.value.as_detail() == {"field": "body_text", "line": 2,
                                        "message": "'nope' is undefined"}


def test_sandbox_blocks_python_internals() -> None:
    compiled = compile_templates("{{ ''.__class__.__mro__[1].__subclasses__() }}", "x")
    with pytest.raises(TemplateProblem) as caught:
        compiled.render({})
    assert caught.value.field == "subject"
