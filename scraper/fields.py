"""`[parse.fields]` on the lxml tree: CSS selectors compiled once, values as BeautifulSoup gives them.

A BeautifulSoup tree costs ten times the lxml tree the parser builds anyway (20 ms
against 2 ms for a 30 KB page), so fields are read from the lxml tree: each
selector goes through cssselect to an XPath expression, compiled once per parse
process, the same engine the config is validated with.

The values stay what they were when a soup made them:

- text is bs4's `get_text(" ", strip=True)`: every text node under the element,
  each stripped, the empty ones skipped, joined by one space. Like bs4, a node
  counts only when it sits in the same kind of container as the element:
  the text of `<script>`, `<style>`, `<template>`, `<rt>` and `<rp>` is left out
  of an enclosing element's text, and is the whole text of such an element;
- an attribute is its raw value, except the ones HTML defines as lists of tokens
  (`class`, `rel`, ...), which bs4 splits and which come out joined by one space.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from lxml import etree

if TYPE_CHECKING:
    from .config import FieldSpec

__all__ = ["FieldReader", "Selection", "compile_selector"]


class Selection(NamedTuple):
    """A `FieldSpec`'s values as the parse workers get them: a plain tuple, so that
    a worker never imports the config's pydantic models (a fifth of a second each)."""

    selector: str
    attr: str | None = None
    all: bool = False

    @classmethod
    def of(cls, spec: FieldSpec | Selection) -> Selection:
        return cls(spec.selector, spec.attr, spec.all)

# bs4's HTMLTreeBuilder.DEFAULT_STRING_CONTAINERS: their text is a string type of its own
_CONTAINERS = frozenset(("script", "style", "template", "rt", "rp"))
# bs4's HTMLTreeBuilder.DEFAULT_CDATA_LIST_ATTRIBUTES: values split on whitespace
_LIST_ATTRS: dict[str, frozenset[str]] = {
    "a": frozenset(("rel", "rev")),
    "link": frozenset(("rel", "rev")),
    "td": frozenset(("headers",)),
    "th": frozenset(("headers",)),
    "form": frozenset(("accept-charset",)),
    "object": frozenset(("archive",)),
    "area": frozenset(("rel",)),
    "icon": frozenset(("sizes",)),
    "iframe": frozenset(("sandbox",)),
    "output": frozenset(("for",)),
}
_ANY_LIST_ATTRS = frozenset(("class", "accesskey", "dropzone"))
_TOKENS = re.compile(r"\S+")  # bs4's split of a list attribute


def compile_selector(selector: str) -> etree.XPath:
    """The selector as a compiled XPath; ValueError with cssselect's first line when it is not valid CSS."""
    from cssselect import SelectorError

    try:
        # soupsieve's rule: a <template>'s contents are not part of the document
        return etree.XPath(f"({_translator().css_to_xpath(selector)})[not(ancestor::template)]")
    except (SelectorError, etree.XPathSyntaxError) as e:
        raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


_TRANSLATOR: Any = None


def _translator() -> Any:
    """cssselect's HTML translator, where it reads a selector otherwise than soupsieve did."""
    global _TRANSLATOR
    if _TRANSLATOR is None:
        from cssselect import HTMLTranslator

        class Translator(HTMLTranslator):
            def xpath_empty_pseudo(self, xpath: Any) -> Any:
                # soupsieve: no child element and no text but whitespace
                return xpath.add_condition("not(*) and not(normalize-space())")

        _TRANSLATOR = Translator()
    return _TRANSLATOR


class FieldReader:
    """Every `[parse.fields]` value of a page, from its lxml tree. Built in the worker (XPath does not pickle)."""

    def __init__(self, fields: dict[str, FieldSpec] | dict[str, Selection]) -> None:
        self._fields: list[tuple[str, etree.XPath, Callable[[Any], Any], bool, bool]] = []
        for name, spec in fields.items():
            if spec.attr is None:
                value: Callable[[Any], Any] = text_of
            else:
                value = _attribute_reader(spec.attr)
            self._fields.append((name, compile_selector(spec.selector), value, spec.all, spec.attr is not None))

    def read(self, root: Any | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, xpath, value, every, is_attr in self._fields:
            found = [el for el in xpath(root) if isinstance(el.tag, str)] if root is not None else []
            if every:
                got = [value(el) for el in found]
                values[name] = [v for v in got if v is not None] if is_attr else got
            else:
                values[name] = value(found[0]) if found else None
        return values


def _attribute_reader(attr: str) -> Callable[[Any], str | None]:
    def read(el: Any) -> str | None:
        value = el.get(attr)
        if value is not None and (attr in _ANY_LIST_ATTRS or attr in _LIST_ATTRS.get(el.tag, ())):
            return " ".join(_TOKENS.findall(value))
        return value

    return read


def text_of(el: Any) -> str:
    """bs4's `el.get_text(" ", strip=True)` on the same tree."""
    wanted = el.tag if el.tag in _CONTAINERS else None  # bs4: by the element's own name only
    context = _container_of(el)
    if wanted is None and context is None and next(el.iter(*_CONTAINERS), None) is None:
        return " ".join(s for s in (t.strip() for t in el.itertext()) if s)  # the common case
    parts: list[str] = []
    _collect(el, context, wanted, parts)
    return " ".join(parts)


def _container_of(el: Any) -> str | None:
    """The nearest container element (self included) a text node of `el` is in, by name."""
    node = el
    while node is not None:
        if node.tag in _CONTAINERS:
            return node.tag
        node = node.getparent()
    return None


def _collect(el: Any, context: str | None, wanted: str | None, parts: list[str]) -> None:
    if context == wanted and el.text:
        s = el.text.strip()
        if s:
            parts.append(s)
    for child in el:
        if isinstance(child.tag, str):
            _collect(child, child.tag if child.tag in _CONTAINERS else context, wanted, parts)
        if context == wanted and child.tail:  # a tail is text of the parent's context
            s = child.tail.strip()
            if s:
                parts.append(s)
