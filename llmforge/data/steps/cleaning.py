"""Text cleaning steps (datatrove formatters/filters): whitespace, emoji → text, PII redaction, line filters."""

from __future__ import annotations

import re

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter


class NormalizeWhitespace(BaseFormatter):
    """Unix newlines, no trailing spaces, at most `max_blank_lines` blank lines in a row.

    Leading indentation is kept: it is syntax in code and structure in prose."""

    name = "␣ whitespace"

    def __init__(self, max_blank_lines: int = 2):
        super().__init__()
        self.blank_run = re.compile(r"\n{" + str(max_blank_lines + 2) + ",}")
        self.replacement = "\n" * (max_blank_lines + 1)

    def format(self, text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return self.blank_run.sub(self.replacement, text).strip("\n")


class EmojiToText(BaseFormatter):
    """Emoji → their CLDR short names, e.g. 😀 → `:grinning_face:` (the `emoji` package's demojize)."""

    name = "😀 emoji → text"

    def __init__(self, delimiters: tuple[str, str] = (":", ":")):
        super().__init__()
        self.delimiters = tuple(delimiters)

    def format(self, text: str) -> str:
        import emoji

        return emoji.demojize(text, delimiters=self.delimiters)


# Phone numbers: international (+CC …) or North-American style with separators; at least 9 digits so that
# version strings, dates and plain integers in code are left alone.
_PHONE = r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w.-])"
_EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"
_IPV4 = r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b"


class RedactPII(BaseFormatter):
    """Replace e-mail addresses, IPv4 addresses and phone numbers with `<EMAIL>`, `<IP_ADDRESS>`, `<PHONE>`.

    The same placeholders as BigScience ROOTS' PII pass (Laurençon et al. 2022, §5.4); counts go to the stats."""

    name = "🔒 PII redaction"

    def __init__(self, emails: bool = True, ips: bool = True, phones: bool = True):
        super().__init__()
        patterns = [(_EMAIL, "<EMAIL>", emails), (_IPV4, "<IP_ADDRESS>", ips), (_PHONE, "<PHONE>", phones)]
        self.rules = [(re.compile(p), token) for p, token, on in patterns if on]

    def format(self, text: str) -> str:
        for regex, token in self.rules:
            text, n = regex.subn(token, text)
            if n:
                self.stat_update(f"redacted_{token.strip('<>').lower()}", value=n)
        return text


_LINE_RULES = {
    "cookie_banners": re.compile(
        r"\b(we use cookies|this (web)?site uses cookies|accept (all )?cookies|cookie (policy|settings|preferences))\b",
        re.I,
    ),
    "lorem_ipsum": re.compile(r"lorem ipsum", re.I),
    "navigation": re.compile(
        r"^\s*(skip to (main )?content|back to top|(home|menu|search|login|log in|sign in|sign up|subscribe)"
        r"(\s*[|»>/·•]\s*\w[\w ]{0,20}){0,8}|share (on|this)( \w+)?|follow us( on \w+)?|read more|"
        r"previous( post| article)?|next( post| article)?)\s*$",
        re.I,
    ),
}


class LineFilter(BaseFilter):
    """Remove boilerplate lines (cookie banners, "lorem ipsum", navigation); drop documents left empty."""

    name = "🧹 line filter"

    def __init__(self, cookie_banners: bool = True, lorem_ipsum: bool = True, navigation: bool = True):
        super().__init__()
        wanted = {"cookie_banners": cookie_banners, "lorem_ipsum": lorem_ipsum, "navigation": navigation}
        self.rules = [(name, rule) for name, rule in _LINE_RULES.items() if wanted[name]]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        kept = []
        for line in doc.text.split("\n"):
            hit = next((name for name, rule in self.rules if rule.search(line)), None)
            if hit:
                self.stat_update(f"lines_removed_{hit}")
            else:
                kept.append(line)
        doc.text = "\n".join(kept).strip()
        return bool(doc.text) or (False, "empty_after_line_filter")
