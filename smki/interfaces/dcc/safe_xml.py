"""Safe XML reading and writing shared by the DCC-compatible message codecs (spec §3.1, §3.2).

Why a hand-rolled layer over ``pyexpat`` rather than ``xml.etree``: the bodies come from other
organisations' systems over the network, so the parser must refuse DTDs and entity declarations
(billion laughs, XXE) *before* they do anything, stop at a byte limit while the body is still
arriving, and stream a 50,000-CSR batch (~30 MB) without first building a document tree.
``defusedxml`` is not installed and no dependency may be added, so the refusals are installed as
expat handlers here: a ``<!DOCTYPE`` aborts the parse as soon as expat sees it, which is before
any entity can be declared or expanded.

Every refusal is a :class:`DccFormatError` whose ``code`` is the DCC error code (``FM:AA1`` for
anything that is not a well-formed message of the expected shape), with a one-line message.

Reading rules (documented in ``docs/dcc-web-services.md``):

* element names are matched by *local name*; a namespace, if a client declares one, is ignored,
  because the DCC's real schema namespace is not public and existing clients send none;
* ``xsi:*`` attributes are ignored; any other attribute not in the message's definition is refused;
* simple values have surrounding whitespace removed (XSD ``xs:token`` semantics);
* non-whitespace text where only child elements belong is refused;
* leading whitespace before the XML declaration is tolerated (some clients pretty-print it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

from smki.errors import SmkiError

#: The DCC's "invalid XML" code (SEC Appendix M): any body that is not a well-formed message of
#: the expected shape.
FM_INVALID_XML = "FM:AA1"
#: "Number of submitted CSRs exceeds maximum volume" (SEC Appendix M).
FM_TOO_MANY_CSRS = "FM:AA2"
#: An unknown BatchId, or another Party's (SEC Appendix M).
FM_UNKNOWN_BATCH = "FM:AA3"

#: Default body limit for the small, single-purpose messages.
DEFAULT_MAX_BYTES = 256 * 1024

_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_PREFIX = _XSI_NS + " "
_MAX_DEPTH = 8  # the deepest message is 4 levels; anything deeper is refused as it starts
_SHOWN = 40  # never echo more than this many characters of client input in a message
_FEED = 1 << 20  # feed expat in 1 MiB slices so limits trip early on huge bodies
_WS = b" \t\r\n"

# XML 1.0 Char production, used to refuse unrenderable text before it reaches the wire.
_XML_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class DccFormatError(SmkiError):
    """A body the DCC would reject as a format error; ``code`` is the DCC code (``FM:AA1``…).

    ``request_id`` carries the request's ``ID`` attribute when it was read before the error, so a
    server can echo it in the ``FORMAT_ERROR`` response.
    """

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id

    def __reduce__(self) -> tuple[type[SmkiError], tuple[str, str]]:  # pragma: no cover - pickling
        return (type(self), (self.code, self.message))


class MessageTooLarge(DccFormatError):
    """The body exceeds the size limit (still ``FM:AA1``; a server may answer 413 instead)."""


def shown(text: str) -> str:
    """Client text quoted for a message: at most 40 characters, one line."""
    short = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    return repr(short)


def format_error(message: str, request_id: str | None = None) -> DccFormatError:
    """An ``FM:AA1`` refusal."""
    return DccFormatError(FM_INVALID_XML, message, request_id)


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class Node:
    """One element: local name, attributes (local names), children and text, nothing else."""

    name: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The element's text with surrounding whitespace removed; refuse child elements."""
        if self.children:
            raise format_error(f"<{self.name}> must hold text, not elements")
        return "".join(self.parts).strip()


def _local(name: str) -> str:
    return name.rsplit(" ", 1)[-1]


