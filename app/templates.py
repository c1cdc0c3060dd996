"""Campaign templates in Jinja2's sandbox: customer fields in, text out, errors by line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

_text_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class TemplateProblem(ValueError):
    """A template that does not compile or render; names the field and line."""

    def __init__(self, field: str, message: str, line: int | None = None):
        where = f" (line {line})" if line else ""
        super().__init__(f"{field}{where}: {message}")
        self.field, self.message, self.line = field, message, line

    def as_detail(self) -> dict[str, Any]:
        return {"field": self.field, "line": self.line, "message": self.message}


@dataclass
class CompiledTemplates:
    subject: Any
    text: Any
    html: Any | None

    def render(self, variables: dict[str, Any]) -> tuple[str, str, str | None]:
        return (
            _render("subject", self.subject, variables),
            _render("body_text", self.text, variables),
            _render("body_html", self.html, variables) if self.html is not None else None,
        )


def compile_templates(subject: str, body_text: str, body_html: str | None = None
                      ) -> CompiledTemplates:
    return CompiledTemplates(
        _compile("subject", subject, _text_env),
        _compile("body_text", body_text, _text_env),
        _compile("body_html", body_html, _html_env) if body_html else None,
    )


def _compile(field: str, source: str, env: SandboxedEnvironment):
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", exc.lineno) from None


def _render(field: str, template, variables: dict[str, Any]) -> str:
    try:
        return template.render(variables)
    except UndefinedError as exc:
        raise TemplateProblem(field, exc.message or "undefined variable", _line(exc)) from None
    except TemplateError as exc:
        raise TemplateProblem(field, str(exc), _line(exc)) from None
    except Exception as exc:  # sandbox violations, bad filters on odd data
        raise TemplateProblem(field, f"{type(exc).__name__}: {exc}", _line(exc)) from None


def _line(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's line number.
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
