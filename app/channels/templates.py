"""Campaign templates in Jinja2's sandbox: customer fields in, text out, errors by line.

The sandbox keeps templates away from Python's internals; `BoundedSandbox` also bounds
the work one render can ask for, since an operator's template renders on a replica:
`**` only to results of at most MAX_POWER_BITS, `*` on a string or list only up to
MAX_OUTPUT_CHARS, no integer over MAX_OUTPUT_CHARS given to a call or a filter (a
width, a count), and the rendered text stops at MAX_OUTPUT_CHARS. Each of those would
otherwise be one long step in C that no timeout interrupts. Callers on an event loop
render in a thread with a deadline (`render_off_loop`).
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 1_000_000
MAX_POWER_BITS = 64  # numbers in a message: counts, prices, never larger
RENDER_DEADLINE_S = 2.0
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(?:\*|[0-9]{6,})|\{[^}]*:[^}]*[0-9]{6,}")


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and \
        abs(value) > MAX_OUTPUT_CHARS


def _bounded_filter(name: str, function: Any) -> Any:
    @functools.wraps(function)  # keeps Jinja's pass_context and friends
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args, *kwargs.values())):
            raise SecurityError(f"filter {name}: a number over {MAX_OUTPUT_CHARS}")
        if name == "format" and args and _WIDE_FORMAT.search(str(args[-1] if
                                                               len(args) == 1 else args[0])):
            raise SecurityError("filter format: a width too large")
        return function(*args, **kwargs)
    return bounded


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(left) > 1 and right > 0 and \
                    right * math.log2(abs(left)) > MAX_POWER_BITS:
                raise SecurityError(f"** to a number over {MAX_POWER_BITS} bits")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and \
                        len(seq) * n > MAX_OUTPUT_CHARS:
                    raise SecurityError(f"* to a result over {MAX_OUTPUT_CHARS} items")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("% with a width too large")
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args, *kwargs.values())):
            raise SecurityError(f"a call with a number over {MAX_OUTPUT_CHARS}")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_FORMAT.search(value.__self__):
            raise SecurityError("format with a width too large")
        return wrapped


_text_env = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
_html_env = BoundedSandbox(undefined=StrictUndefined, autoescape=True)


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


def compile_text(field: str, source: str) -> Any:
    """One text template of a channel's own (a WhatsApp template's parameter, say)."""
    return _compile(field, source, _text_env)


def render_text(field: str, template: Any, variables: dict[str, Any]) -> str:
    """Render one of `compile_text`'s (raises TemplateProblem naming the field)."""
    return _render(field, template, variables)


def _compile(field: str, source: str, env: SandboxedEnvironment):
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", exc.lineno) from None


async def render_off_loop(templates: CompiledTemplates, variables: dict[str, Any]
                          ) -> tuple[str, str, str | None]:
    """`templates.render` in a thread, given up after RENDER_DEADLINE_S (a
    `TemplateProblem` naming the subject, where the render starts)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(templates.render, variables),
                                      RENDER_DEADLINE_S)
    except TimeoutError:
        raise TemplateProblem("subject", f"takes over {RENDER_DEADLINE_S:g} s to render: "
                              "simplify the templates") from None


def _bounded_render(template: Any, variables: dict[str, Any]) -> str:
    parts, size = [], 0
    for part in template.generate(variables):
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"renders to over {MAX_OUTPUT_CHARS} characters")
        parts.append(part)
    return "".join(parts)


def _render(field: str, template, variables: dict[str, Any]) -> str:
    try:
        return _bounded_render(template, variables)
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