class _Builder:
    """Expat handlers that build :class:`Node` trees and refuse anything DTD-shaped.

    ``on_top_child`` is called with every completed child of the root; when it returns True the
    child has been consumed and is not kept, which is how a 50,000-entry batch streams.
    """

    def __init__(
        self,
        root_name: str,
        on_root: Callable[[Node], None] | None,
        on_top_child: Callable[[Node], bool] | None,
    ) -> None:
        self.root_name = root_name
        self.on_root = on_root
        self.on_top_child = on_top_child
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.request_id: str | None = None

    def fail(self, message: str) -> DccFormatError:
        return format_error(message, self.request_id)

    def start(self, name: str, attributes: dict[str, str]) -> None:
        # Called for every element (150,000 in a large result): no namespace is the common case.
        local = _local(name) if " " in name else name
        attrs: dict[str, str] = {}
        for key, value in attributes.items():
            if " " not in key:
                attrs[key] = value
            elif not key.startswith(_XSI_PREFIX):
                local_key = _local(key)
                if local_key in attributes or local_key in attrs:
                    # ``ID`` and ``a:ID``: read by local name, one would silently replace the other.
                    raise self.fail(f"<{local[:_SHOWN]}> has attribute {shown(local_key)} twice (in two namespaces)")
                attrs[local_key] = value
        node = Node(local, attrs, [], [])
        if not self.stack:
            if local != self.root_name:
                raise self.fail(f"the root element must be <{self.root_name}>, not <{local[:_SHOWN]}>")
            self.root = node
            if self.on_root is not None:
                self.on_root(node)  # validates the root's attributes before any child is read
                self.request_id = attrs.get("ID")
        elif len(self.stack) >= _MAX_DEPTH:
            raise self.fail(f"elements nest deeper than {_MAX_DEPTH} levels")
        else:
            self.stack[-1].children.append(node)
        self.stack.append(node)

    def end(self, name: str) -> None:
        node = self.stack.pop()
        if len(self.stack) == 1 and self.on_top_child is not None and self.on_top_child(node):
            self.stack[0].children.pop()

    def chars(self, data: str) -> None:
        if self.stack:
            node = self.stack[-1]
            # Whitespace between child elements means nothing; dropping it keeps a pretty-printed
            # 50,000-entry batch from accumulating megabytes of indentation in the root.
            if node.children and data.isspace():
                return
            node.parts.append(data)

    def doctype(self, *_args: object) -> None:
        raise self.fail("DTDs and entity declarations are not accepted (<!DOCTYPE>)")

    def entity(self, *_args: object) -> None:
        raise self.fail("entity declarations are not accepted (<!ENTITY>)")

    def external(self, *_args: object) -> int:
        raise self.fail("external entities are not accepted")


def _chunks(data: bytes | bytearray | memoryview | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), _FEED):
            yield bytes(view[start : start + _FEED])
        return
    for chunk in data:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise format_error("the body must be bytes")
        view = memoryview(chunk)
        for start in range(0, len(view), _FEED):
            yield bytes(view[start : start + _FEED])


def parse_xml(
    data: bytes | bytearray | memoryview | Iterable[bytes],
    root_name: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_root: Callable[[Node], None] | None = None,
    on_top_child: Callable[[Node], bool] | None = None,
    too_large: type[DccFormatError] = MessageTooLarge,
) -> Node:
    """Parse one message whose root must be ``root_name``; refuse DTDs, entities, oversize bodies.

    ``data`` may be the whole body or an iterable of chunks as they arrive. ``on_root`` sees the
    root element (with its attributes) as soon as it opens, before any child is read.
    """
    builder = _Builder(root_name, on_root, on_top_child)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.chars
    parser.StartDoctypeDeclHandler = builder.doctype
    parser.EntityDeclHandler = builder.entity
    parser.UnparsedEntityDeclHandler = builder.entity
    parser.NotationDeclHandler = builder.entity
    parser.ExternalEntityRefHandler = builder.external
    total = 0
    leading = True
    try:
        for chunk in _chunks(data):
            total += len(chunk)
            if total > max_bytes:
                raise too_large(
                    FM_INVALID_XML, f"the message is larger than {max_bytes} bytes", builder.request_id
                )
            if leading:
                chunk = chunk.lstrip(_WS)
                if not chunk:
                    continue
                leading = False
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except DccFormatError:
        raise
    except expat.ExpatError as error:
        reason = expat.ErrorString(error.code) if error.code else "invalid"
        raise builder.fail(
            f"not well-formed XML: {reason} (line {error.lineno}, column {error.offset})"
        ) from None
    except LookupError:
        raise builder.fail("the XML declaration names an unsupported character encoding") from None
    except (ValueError, UnicodeError, OverflowError) as error:
        # Defensive: pyexpat reports encoding trouble through these on some inputs.
        raise builder.fail(f"not readable XML ({type(error).__name__})") from None
    if builder.root is None:
        raise builder.fail("the body holds no XML element")
    return builder.root


def check_attributes(node: Node, allowed: Iterable[str], request_id: str | None = None) -> None:
    """Refuse any attribute of ``node`` not in ``allowed`` (naming the first, in sorted order)."""
    if not node.attrs:
        return
    names = allowed if isinstance(allowed, tuple | frozenset | set) else tuple(allowed)
    extra = [key for key in node.attrs if key not in names]
    if extra:
        raise format_error(f"<{node.name}> does not take attribute {shown(min(extra))}", request_id)


