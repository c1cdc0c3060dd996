"""What a reply says in its own words: its text without the quoted message, HTML read as
text, and keywords matched as whole words, case- and accent-insensitive."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from html.parser import HTMLParser

TEXT_LIMIT = 20_000  # characters of a body that are read for keywords

REPLY_PREFIX = re.compile(r"^\s*((re|res|aw|sv|fw|fwd|enc|rv)\s*:\s*)+", re.IGNORECASE)


QUOTE_HEADER = re.compile(
    r"^\s*(on\b.*\bwrote:|em\b.*\bescreveu:|-{2,}\s*original message\s*-{2,}"
    r"|-{2,}\s*mensagem original\s*-{2,}|from:\s.*|de:\s.*)\s*$", re.IGNORECASE)


def fold(text: str) -> str:
    """Lower-case, accents removed, whitespace collapsed: 'Não  QUERO' -> 'nao quero'."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.casefold().split())


def find_keyword(text: str, keywords: Iterable[str]) -> str | None:
    folded = fold(text)
    for keyword in keywords:
        key = fold(keyword)
        if key and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", folded):
            return keyword
    return None


def own_text(body: str) -> str:
    """The reply's own lines: stop at the quoted original, drop '>' lines."""
    lines = []
    for line in body.splitlines():
        if QUOTE_HEADER.match(line):
            break
        if not line.lstrip().startswith(">"):
            lines.append(line)
    return "\n".join(lines).strip()


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML body, without scripts, styles and quoted blocks."""

    SKIP = {"script", "style", "blockquote", "head", "title"}
    VOID = {"br", "img", "hr", "meta", "input", "link", "area", "base", "col", "embed",
            "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0  # depth inside a skipped element
        self.size = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.VOID:
            if tag == "br" and not self.skipping:
                self.parts.append("\n")
            return
        classes = " ".join(value or "" for name, value in attrs if name == "class")
        if self.skipping or tag in self.SKIP or "quote" in classes:  # gmail_quote, ...
            self.skipping += 1
        elif tag in ("p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and tag not in self.VOID:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.size < TEXT_LIMIT:
            self.parts.append(data)
            self.size += len(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    try:
        parser.feed(html[: TEXT_LIMIT * 5])
        parser.close()
    except Exception:  # HTMLParser is lenient; this is only a last guard
        pass
    return "".join(parser.parts)