def check_no_text(node: Node, request_id: str | None = None) -> None:
    """Refuse non-whitespace text in an element that holds only child elements."""
    if any(part.strip() for part in node.parts):
        raise format_error(f"<{node.name}> must hold elements, not text", request_id)


@dataclass(frozen=True, slots=True)
class Child:
    """One entry of a content model: element name and how many times it may occur."""

    name: str
    min: int = 1
    max: int = 1


def children(
    node: Node,
    model: Iterable[Child],
    *,
    ordered: bool = True,
    request_id: str | None = None,
) -> dict[str, list[Node]]:
    """Check ``node``'s children against ``model`` (an ``xs:sequence`` when ``ordered``).

    Returns the children grouped by name. Unknown, repeated, missing or (when ``ordered``)
    out-of-order elements are refused with ``FM:AA1`` naming the element.
    """
    check_no_text(node, request_id)
    entries = list(model)
    position = {entry.name: index for index, entry in enumerate(entries)}
    grouped: dict[str, list[Node]] = {entry.name: [] for entry in entries}
    last = -1
    for child in node.children:
        index = position.get(child.name)
        if index is None:
            raise format_error(f"<{node.name}> does not take element <{child.name[:_SHOWN]}>", request_id)
        if ordered and index < last:
            raise format_error(f"<{child.name}> is out of order in <{node.name}>", request_id)
        last = index
        grouped[child.name].append(child)
        if len(grouped[child.name]) > entries[index].max:
            raise format_error(f"<{child.name}> appears too many times in <{node.name}>", request_id)
    for entry in entries:
        if len(grouped[entry.name]) < entry.min:
            raise format_error(f"<{node.name}> is missing <{entry.name}>", request_id)
    return grouped


def one_text(grouped: dict[str, list[Node]], name: str) -> str | None:
    """The text of the single ``name`` child, or None when it is absent."""
    nodes = grouped.get(name) or []
    return nodes[0].text() if nodes else None


def strict_base64(text: str) -> bytes | None:
    """``text`` decoded when it is bare, canonically padded base64, else None.

    The fast path of both decoders (a batch holds 50,000 of these): ``binascii``'s strict mode
    checks the alphabet and the padding in C. It alone would also take excess padding
    (``AAAA====``), hence the two guards; with them it accepts exactly the strings the regular
    expression and ``b64decode(validate=True)`` below accept, with the same result
    (``tests/api/test_dcc_xml_support.py`` compares them).
    """
    if not text or len(text) % 4 or text.endswith("==="):
        return None
    try:
        return binascii.a2b_base64(text, strict_mode=True) or None
    except ValueError:  # binascii.Error, or a str that is not ASCII
        return None


def decode_bare_base64(text: str, what: str, request_id: str | None = None) -> bytes:
    """Decode RFC 4648 base64 with no whitespace or armour (what the web services accept)."""
    decoded = strict_base64(text)
    if decoded is not None:
        return decoded
    if not text or len(text) % 4 or not _BASE64.fullmatch(text):
        raise format_error(f"{what} must be bare base64 (no PEM armour, no whitespace)", request_id)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise format_error(f"{what} is not valid base64", request_id) from None


def decode_lenient_base64(text: str, what: str) -> bytes:
    """Decode base64 that may be wrapped over lines (responses read by clients)."""
    decoded = strict_base64(text)  # one line already (strict mode refuses whitespace)
    if decoded is not None:
        return decoded
    compact = "".join(text.split())
    return decode_bare_base64(compact, what)


def parse_positive_int(text: str | None, what: str, request_id: str | None = None) -> int:
    """A positive decimal integer (``xs:positiveInteger``), at most 19 digits."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) < 1:
        raise format_error(f"{what} must be a positive integer", request_id)
    return int(text)


# --------------------------------------------------------------------------------------------
# Writing

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'


def check_xml_text(value: str, what: str) -> None:
    """Refuse text that XML 1.0 cannot carry (control characters, lone surrogates)."""
    if _XML_ILLEGAL.search(value):
        raise ValueError(f"{what} holds a character XML 1.0 cannot carry")


def esc(value: str) -> str:
    """Escape element text and attribute values (double-quoted)."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
    )


def elem(name: str, text: str) -> str:
    """``<name>text</name>`` with the text escaped."""
    return f"<{name}>{esc(text)}</{name}>"
