"""A fake Telegram Bot API server for tests.

The real python-telegram-bot ``Application`` talks to it over HTTP, exactly as it talks to
``api.telegram.org``::

    async with FakeBotAPI(token="123:ABC") as api:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)            # "http://127.0.0.1:<port>/bot"
            .base_file_url(api.base_file_url)  # "http://127.0.0.1:<port>/file/bot"
            .build()
        )
        ann = api.user(1001, first_name="Ann")
        async with app:
            await app.start()
            await app.updater.start_polling(timeout=1)
            await ann.send_command("/start")
            reply = await ann.wait_reply()
            await ann.tap(reply, "Yes")
            ...
            await app.updater.stop()
            await app.stop()

What it does
------------
* Serves ``{base_url}{token}/{method}`` for GET and POST with query-string, form-urlencoded,
  multipart and JSON bodies (PTB sends form-urlencoded, or multipart when uploading; every value is
  a string: ``str`` values are sent raw, everything else JSON-encoded).
* Answers like Telegram: ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`` with the HTTP
  status equal to ``error_code``. Unknown methods answer 404 ``Not Found`` (PTB turns that into
  ``InvalidToken``, or ``EndPointNotFound`` for ``Bot.do_api_request``); a wrong token answers
  401 ``Unauthorized``. Method names are case-insensitive, as on Telegram.
* Keeps per-chat message state (edits applied, deletions removed, visible text with HTML /
  MarkdownV2 / Markdown parsed into entities, inline keyboards, the current reply keyboard).
* Real long polling (``getUpdates`` parks for ``timeout`` seconds and is woken by new updates;
  ``offset`` confirms, ``limit``, ``allowed_updates`` persists as on Telegram; a second
  concurrent ``getUpdates`` terminates the first with 409). With a webhook set, updates are
  POSTed to it one at a time, in order, with ``X-Telegram-Bot-Api-Secret-Token``, retried
  (bounded) on non-2xx, and ``getUpdates`` answers 409.
* Enforces Telegram's limits with Telegram's wording (see :class:`FakeBotAPI`).

Known deviations from the real server (on purpose):

* ``strict_html=True`` (default) rejects a bare ``&`` or ``>`` in HTML text, as the Bot API docs
  demand; the real server tolerates them and shows them literally. Pass ``strict_html=False``
  for the real behaviour.
* ``setWebhook`` accepts ``http://`` URLs (Telegram requires HTTPS on ports 443/80/88/8443).
* Message text length is counted in Unicode code points; URLs are not normalised
  (Telegram turns ``telegram.org`` into ``http://telegram.org/``).
* An update whose ``update_id`` is below the polling ``offset`` but was never delivered
  (only possible through :meth:`FakeBotAPI.enqueue_raw` with an explicit old id) is still
  delivered, so duplicate-update tests work in polling mode.
* ``strict_chats=True`` (default): sending to a chat the fake has not been told about
  (``api.user()``, ``api.group()``, ``api.channel()`` or an incoming update) answers
  ``400 Bad Request: chat not found``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = [
    "ApiCall",
    "ApiError",
    "CallbackAnswer",
    "ChatAction",
    "ChatMessage",
    "EntityParseError",
    "FakeBotAPI",
    "FakeBotAPIError",
    "FakeChat",
    "FakeUser",
    "UploadedFile",
    "WebhookDelivery",
    "format_text",
    "free_port",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "utf16_len",
]

JSONDict = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_COMMANDS = 100

UPDATE_TYPES: tuple[str, ...] = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
#: What Telegram sends when ``allowed_updates`` was never set (or set to ``[]``).
DEFAULT_ALLOWED_UPDATES = frozenset(UPDATE_TYPES) - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"

# How values arrive: form bodies carry strings only, so decode by parameter name.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "menu_button",
        "link_preview_options",
        "reply_parameters",
        "media",
        "message_ids",
        "results",
        "options",
        "explanation_entities",
        "reaction",
    }
)
_INT_FIELDS = frozenset(
    {
        "message_id",
        "offset",
        "limit",
        "user_id",
        "cache_time",
        "message_thread_id",
        "max_connections",
        "reply_to_message_id",
        "duration",
        "width",
        "height",
        "length",
        "until_date",
        "live_period",
        "heading",
        "proximity_alert_radius",
    }
)
_CHAT_ID_FIELDS = frozenset({"chat_id", "from_chat_id"})
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "has_spoiler",
        "disable_content_type_detection",
        "show_caption_above_media",
        "allow_paid_broadcast",
    }
)
_FLOAT_FIELDS = frozenset({"latitude", "longitude", "horizontal_accuracy", "timeout"})


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the Bot API (raised inside method handlers)."""

    def __init__(
        self, error_code: int, description: str, parameters: JSONDict | None = None
    ) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSONDict:
        data: JSONDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            data["parameters"] = dict(self.parameters)
        return data


def _bad_request(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


class FakeBotAPIError(AssertionError):
    """Misuse of the fake from a test (e.g. tapping a button that is not there)."""


class EntityParseError(ValueError):
    """Text markup could not be parsed (the part after ``can't parse entities:``)."""


class _Abandoned(Exception):
    """The HTTP client went away while the request was parked (long poll)."""


# --------------------------------------------------------------------------------------------
# Text utilities: UTF-16 offsets, HTML / MarkdownV2 / Markdown parsing
# --------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram uses for entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


_SPACES = " \t\r\n\f\v"
_HTML_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_URL_RE = re.compile(
    r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://\S+|tg:\S+|mailto:\S+|[^\s/:@]+\.[a-zA-Z]{2,}(?:[/?#]\S*)?)$"
)


def _looks_like_url(text: str) -> bool:
    return bool(_URL_RE.match(text.strip())) and text.strip() == text


def _decode_html_entity(source: str, i: int) -> tuple[str, int] | None:
    """Decode the HTML entity at ``source[i] == '&'`` the way Telegram does.

    Named entities: only &lt; &gt; &amp; &quot; (the ``;`` is optional); numeric entities in
    decimal or hex. Returns ``None`` if this is not a supported entity.
    """
    n = len(source)
    j = i + 1
    if j < n and source[j] == "#":
        j += 1
        is_hex = j < n and source[j] in "xX"
        if is_hex:
            j += 1
        start = j
        allowed = "0123456789abcdefABCDEF" if is_hex else "0123456789"
        while j < n and source[j] in allowed and j - start < 9:
            j += 1
        if j == start:
            return None
        code = int(source[start:j], 16 if is_hex else 10)
        if code == 0 or code > 0x10FFFF:
            return None
        if 0xD800 <= code <= 0xDFFF:
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            )
        if j < n and source[j] == ";":
            j += 1
        return chr(code), j
    start = j
    while j < n and source[j].isascii() and source[j].isalpha():
        j += 1
    name = source[start:j]
    if name in _HTML_NAMED_ENTITIES:
        if j < n and source[j] == ";":
            j += 1
        return _HTML_NAMED_ENTITIES[name], j
    return None


def _html_unescape_attr(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "&":
            decoded = _decode_html_entity(value, i)
            if decoded is not None:
                out.append(decoded[0])
                i = decoded[1]
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    start: int  # UTF-16 offset in the output
    out_index: int  # index into the output piece list (to recover the inner text)
    byte_offset: int
    order: int
    child: tuple[_OpenTag, int, int] | None = None  # nested pre/code: (tag, start, length)


def _code_language(tag: _OpenTag) -> str:
    cls = tag.attrs.get("class", "")
    return cls[len("language-") :] if cls.startswith("language-") else ""


def parse_html(source: str, *, strict: bool = True) -> tuple[str, list[JSONDict]]:
    """Parse Telegram-flavoured HTML into ``(visible_text, entities)``.

    Follows TDLib's parser (tags, attribute syntax, error wording with UTF-8 byte offsets).
    With ``strict`` a bare ``&`` (not a supported entity) or ``>`` is an error too.
    Raises :class:`EntityParseError`.
    """
    out: list[str] = []
    u16 = 0
    stack: list[_OpenTag] = []
    found: list[tuple[int, int, int, JSONDict]] = []
    order = itertools.count()
    n = len(source)
    i = 0

    def boff(index: int) -> int:
        return _byte_offset(source, index)

    def emit(piece: str) -> None:
        nonlocal u16
        out.append(piece)
        u16 += utf16_len(piece)

    def add(entity: JSONDict, start: int, length: int, seq: int) -> None:
        if length > 0:
            found.append((start, -length, seq, {**entity, "offset": start, "length": length}))

    def close(tag: _OpenTag) -> None:
        length = u16 - tag.start
        parent = stack[-1] if stack else None
        if tag.name in ("pre", "code") and parent is not None:
            pair = {"pre": "code", "code": "pre"}
            if parent.name == pair[tag.name] and parent.child is None:
                parent.child = (tag, tag.start, length)
                return
        entity: JSONDict | None
        if tag.name == "a":
            url = tag.attrs.get("href", "")
            if not url:
                inner = "".join(out[tag.out_index :])
                url = inner if _looks_like_url(inner) else ""
            entity = {"type": "text_link", "url": url} if url else None
        elif tag.name in ("pre", "code"):
            entity = {"type": tag.name}
            if tag.child is not None:
                child, c_start, c_len = tag.child
                code_tag = tag if tag.name == "code" else child
                language = _code_language(code_tag)
                if language and c_start == tag.start and c_len == length:
                    add({"type": "pre", "language": language}, tag.start, length, tag.order)
                    return
                add({"type": child.name}, c_start, c_len, child.order)
        elif tag.name == "blockquote":
            expandable = "expandable" in tag.attrs
            entity = {"type": "expandable_blockquote" if expandable else "blockquote"}
        elif tag.name == "tg-emoji":
            entity = {"type": "custom_emoji", "custom_emoji_id": tag.attrs["emoji-id"]}
        else:
            entity = {"type": _HTML_TAG_TYPES[tag.name]}
        if entity is not None:
            add(entity, tag.start, length, tag.order)

    while i < n:
        c = source[i]
        if c == "&":
            decoded = _decode_html_entity(source, i)
            if decoded is None:
                if strict:
                    raise EntityParseError(
                        f'Character "&" at byte offset {boff(i)} is not part of a supported '
                        "HTML entity and must be escaped as &amp;"
                    )
                emit("&")
                i += 1
            else:
                emit(decoded[0])
                i = decoded[1]
            continue
        if c == ">" and strict:
            raise EntityParseError(
                f'Character ">" at byte offset {boff(i)} must be escaped as &gt;'
            )
        if c != "<":
            emit(c)
            i += 1
            continue
        begin = i
        if i + 1 < n and source[i + 1] == "/":
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {boff(begin)}")
            j = i + 2
            while j < n and source[j] not in _SPACES and source[j] != ">":
                j += 1
            end_name = source[i + 2 : j].lower()
            while j < n and source[j] in _SPACES:
                j += 1
            if j >= n or source[j] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {boff(begin)}")
            i = j + 1
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {boff(begin)}, "
                    f'expected "</{tag.name}>", found "</{end_name}>"'
                )
            close(tag)
            continue
        j = i + 1
        while j < n and source[j] not in _SPACES and source[j] != ">":
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {boff(begin)}")
        name = source[i + 1 : j].lower()
        if name not in _HTML_TAG_TYPES:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {boff(begin)}')
        attrs: dict[str, str] = {}
        while True:
            while j < n and source[j] in _SPACES:
                j += 1
            if j >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {boff(begin)}')
            if source[j] == ">":
                j += 1
                break
            a0 = j
            while j < n and source[j] not in _SPACES and source[j] not in "=>":
                j += 1
            attr = source[a0:j].lower()
            if not attr:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset {boff(begin)}'
                )
            while j < n and source[j] in _SPACES:
                j += 1
            if j >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {boff(begin)}')
            if source[j] != "=":
                attrs.setdefault(attr, "")
                continue
            j += 1
            while j < n and source[j] in _SPACES:
                j += 1
            if j >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {boff(begin)}')
            if source[j] in "\"'":
                end = source.find(source[j], j + 1)
                if end < 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {boff(begin)}")
                value = _html_unescape_attr(source[j + 1 : end])
                j = end + 1
            else:
                v0 = j
                while j < n and source[j].isascii() and (source[j].isalnum() or source[j] in "._-"):
                    j += 1
                value = source[v0:j]
                if j < n and source[j] not in _SPACES and source[j] != ">":
                    raise EntityParseError(
                        f"Unexpected end of name token at byte offset {boff(v0)}"
                    )
            attrs.setdefault(attr, value)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {boff(begin)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise EntityParseError(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {boff(begin)}'
            )
        stack.append(_OpenTag(name, attrs, u16, len(out), boff(begin), next(order)))
        i = j
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    found.sort(key=lambda item: item[:3])
    return "".join(out), [item[3] for item in found]


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


@dataclass
class _MdOpen:
    kind: str
    start: int
    out_index: int
    byte_offset: int
    language: str = ""


def _consume_newline(source: str, i: int) -> int:
    for nl in ("\r\n", "\n\r", "\n", "\r"):
        if source.startswith(nl, i):
            return i + len(nl)
    return i


def parse_markdown_v2(source: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 into ``(visible_text, entities)`` (TDLib rules and error wording)."""
    out: list[str] = []
    u16 = 0
    stack: list[_MdOpen] = []
    found: list[tuple[int, int, int, JSONDict]] = []
    seq = itertools.count()
    quote: JSONDict | None = None
    n = len(source)
    i = 0
    line_start = True

    def boff(index: int) -> int:
        return _byte_offset(source, index)

    def emit(piece: str) -> None:
        nonlocal u16
        out.append(piece)
        u16 += utf16_len(piece)

    def add(entity: JSONDict, start: int, length: int) -> None:
        if length > 0:
            found.append((start, -length, next(seq), {**entity, "offset": start, "length": length}))

    def close_quote() -> None:
        nonlocal quote
        if quote is not None:
            kind = "expandable_blockquote" if quote["expandable"] else "blockquote"
            add({"type": kind}, quote["start"], u16 - quote["start"])
            quote = None

    while i < n:
        c = source[i]
        in_code = bool(stack) and stack[-1].kind in ("code", "pre", "pre_code")
        if line_start and not in_code:
            if c == ">":
                if quote is None:
                    quote = {"start": u16, "expandable": False}
                i += 1
                line_start = False
                continue
            if source.startswith("**>", i):
                close_quote()
                quote = {"start": u16, "expandable": False}
                i += 3
                line_start = False
                continue
            if quote is not None:
                close_quote()
        line_start = False
        if c == "\\" and i + 1 < n and 0 < ord(source[i + 1]) <= 126:
            emit(source[i + 1])
            i += 2
            continue
        if stack:
            top = stack[-1]
            skip = 1
            if top.kind == "bold":
                is_end = c == "*"
            elif top.kind == "italic":
                is_end = c == "_" and not source.startswith("__", i)
                if c == "_" and source.startswith("___", i):
                    is_end = False
            elif top.kind == "underline":
                is_end, skip = source.startswith("__", i), 2
            elif top.kind == "strikethrough":
                is_end = c == "~"
            elif top.kind == "spoiler":
                is_end, skip = source.startswith("||", i), 2
            elif top.kind == "code":
                is_end = c == "`"
            elif top.kind in ("pre", "pre_code"):
                is_end, skip = source.startswith("```", i), 3
            else:  # text_link, custom_emoji
                is_end = c == "]"
            if is_end:
                stack.pop()
                i += skip
                length = u16 - top.start
                if top.kind in ("text_link", "custom_emoji"):
                    url: str | None = None
                    if i < n and source[i] == "(":
                        url_start = i + 1
                        j = url_start
                        chars: list[str] = []
                        while j < n and source[j] != ")":
                            if source[j] == "\\" and j + 1 < n and 0 < ord(source[j + 1]) <= 126:
                                chars.append(source[j + 1])
                                j += 2
                            else:
                                chars.append(source[j])
                                j += 1
                        if j >= n:
                            raise EntityParseError(
                                f"Can't find end of a URL at byte offset {boff(url_start)}"
                            )
                        url = "".join(chars)
                        i = j + 1
                    if top.kind == "custom_emoji":
                        match = re.match(r"(?i)^tg://emoji\?(?:.*&)?id=(\d+)", url or "")
                        if url is None:
                            raise EntityParseError(
                                "The entity must contain a tg://emoji or tg://time URL"
                            )
                        if not match:
                            raise EntityParseError("Invalid tg://emoji or tg://time URL specified")
                        add(
                            {"type": "custom_emoji", "custom_emoji_id": match.group(1)},
                            top.start,
                            length,
                        )
                    else:
                        target = url if url is not None else "".join(out[top.out_index :])
                        if _looks_like_url(target):
                            add({"type": "text_link", "url": target}, top.start, length)
                elif top.kind == "pre_code":
                    add({"type": "pre", "language": top.language}, top.start, length)
                else:
                    add({"type": top.kind}, top.start, length)
                continue
            if in_code:
                emit(c)
                i += 1
                if c in "\r\n":
                    line_start = True
                continue
        if (
            quote is not None
            and source.startswith("||", i)
            and (i + 2 == n or source[i + 2] in "\r\n")
        ):
            quote["expandable"] = True
            i += 2
            continue
        if c in _MDV2_RESERVED:
            kind: str | None = None
            skip = 1
            language = ""
            if c == "_":
                kind, skip = ("underline", 2) if source.startswith("__", i) else ("italic", 1)
            elif c == "*":
                kind = "bold"
            elif c == "~":
                kind = "strikethrough"
            elif c == "|" and source.startswith("||", i):
                kind, skip = "spoiler", 2
            elif c == "[":
                kind = "text_link"
            elif c == "!" and source.startswith("![", i):
                kind, skip = "custom_emoji", 2
            elif c == "`":
                if source.startswith("```", i):
                    kind, skip = "pre", 3
                    j = i + 3
                    while j < n and source[j] not in _SPACES and source[j] != "`":
                        j += 1
                    if j < n and j > i + 3 and source[j] in _SPACES:
                        kind, language = "pre_code", source[i + 3 : j]
                        skip = _consume_newline(source, j) - i
                    else:
                        skip = _consume_newline(source, i + 3) - i
                else:
                    kind = "code"
            if kind is None:
                raise EntityParseError(
                    f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
                )
            stack.append(_MdOpen(kind, u16, len(out), boff(i), language))
            i += skip
            continue
        emit(c)
        i += 1
        if c in "\r\n":
            line_start = True
    if stack:
        top = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset {top.byte_offset}"
        )
    close_quote()
    found.sort(key=lambda item: item[:3])
    return "".join(out), [item[3] for item in found]


def parse_markdown(source: str) -> tuple[str, list[JSONDict]]:
    """Parse legacy ``Markdown`` (v1): *bold* _italic_ `code` ```pre``` [text](url)."""
    out: list[str] = []
    u16 = 0
    entities: list[JSONDict] = []
    n = len(source)
    i = 0

    def emit(piece: str) -> None:
        nonlocal u16
        out.append(piece)
        u16 += utf16_len(piece)

    while i < n:
        c = source[i]
        if c == "\\" and i + 1 < n and source[i + 1] in "_*`[":
            emit(source[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            emit(c)
            i += 1
            continue
        begin = _byte_offset(source, i)
        start = u16
        error = f"Can't find end of the entity starting at byte offset {begin}"
        if c == "[":
            end = source.find("]", i + 1)
            if end < 0:
                raise EntityParseError(error)
            emit(source[i + 1 : end])
            i = end + 1
            url = ""
            if i < n and source[i] == "(":
                close_paren = source.find(")", i + 1)
                if close_paren < 0:
                    raise EntityParseError(error)
                url = source[i + 1 : close_paren]
                i = close_paren + 1
            if url and _looks_like_url(url) and u16 > start:
                entities.append(
                    {"type": "text_link", "offset": start, "length": u16 - start, "url": url}
                )
            continue
        if source.startswith("```", i):
            end = source.find("```", i + 3)
            if end < 0:
                raise EntityParseError(error)
            body = source[i + 3 : end]
            language = ""
            first, sep, rest = body.partition("\n")
            if sep and first and not any(ch in _SPACES for ch in first):
                language, body = first, rest
            emit(body)
            entity: JSONDict = {"type": "pre", "offset": start, "length": u16 - start}
            if language:
                entity["language"] = language
            if u16 > start:
                entities.append(entity)
            i = end + 3
            continue
        end = source.find(c, i + 1)
        if end < 0:
            raise EntityParseError(error)
        emit(source[i + 1 : end])
        kind = {"*": "bold", "_": "italic", "`": "code"}[c]
        if u16 > start:
            entities.append({"type": kind, "offset": start, "length": u16 - start})
        i = end + 1
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


_AUTO_ENTITY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"(?<![\w@/])https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]")),
    (
        "bot_command",
        re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])"),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?!\w)")),
    ("hashtag", re.compile(r"(?<![\w#])#[^\W\d_]\w*")),
)


def _utf16_prefix(text: str) -> list[int]:
    prefix = [0]
    for ch in text:
        prefix.append(prefix[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return prefix


def _auto_entities(text: str, existing: Sequence[JSONDict]) -> list[JSONDict]:
    """Entities Telegram detects by itself: urls, /commands, @mentions, #hashtags."""
    prefix = _utf16_prefix(text)
    taken = [
        (e["offset"], e["offset"] + e["length"])
        for e in existing
        if e["type"]
        in (
            "code",
            "pre",
            "text_link",
            "url",
            "text_mention",
            "custom_emoji",
            "bot_command",
            "mention",
            "hashtag",
        )
    ]
    result: list[JSONDict] = []
    for kind, pattern in _AUTO_ENTITY_PATTERNS:
        for match in pattern.finditer(text):
            start, end = prefix[match.start()], prefix[match.end()]
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            result.append({"type": kind, "offset": start, "length": end - start})
    return result


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip leading/trailing whitespace like Telegram does for new messages."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    result: list[JSONDict] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(total, entity["offset"] + entity["length"] - lead)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def _check_entities(value: Any, text: str) -> list[JSONDict]:
    if not isinstance(value, list):
        raise _bad_request("can't parse entities JSON object")
    total = utf16_len(text)
    result: list[JSONDict] = []
    for item in value:
        if not isinstance(item, dict) or not {"type", "offset", "length"} <= item.keys():
            raise _bad_request('can\'t parse MessageEntity: Field "type" must be of type String')
        offset, length = int(item["offset"]), int(item["length"])
        end = min(total, offset + length)
        if offset < 0 or end <= offset:
            continue
        result.append({**item, "offset": offset, "length": end - offset})
    result.sort(key=lambda e: (e["offset"], -e["length"]))
    return result


def format_text(
    raw: str,
    parse_mode: str | None = None,
    entities: Any = None,
    *,
    strict_html: bool = True,
    trim: bool = True,
    detect: bool = True,
) -> tuple[str, list[JSONDict]]:
    """Turn a text parameter into what the user sees: ``(visible_text, entities)``.

    Raises :class:`ApiError` (400) for unparsable markup, like Telegram.
    """
    if entities:
        text, ents = raw, _check_entities(entities, raw)
    elif parse_mode:
        mode = parse_mode.lower()
        try:
            if mode == "html":
                text, ents = parse_html(raw, strict=strict_html)
            elif mode == "markdownv2":
                text, ents = parse_markdown_v2(raw)
            elif mode == "markdown":
                text, ents = parse_markdown(raw)
            else:
                raise _bad_request("unsupported parse_mode")
        except EntityParseError as exc:
            raise _bad_request(f"can't parse entities: {exc}") from None
    else:
        text, ents = raw, []
    if trim:
        text, ents = _trim(text, ents)
    if detect:
        ents = sorted(ents + _auto_entities(text, ents), key=lambda e: (e["offset"], -e["length"]))
    return text, ents


# --------------------------------------------------------------------------------------------
# Records exposed to tests
# --------------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class ApiCall:
    """One Bot API request as the fake saw it."""

    method: str
    http_method: str
    content_type: str
    started: float
    params: JSONDict = field(default_factory=dict)
    raw_params: JSONDict = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    status: int | None = None
    response: JSONDict | None = None
    finished: float | None = None
    injected: bool = False
    abandoned: bool = False
    via_webhook_reply: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result") if self.response else None

    @property
    def error(self) -> str | None:
        if self.response is None or self.response.get("ok"):
            return None
        return str(self.response.get("description"))

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


@dataclass
class CallbackAnswer:
    query_id: str
    user_id: int
    chat_id: int | None
    message_id: int | None
    data: str | None
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    answered_at: float


@dataclass
class ChatAction:
    action: str
    at: float


@dataclass
class WebhookDelivery:
    update_id: int
    url: str
    attempt: int
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    error: str | None = None
    response_body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _WebhookConfig:
    url: str
    secret_token: str | None
    max_connections: int
    ip_address: str | None
    set_at: float


@dataclass
class _QueuedUpdate:
    update_id: int
    payload: JSONDict
    kind: str
    delivered: int = 0


@dataclass
class _CallbackQueryState:
    query_id: str
    user_id: int
    chat_id: int | None
    message_id: int | None
    data: str | None
    created: float
    answered: bool = False


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes

    def to_dict(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


# --------------------------------------------------------------------------------------------
# Chats and messages
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ChatMessage:
    """A message as it currently appears in a chat (live object: edits are applied in place).

    ``text`` / ``caption`` are what the user sees (markup parsed away, entities in
    ``entities``); ``raw_text`` is what the bot sent; ``reply_markup`` is the inline keyboard
    (the only markup Telegram echoes back); ``sent_reply_markup`` is whatever markup the bot
    sent, reply keyboards included. ``versions`` holds earlier states.
    """

    chat: FakeChat = field(repr=False)
    message_id: int
    date: int
    from_bot: bool
    sender: JSONDict | None = field(default=None, repr=False)
    kind: str = "text"
    text: str | None = None
    caption: str | None = None
    entities: list[JSONDict] = field(default_factory=list, repr=False)
    raw_text: str | None = field(default=None, repr=False)
    parse_mode: str | None = field(default=None, repr=False)
    reply_markup: JSONDict | None = field(default=None, repr=False)
    sent_reply_markup: JSONDict | None = field(default=None, repr=False)
    media: JSONDict = field(default_factory=dict, repr=False)
    reply_to_message_id: int | None = field(default=None, repr=False)
    edit_date: int | None = None
    deleted: bool = False
    versions: list[JSONDict] = field(default_factory=list, repr=False)

    @property
    def chat_id(self) -> int:
        return self.chat.id

    @property
    def content(self) -> str:
        """Visible text or caption ('' for e.g. stickers)."""
        if self.text is not None:
            return self.text
        return self.caption or ""

    @property
    def buttons(self) -> list[list[JSONDict]]:
        if not self.reply_markup:
            return []
        return [list(row) for row in self.reply_markup.get("inline_keyboard", [])]

    @property
    def button_texts(self) -> list[str]:
        return [str(b.get("text")) for row in self.buttons for b in row]

    @property
    def callback_data(self) -> list[str]:
        return [
            str(b["callback_data"]) for row in self.buttons for b in row if "callback_data" in b
        ]

    def find_button(self, label: str) -> JSONDict | None:
        """The inline button whose text (preferred) or callback_data equals ``label``."""
        flat = [b for row in self.buttons for b in row]
        for button in flat:
            if button.get("text") == label:
                return button
        for button in flat:
            if button.get("callback_data") == label:
                return button
        return None

    def _snapshot(self) -> JSONDict:
        return {
            "text": self.text,
            "caption": self.caption,
            "entities": list(self.entities),
            "raw_text": self.raw_text,
            "reply_markup": self.reply_markup,
            "edit_date": self.edit_date,
        }

    def to_dict(self, *, with_reply: bool = True) -> JSONDict:
        """The Telegram ``Message`` object for the current state."""
        data: JSONDict = {"message_id": self.message_id, "date": self.date}
        if self.sender is not None:
            data["from"] = dict(self.sender)
        if self.chat.type == "channel":
            data["sender_chat"] = self.chat.to_dict()
        data["chat"] = self.chat.to_dict()
        if with_reply and self.reply_to_message_id is not None:
            replied = self.chat._messages.get(self.reply_to_message_id)
            if replied is not None and not replied.deleted:
                data["reply_to_message"] = replied.to_dict(with_reply=False)
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.text is not None:
            data["text"] = self.text
            if self.entities:
                data["entities"] = [dict(e) for e in self.entities]
        data.update(json.loads(json.dumps(self.media)))
        if self.caption is not None:
            data["caption"] = self.caption
            if self.entities:
                data["caption_entities"] = [dict(e) for e in self.entities]
        if self.reply_markup is not None:
            data["reply_markup"] = json.loads(json.dumps(self.reply_markup))
        return data


class FakeChat:
    """A chat (private, group, supergroup or channel) and everything visible in it."""

    def __init__(
        self,
        chat_id: int,
        chat_type: str,
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> None:
        self.id = chat_id
        self.type = chat_type
        self.title = title
        self.username = username
        self.first_name = first_name
        self.last_name = last_name
        self._messages: dict[int, ChatMessage] = {}
        self._next_message_id = 1
        self.actions: list[ChatAction] = []
        #: The reply keyboard the user currently has (``ReplyKeyboardMarkup`` dict) or None.
        self.reply_keyboard: JSONDict | None = None
        self.blocked = False
        self.menu_button: JSONDict | None = None
        #: Number of messages the bot ever sent here (deleted ones included).
        self.bot_sent_count = 0

    def __repr__(self) -> str:
        return f"FakeChat(id={self.id}, type={self.type!r}, messages={len(self.messages)})"

    def to_dict(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "type": self.type}
        if self.title is not None:
            data["title"] = self.title
        if self.username is not None:
            data["username"] = self.username
        if self.first_name is not None:
            data["first_name"] = self.first_name
        if self.last_name is not None:
            data["last_name"] = self.last_name
        return data

    @property
    def messages(self) -> list[ChatMessage]:
        """Messages currently visible in the chat (both sides), oldest first."""
        return [m for m in self._messages.values() if not m.deleted]

    @property
    def history(self) -> list[ChatMessage]:
        """Every message ever posted, deleted ones included."""
        return list(self._messages.values())

    @property
    def bot_messages(self) -> list[ChatMessage]:
        return [m for m in self.messages if m.from_bot]

    @property
    def user_messages(self) -> list[ChatMessage]:
        return [m for m in self.messages if not m.from_bot]

    @property
    def last_message(self) -> ChatMessage | None:
        visible = self.messages
        return visible[-1] if visible else None

    @property
    def last_bot_message(self) -> ChatMessage | None:
        visible = self.bot_messages
        return visible[-1] if visible else None

    @property
    def texts(self) -> list[str]:
        """Visible text/caption of the bot's visible messages, oldest first."""
        return [m.content for m in self.bot_messages]

    def message(self, message_id: int) -> ChatMessage:
        return self._messages[message_id]

    def _add(self, **kwargs: Any) -> ChatMessage:
        message = ChatMessage(
            chat=self, message_id=self._next_message_id, date=int(time.time()), **kwargs
        )
        self._next_message_id += 1
        self._messages[message.message_id] = message
        if message.from_bot:
            self.bot_sent_count += 1
        return message


# --------------------------------------------------------------------------------------------
# Simulated users
# --------------------------------------------------------------------------------------------


class FakeUser:
    """A Telegram user talking to the bot. Every ``send_*``/``tap``/... enqueues one update and
    returns it (a dict with ``update_id``)."""

    def __init__(
        self,
        api: FakeBotAPI,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        is_premium: bool | None = None,
    ) -> None:
        self.api = api
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.is_premium = is_premium
        self._mark: tuple[FakeChat | None, int] = (None, 0)

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, first_name={self.first_name!r})"

    def to_dict(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name is not None:
            data["last_name"] = self.last_name
        if self.username is not None:
            data["username"] = self.username
        if self.language_code is not None:
            data["language_code"] = self.language_code
        if self.is_premium is not None:
            data["is_premium"] = self.is_premium
        return data

    @property
    def chat(self) -> FakeChat:
        """The private chat with the bot."""
        return self.api._chats[self.id]

    @property
    def messages(self) -> list[ChatMessage]:
        return self.chat.messages

    @property
    def last_reply(self) -> ChatMessage | None:
        return self.chat.last_bot_message

    # -- sending ---------------------------------------------------------------------------

    async def _post(self, chat: FakeChat, kind: str, **fields: Any) -> JSONDict:
        self._mark = (chat, chat.bot_sent_count)
        message = chat._add(from_bot=False, sender=self.to_dict(), kind=kind, **fields)
        update = self.api._enqueue("message", message.to_dict())
        await asyncio.sleep(0)
        return update

    async def send_text(
        self,
        text: str,
        *,
        entities: list[JSONDict] | None = None,
        reply_to: ChatMessage | int | None = None,
        chat: FakeChat | None = None,
    ) -> JSONDict:
        """A text message (``/commands``, urls, @mentions get entities automatically)."""
        target = chat or self.chat
        ents = list(entities) if entities is not None else _auto_entities(text, [])
        reply_id = reply_to.message_id if isinstance(reply_to, ChatMessage) else reply_to
        return await self._post(
            target, "text", text=text, entities=ents, reply_to_message_id=reply_id
        )

    async def send_command(self, command: str, args: str | None = None) -> JSONDict:
        """``/command [args]`` with a ``bot_command`` entity at offset 0."""
        command = command if command.startswith("/") else f"/{command}"
        text = f"{command} {args}" if args else command
        head = text.split(maxsplit=1)[0]
        entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(head)}]
        return await self.send_text(text, entities=entities)

    async def tap(self, message: Any, button: str) -> JSONDict:
        """Press an inline button (matched by text, then by callback_data) of a bot message.

        ``message`` may be a :class:`ChatMessage`, a Message dict, a PTB ``Message`` or a
        message_id in this user's private chat. The message's *current* keyboard is used.
        """
        msg = self.api._resolve_message(message, self.chat)
        if msg.deleted:
            raise FakeBotAPIError(f"message {msg.message_id} was deleted; nothing to tap")
        found = msg.find_button(button)
        if found is None:
            raise FakeBotAPIError(
                f"no inline button {button!r} on message {msg.message_id} "
                f"(buttons: {msg.button_texts}, callback_data: {msg.callback_data})"
            )
        if "callback_data" not in found:
            raise FakeBotAPIError(f"button {button!r} is not a callback button: {found}")
        query_id = str(next(self.api._ids))
        self._mark = (msg.chat, msg.chat.bot_sent_count)
        self.api._callback_queries[query_id] = _CallbackQueryState(
            query_id=query_id,
            user_id=self.id,
            chat_id=msg.chat_id,
            message_id=msg.message_id,
            data=found["callback_data"],
            created=time.monotonic(),
        )
        body = {
            "id": query_id,
            "from": self.to_dict(),
            "message": msg.to_dict(),
            "chat_instance": str(-(abs(msg.chat_id) * 7919 + 17)),
            "data": found["callback_data"],
        }
        update = self.api._enqueue("callback_query", body)
        await asyncio.sleep(0)
        return update

    async def press(self, button_text: str) -> JSONDict:
        """Press a button of the reply keyboard the bot gave this user."""
        keyboard = self.chat.reply_keyboard
        if not keyboard:
            raise FakeBotAPIError("the user has no reply keyboard")
        for row in keyboard.get("keyboard", []):
            for raw_button in row:
                btn = {"text": raw_button} if isinstance(raw_button, str) else raw_button
                if btn.get("text") != button_text:
                    continue
                if keyboard.get("one_time_keyboard"):
                    self.chat.reply_keyboard = None
                if btn.get("request_contact"):
                    return await self.send_contact("+10000000000")
                if btn.get("request_location"):
                    return await self.send_location()
                return await self.send_text(button_text)
        texts = [
            b if isinstance(b, str) else b.get("text")
            for row in keyboard.get("keyboard", [])
            for b in row
        ]
        raise FakeBotAPIError(f"no reply keyboard button {button_text!r} (buttons: {texts})")

    async def send_sticker(self, emoji: str = "👍") -> JSONDict:
        stored = self.api._store_file(b"fake-sticker", "stickers", ".webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": len(stored.data),
        }
        return await self._post(self.chat, "sticker", media={"sticker": sticker})

    async def send_photo(
        self,
        caption: str | None = None,
        *,
        data: bytes = b"fake-photo",
        width: int = 800,
        height: int = 600,
    ) -> JSONDict:
        media = {"photo": self.api._photo_sizes(data, width, height)}
        return await self._post(
            self.chat,
            "photo",
            media=media,
            caption=caption,
            entities=_auto_entities(caption or "", []),
        )

    async def send_voice(self, duration: int = 3, *, data: bytes = b"fake-voice") -> JSONDict:
        stored = self.api._store_file(data, "voice", ".oga")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return await self._post(self.chat, "voice", media={"voice": voice})

    async def send_location(
        self, latitude: float = 55.7558, longitude: float = 37.6173
    ) -> JSONDict:
        return await self._post(
            self.chat,
            "location",
            media={"location": {"latitude": latitude, "longitude": longitude}},
        )

    async def send_document(
        self,
        file_name: str = "report.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        *,
        data: bytes = b"%PDF-1.4 fake",
    ) -> JSONDict:
        stored = self.api._store_file(data, "documents", "." + file_name.rsplit(".", 1)[-1])
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return await self._post(
            self.chat,
            "document",
            media={"document": document},
            caption=caption,
            entities=_auto_entities(caption or "", []),
        )

    async def send_contact(
        self, phone_number: str, first_name: str | None = None, *, own: bool = True
    ) -> JSONDict:
        """Share a contact; with ``own=True`` it is this user's own (``contact.user_id`` set)."""
        contact: JSONDict = {
            "phone_number": phone_number,
            "first_name": first_name or self.first_name,
        }
        if own:
            contact["user_id"] = self.id
            if self.last_name:
                contact["last_name"] = self.last_name
        return await self._post(self.chat, "contact", media={"contact": contact})

    async def edit_text(self, message: Any, new_text: str) -> JSONDict:
        """Edit one of this user's own text messages (an ``edited_message`` update)."""
        msg = self.api._resolve_message(message, self.chat)
        if msg.from_bot or (msg.sender or {}).get("id") != self.id:
            raise FakeBotAPIError("a user can only edit their own messages")
        if msg.text is None:
            raise FakeBotAPIError("only text messages can be edited with edit_text()")
        msg.versions.append(msg._snapshot())
        msg.text = new_text
        msg.entities = _auto_entities(new_text, [])
        msg.edit_date = int(time.time())
        self._mark = (msg.chat, msg.chat.bot_sent_count)
        update = self.api._enqueue("edited_message", msg.to_dict())
        await asyncio.sleep(0)
        return update

    async def block_bot(self) -> JSONDict:
        """Block the bot: enqueues a ``my_chat_member`` update (status ``kicked``) and makes
        sending to this user answer 403."""
        self.api.block_user(self.id)
        return await self.api._member_update(self, "member", "kicked")

    async def unblock_bot(self) -> JSONDict:
        """Unblock (restart) the bot: ``my_chat_member`` update back to ``member``."""
        self.api.unblock_user(self.id)
        return await self.api._member_update(self, "kicked", "member")

    # -- waiting ---------------------------------------------------------------------------

    async def wait_replies(self, n: int = 1, timeout: float = 5.0) -> list[ChatMessage]:
        """Wait until the bot has sent ``n`` messages to the chat of this user's last action
        (send/tap/edit; private chat by default) since that action; return them (current
        state, so a later edit shows up, a deletion sets ``deleted``)."""
        chat, mark = self._mark[0] or self.chat, self._mark[1]

        def ready() -> list[ChatMessage] | None:
            if chat.bot_sent_count < mark + n:
                return None
            sent = [m for m in chat.history if m.from_bot]
            return sent[mark : mark + n]

        result: list[ChatMessage] = await self.api.wait_for(
            ready, timeout, description=f"{n} bot message(s) to chat {chat.id} after mark {mark}"
        )
        return result

    async def wait_reply(self, timeout: float = 5.0) -> ChatMessage:
        """The first bot message sent to this chat after this user's last action."""
        return (await self.wait_replies(1, timeout))[0]


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _Params:
    def __init__(self, values: JSONDict, files: dict[str, UploadedFile]) -> None:
        self.values = values
        self.files = files

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def get_str(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return default if value is None else str(value)

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def get_float(self, name: str, default: float | None = None) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return value.lower() in ("true", "1")
        return bool(value)


def _decode_params(raw: Mapping[str, Any]) -> JSONDict:
    """Decode wire values (strings in form bodies) into Python values by parameter name."""
    values: JSONDict = {}
    for name, value in raw.items():
        if isinstance(value, str):
            if name in _JSON_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError:
                    if name == "reply_markup":
                        raise _bad_request(
                            "can't parse reply keyboard markup JSON object"
                        ) from None
                    raise _bad_request(f"can't parse {name} JSON object") from None
            elif name in _INT_FIELDS:
                try:
                    value = int(value)
                except ValueError:
                    raise _bad_request(f"invalid {name} specified") from None
            elif name in _CHAT_ID_FIELDS:
                if re.fullmatch(r"-?\d+", value.strip()):
                    value = int(value)
            elif name in _BOOL_FIELDS:
                value = value.lower() in ("true", "1")
            elif name in _FLOAT_FIELDS:
                try:
                    value = float(value)
                except ValueError:
                    raise _bad_request(f"invalid {name} specified") from None
        values[name] = value
    return values


Handler = Callable[[_Params, "web.Request | None"], Awaitable[Any]]


@dataclass
class _Fault:
    error: ApiError
    remaining: int


class _Described:
    """A successful result that also carries Telegram's optional ``description``."""

    def __init__(self, result: Any, description: str) -> None:
        self.result = result
        self.description = description


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port (for PTB's webhook server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class FakeBotAPI:
    """An in-process fake of ``api.telegram.org`` for one bot.

    Limits enforced with Telegram's answers (400 unless noted):

    * inline button ``callback_data`` over 64 UTF-8 bytes -> ``BUTTON_DATA_INVALID``
    * text over 4096 characters after entity parsing -> ``message is too long``; empty ->
      ``message text is empty``; caption over 1024 -> ``message caption is too long``
    * bad HTML/MarkdownV2/Markdown -> ``can't parse entities: ...``
    * ``answerCallbackQuery`` text over 200 chars -> ``MESSAGE_TOO_LONG``; a query answered twice
      or unknown -> ``query is too old and response timeout expired or query ID is invalid``
    * editing without changes -> ``message is not modified: ...``; editing/deleting a missing
      message -> ``message to edit not found`` / ``message to delete not found``
    * sending to a blocked user -> 403 ``Forbidden: bot was blocked by the user``
    * unknown chat -> ``chat not found``; invalid commands -> ``BOT_COMMAND_INVALID``
    """

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "test_bot",
        bot_first_name: str = "Test Bot",
        strict_chats: bool = True,
        strict_html: bool = True,
        webhook_retry_delays: Sequence[float] = (0.05, 0.1, 0.2, 0.4),
        webhook_timeout: float = 5.0,
        callback_query_ttl: float | None = None,
        first_update_id: int = 1,
    ) -> None:
        self.token = token
        self.host = host
        self._requested_port = port
        self.port = 0
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 1
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict_chats = strict_chats
        self.strict_html = strict_html
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_timeout = webhook_timeout
        self.callback_query_ttl = callback_query_ttl

        #: Every request, in arrival order.
        self.requests: list[ApiCall] = []
        #: Every update ever enqueued, in order.
        self.updates: list[JSONDict] = []
        # an extra condition for wait_idle, e.g. "the bot has handled every delivered update"
        self.idle_check: Callable[[], bool] | None = None
        #: Updates dropped because they were not in ``allowed_updates`` or webhook gave up.
        self.dropped_updates: list[JSONDict] = []
        self.callback_answers: list[CallbackAnswer] = []
        #: ``{(scope_key, language_code): [BotCommand dicts]}``; scope keys: ``"default"``,
        #: ``"all_private_chats"``, ``"all_group_chats"``, ``"all_chat_administrators"``,
        #: ``"chat:<id>"``, ``"chat_administrators:<id>"``, ``"chat_member:<chat>:<user>"``.
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.default_menu_button: JSONDict | None = None
        self.descriptions: dict[tuple[str, str], str] = {}

        self._chats: dict[int, FakeChat] = {}
        self._users: dict[int, FakeUser] = {}
        self._queue: list[_QueuedUpdate] = []
        self._next_update_id = first_update_id
        self._allowed_updates: list[str] | None = None
        self._webhook: _WebhookConfig | None = None
        self._webhook_last_error: tuple[int, str] | None = None
        self._callback_queries: dict[str, _CallbackQueryState] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000 + 1)
        self._file_counter = itertools.count(1)
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._poll_seq = 0
        self._poll_terminated_by = ""
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._methods: dict[str, Handler] = {
            name.lower(): handler
            for name, handler in {
                "getMe": self._m_get_me,
                "logOut": self._m_true,
                "close": self._m_true,
                "getUpdates": self._m_get_updates,
                "setWebhook": self._m_set_webhook,
                "deleteWebhook": self._m_delete_webhook,
                "getWebhookInfo": self._m_get_webhook_info,
                "sendMessage": self._m_send_message,
                "editMessageText": self._m_edit_message_text,
                "editMessageCaption": self._m_edit_message_caption,
                "editMessageReplyMarkup": self._m_edit_message_reply_markup,
                "deleteMessage": self._m_delete_message,
                "deleteMessages": self._m_delete_messages,
                "answerCallbackQuery": self._m_answer_callback_query,
                "setMyCommands": self._m_set_my_commands,
                "getMyCommands": self._m_get_my_commands,
                "deleteMyCommands": self._m_delete_my_commands,
                "sendChatAction": self._m_send_chat_action,
                "setChatMenuButton": self._m_set_chat_menu_button,
                "getChatMenuButton": self._m_get_chat_menu_button,
                "setMyDescription": self._described_setter("description"),
                "getMyDescription": self._described_getter("description"),
                "setMyShortDescription": self._described_setter("short_description"),
                "getMyShortDescription": self._described_getter("short_description"),
                "setMyName": self._described_setter("name"),
                "getMyName": self._described_getter("name"),
                "sendPhoto": self._media_sender("photo"),
                "sendDocument": self._media_sender("document"),
                "sendVoice": self._media_sender("voice"),
                "sendAudio": self._media_sender("audio"),
                "sendVideo": self._media_sender("video"),
                "sendAnimation": self._media_sender("animation"),
                "sendSticker": self._media_sender("sticker"),
                "sendVideoNote": self._media_sender("video_note"),
                "sendLocation": self._m_send_location,
                "sendContact": self._m_send_contact,
                "getFile": self._m_get_file,
            }.items()
        }

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Pass to ``ApplicationBuilder().base_url()``; PTB appends ``{token}/{method}``."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    async def start(self) -> FakeBotAPI:
        if self._runner is not None:
            raise RuntimeError("FakeBotAPI already started")
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        self._webhook_task = asyncio.create_task(self._webhook_loop(), name="FakeBotAPI-webhook")
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- chats and users -------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str = "Ann",
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
        username: str | None = None,
        is_premium: bool | None = None,
    ) -> FakeUser:
        """The simulated user ``user_id`` (created once; its private chat id == user id)."""
        existing = self._users.get(user_id)
        if existing is not None:
            return existing
        user = FakeUser(
            self,
            user_id,
            first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
        )
        self._users[user_id] = user
        self._chats.setdefault(
            user_id,
            FakeChat(
                user_id, "private", first_name=first_name, last_name=last_name, username=username
            ),
        )
        return user

    def group(
        self,
        chat_id: int,
        title: str = "Test group",
        *,
        chat_type: str = "group",
        username: str | None = None,
    ) -> FakeChat:
        """A group/supergroup chat the bot is a member of (created on first use)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = FakeChat(chat_id, chat_type, title=title, username=username)
            self._chats[chat_id] = chat
        return chat

    def channel(
        self, chat_id: int, title: str = "Test channel", *, username: str | None = None
    ) -> FakeChat:
        return self.group(chat_id, title, chat_type="channel", username=username)

    def chat(self, chat_id: int) -> FakeChat:
        """Observe a chat. Raises KeyError for chats the fake does not know."""
        try:
            return self._chats[chat_id]
        except KeyError:
            raise KeyError(f"unknown chat {chat_id}; known: {sorted(self._chats)}") from None

    @property
    def chats(self) -> dict[int, FakeChat]:
        return dict(self._chats)

    # -- incoming updates ------------------------------------------------------------------

    def _enqueue(self, kind: str, body: JSONDict, update_id: int | None = None) -> JSONDict:
        if update_id is None:
            update_id = self._next_update_id
        self._next_update_id = max(self._next_update_id, update_id + 1)
        update = {"update_id": update_id, kind: body}
        self._queue.append(_QueuedUpdate(update_id, update, kind))
        self.updates.append(update)
        self._touch()
        self._notify()
        return update

    def enqueue_raw(self, update: Mapping[str, Any]) -> JSONDict:
        """Queue an arbitrary update dict (not awaited); ``update_id`` is assigned if missing
        (keep it to simulate a duplicate delivery). Returns the queued update."""
        data = json.loads(json.dumps(dict(update)))
        update_id = data.pop("update_id", None)
        kinds = [k for k in data if k in UPDATE_TYPES] or list(data)
        if len(kinds) != 1:
            raise FakeBotAPIError(f"an update has exactly one payload field, got {list(data)}")
        return self._enqueue(kinds[0], data[kinds[0]], update_id)

    async def group_message(
        self,
        chat_id: int,
        user: FakeUser | int,
        text: str,
        *,
        title: str = "Test group",
        chat_type: str = "group",
        entities: list[JSONDict] | None = None,
        reply_to: ChatMessage | int | None = None,
    ) -> JSONDict:
        """``user`` writes ``text`` in group ``chat_id`` (created on first use)."""
        chat = self.group(chat_id, title, chat_type=chat_type)
        sender = user if isinstance(user, FakeUser) else self.user(user)
        return await sender.send_text(text, entities=entities, reply_to=reply_to, chat=chat)

    async def channel_post(
        self,
        chat_id: int,
        text: str,
        *,
        title: str = "Test channel",
        username: str | None = None,
    ) -> JSONDict:
        chat = self.channel(chat_id, title, username=username)
        message = chat._add(
            from_bot=False, sender=None, kind="text", text=text, entities=_auto_entities(text, [])
        )
        update = self._enqueue("channel_post", message.to_dict())
        await asyncio.sleep(0)
        return update

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet delivered (never returned by getUpdates / acknowledged by webhook)."""
        return [q.payload for q in self._queue if q.delivered == 0]

    # -- observation -----------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Recorded calls, optionally of one method (case-insensitive)."""
        if method is None:
            return list(self.requests)
        return [c for c in self.requests if c.method.lower() == method.lower()]

    def last_call(self, method: str) -> ApiCall:
        found = self.calls(method)
        if not found:
            raise FakeBotAPIError(f"{method} was never called; calls: {self._summary()}")
        return found[-1]

    @property
    def unknown_calls(self) -> list[ApiCall]:
        """Calls of methods the fake does not implement (answered 404)."""
        return [c for c in self.requests if c.method.lower() not in self._methods]

    @property
    def error_calls(self) -> list[ApiCall]:
        """Calls answered with an error (injected faults included, abandoned polls excluded)."""
        return [c for c in self.requests if c.response is not None and not c.ok and not c.abandoned]

    def get_commands(self, scope: str = "default", language_code: str = "") -> list[JSONDict]:
        return list(self.commands.get((scope, language_code), []))

    @property
    def webhook_url(self) -> str:
        return self._webhook.url if self._webhook else ""

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _summary(self, last: int = 8) -> str:
        parts = [f"{c.method}->{c.status}" for c in self.requests[-last:]]
        return ", ".join(parts) or "(no requests)"

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, description: str | None = None
    ) -> Any:
        """Wait until ``predicate()`` is truthy and return its value (re-checked on every
        state change and at least every 50 ms). Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {description or predicate!r}; "
                    f"recent calls: {self._summary()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    async def wait_for_messages(
        self, chat_id: int, n: int = 1, timeout: float = 5.0
    ) -> list[ChatMessage]:
        """Wait until chat ``chat_id`` shows at least ``n`` (visible) bot messages."""

        def ready() -> list[ChatMessage] | None:
            chat = self._chats.get(chat_id)
            if chat is None:
                return None
            found = chat.bot_messages
            return found if len(found) >= n else None

        result: list[ChatMessage] = await self.wait_for(
            ready, timeout, description=f"{n} bot message(s) in chat {chat_id}"
        )
        return result

    async def wait_for_call(
        self,
        method: str,
        n: int = 1,
        timeout: float = 5.0,
        *,
        predicate: Callable[[ApiCall], bool] | None = None,
    ) -> ApiCall:
        """Wait until ``method`` has been answered ``n`` times (matching ``predicate``) and
        return the n-th such call."""

        def ready() -> ApiCall | None:
            found = [
                c
                for c in self.calls(method)
                if c.response is not None and (predicate is None or predicate(c))
            ]
            return found[n - 1] if len(found) >= n else None

        result: ApiCall = await self.wait_for(ready, timeout, description=f"{n}x {method}")
        return result

    async def wait_idle(self, quiet: float = 0.1, timeout: float = 5.0) -> None:
        """Wait until every update was delivered, no request is being handled (parked long
        polls excepted) and nothing happened for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            idle_for = time.monotonic() - self._last_activity
            if not self.pending_updates and self._inflight == 0 and idle_for >= quiet and (
                    self.idle_check is None or self.idle_check()):
                return
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"not idle after {timeout}s: pending={len(self.pending_updates)}, "
                    f"inflight={self._inflight}; recent calls: {self._summary()}"
                )
            await asyncio.sleep(min(0.02, max(0.001, quiet - idle_for)))

    # -- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int = 1,
        times: int = 1,
        *,
        description: str | None = None,
        parameters: JSONDict | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any method) with an error.
        429 carries ``parameters.retry_after`` (PTB raises ``RetryAfter``)."""
        if description is None:
            description = {
                400: "Bad Request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not Found",
                409: "Conflict",
                429: f"Too Many Requests: retry after {retry_after}",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, "Error")
        if parameters is None and error_code == 429:
            parameters = {"retry_after": retry_after}
        fault = _Fault(ApiError(error_code, description, parameters), times)
        self._faults.setdefault(method.lower(), []).append(fault)

    def delay(self, method: str, seconds: float) -> None:
        """Delay every answer of ``method`` (``"*"``: any) by ``seconds``; 0 removes it."""
        if seconds <= 0:
            self._delays.pop(method.lower(), None)
        else:
            self._delays[method.lower()] = seconds

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delays.clear()

    def block_user(self, chat_id: int) -> None:
        """The user blocked the bot (or, for a group/channel, the bot was removed): sending
        there answers 403 ``Forbidden: bot was blocked by the user``. No update is sent; use
        ``FakeUser.block_bot()`` for the accompanying ``my_chat_member`` update."""
        chat = self._chats.get(chat_id) or self.user(chat_id).chat
        chat.blocked = True
        self._notify()

    def unblock_user(self, chat_id: int) -> None:
        self.chat(chat_id).blocked = False
        self._notify()

    async def _member_update(self, user: FakeUser, old: str, new: str) -> JSONDict:
        def member(status: str) -> JSONDict:
            data: JSONDict = {"status": status, "user": self.bot_user}
            if status == "kicked":
                data["until_date"] = 0
            return data

        body = {
            "chat": user.chat.to_dict(),
            "from": user.to_dict(),
            "date": int(time.time()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }
        update = self._enqueue("my_chat_member", body)
        await asyncio.sleep(0)
        return update

    # -- HTTP ------------------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, dict[str, UploadedFile]]:
        raw: JSONDict = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if not request.can_read_body:
            return raw, files
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad_request("can't parse JSON request body") from None
            if isinstance(body, dict):
                raw.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = UploadedFile(
                        key, value.filename, value.content_type, value.file.read()
                    )
                else:
                    raw[key] = value
        return raw, files

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        call = ApiCall(
            method=method,
            http_method=request.method,
            content_type=request.content_type,
            started=time.monotonic(),
        )
        self.requests.append(call)
        is_poll = method.lower() == "getupdates"
        try:
            raw, files = await self._read_params(request)
        except ApiError as exc:
            raw, files = {}, {}
            status, payload = exc.error_code, exc.payload()
        else:
            if request.match_info["token"] != self.token:
                status, payload = 401, ApiError(401, "Unauthorized").payload()
            else:
                status, payload = await self._dispatch(call, raw, files, request)
        call.raw_params = raw
        call.files = files
        call.status, call.response, call.finished = status, payload, time.monotonic()
        if not (is_poll and payload.get("ok") and not payload.get("result")):
            self._touch()
        self._notify()
        if call.abandoned:
            return web.Response(status=499)
        return web.Response(
            status=status,
            text=json.dumps(payload, ensure_ascii=False),
            content_type="application/json",
        )

    async def _dispatch(
        self,
        call: ApiCall,
        raw: JSONDict,
        files: dict[str, UploadedFile],
        request: web.Request | None,
    ) -> tuple[int, JSONDict]:
        lowered = call.method.lower()
        is_poll = lowered == "getupdates"
        if not is_poll:
            self._inflight += 1
            self._touch()
        self._notify()
        try:
            call.params = _decode_params(raw)
            pause = self._delays.get(lowered) or self._delays.get("*")
            if pause:
                await asyncio.sleep(pause)
            fault = self._take_fault(lowered)
            if fault is not None:
                call.injected = True
                raise fault
            handler = self._methods.get(lowered)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(_Params(call.params, files), request)
        except ApiError as exc:
            if request is not None and is_poll and self._client_gone(request):
                call.abandoned = True
            return exc.error_code, exc.payload()
        except _Abandoned:
            call.abandoned = True
            return 499, {"ok": False, "error_code": 499, "description": "client went away"}
        finally:
            if not is_poll:
                self._inflight -= 1
        if isinstance(result, _Described):
            return 200, {"ok": True, "result": result.result, "description": result.description}
        return 200, {"ok": True, "result": result}

    def _take_fault(self, method: str) -> ApiError | None:
        for key in (method, "*"):
            faults = self._faults.get(key)
            if faults:
                fault = faults[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.pop(0)
                return fault.error
        return None

    @staticmethod
    def _client_gone(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # -- polling and webhook -----------------------------------------------------------------

    def _allowed(self) -> frozenset[str]:
        if not self._allowed_updates:
            return DEFAULT_ALLOWED_UPDATES
        return frozenset(self._allowed_updates)

    def _set_allowed(self, value: Any) -> None:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise _bad_request("can't parse allowed_updates JSON object")
        self._allowed_updates = [str(v) for v in value]

    def _deliverable(self, limit: int) -> list[_QueuedUpdate]:
        allowed = self._allowed()
        batch: list[_QueuedUpdate] = []
        for entry in list(self._queue):
            if entry.kind not in allowed:
                self._queue.remove(entry)
                self.dropped_updates.append(entry.payload)
                continue
            batch.append(entry)
            if len(batch) >= limit:
                break
        return batch

    async def _m_get_updates(self, p: _Params, request: web.Request | None) -> Any:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = p.get_int("offset")
        limit = min(100, max(1, p.get_int("limit") or 100))
        timeout = max(0.0, p.get_float("timeout") or 0.0)
        if p.get("allowed_updates") is not None:
            self._set_allowed(p.get("allowed_updates"))
        self._poll_seq += 1
        mine = self._poll_seq
        self._poll_terminated_by = (
            "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running"
        )
        self._notify()
        if offset is not None:
            if offset < 0:
                self._queue = self._queue[offset:]
            else:
                self._queue = [q for q in self._queue if not (q.delivered and q.update_id < offset)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if self._poll_seq != mine:
                if request is not None and self._client_gone(request):
                    raise _Abandoned()
                raise ApiError(409, self._poll_terminated_by)
            if request is not None and self._client_gone(request):
                raise _Abandoned()
            if self._closing:
                return []
            batch = self._deliverable(limit)
            if batch:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        for entry in batch:
            entry.delivered += 1
        return [json.loads(json.dumps(entry.payload)) for entry in batch]

    async def _m_set_webhook(self, p: _Params, request: web.Request | None) -> Any:
        url = p.get_str("url") or ""
        if not url:
            return await self._m_delete_webhook(p, request)
        if not re.match(r"^https?://[^\s/]+", url):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get_str("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise _bad_request("secret token contains unallowed characters")
        max_connections = p.get_int("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise _bad_request("bad webhook: invalid max_connections")
        if p.get("allowed_updates") is not None:
            self._set_allowed(p.get("allowed_updates"))
        if p.get_bool("drop_pending_updates"):
            self._drop_pending()
        old = self._webhook
        self._webhook = _WebhookConfig(
            url, secret or None, max_connections, p.get_str("ip_address"), time.monotonic()
        )
        self._webhook_last_error = None
        self._poll_seq += 1
        self._poll_terminated_by = "Conflict: terminated by setWebhook request"
        self._notify()
        same = old is not None and old.url == url and old.secret_token == (secret or None)
        return _Described(True, "Webhook is already set" if same else "Webhook was set")

    async def _m_delete_webhook(self, p: _Params, request: web.Request | None) -> Any:
        had = self._webhook is not None
        self._webhook = None
        if p.get_bool("drop_pending_updates"):
            self._drop_pending()
        self._notify()
        return _Described(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _drop_pending(self) -> None:
        self.dropped_updates.extend(q.payload for q in self._queue if q.delivered == 0)
        self._queue.clear()

    async def _m_get_webhook_info(self, p: _Params, request: web.Request | None) -> Any:
        info: JSONDict = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len([q for q in self._queue if q.delivered == 0]),
        }
        if self._webhook is not None:
            info["max_connections"] = self._webhook.max_connections
            if self._webhook.ip_address:
                info["ip_address"] = self._webhook.ip_address
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def _webhook_loop(self) -> None:
        while True:
            event = self._changed
            config = self._webhook
            batch = self._deliverable(1) if config is not None else []
            if config is None or not batch:
                await event.wait()
                continue
            await self._deliver(config, batch[0])

    async def _deliver(self, config: _WebhookConfig, entry: _QueuedUpdate) -> None:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if config.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = config.secret_token
        body = json.dumps(entry.payload, ensure_ascii=False).encode()
        attempts = 1 + len(self.webhook_retry_delays)
        for attempt in range(attempts):
            if self._webhook is not config or entry not in self._queue:
                return  # webhook changed or update dropped meanwhile
            record = WebhookDelivery(entry.update_id, config.url, attempt + 1, dict(headers), body)
            self._inflight += 1
            try:
                async with self._session.post(
                    config.url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
                ) as response:
                    record.status = response.status
                    record.response_body = await response.read()
                    reason = response.reason or ""
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                reason = ""
            finally:
                self._inflight -= 1
            self.webhook_deliveries.append(record)
            self._touch()
            if record.ok:
                entry.delivered += 1
                if entry in self._queue:
                    self._queue.remove(entry)
                self._notify()
                await self._webhook_reply(record.response_body)
                return
            if record.error is not None:
                message = "Connection refused" if "onnect" in record.error else record.error
            else:
                message = f"Wrong response from the webhook: {record.status} {reason}".rstrip()
            self._webhook_last_error = (int(time.time()), message)
            self._notify()
            if attempt < len(self.webhook_retry_delays):
                await asyncio.sleep(self.webhook_retry_delays[attempt])
        if entry in self._queue:
            self._queue.remove(entry)
            self.dropped_updates.append(entry.payload)
        self._notify()

    async def _webhook_reply(self, body: bytes) -> None:
        """Telegram executes a method given in the webhook response body."""
        if not body.strip():
            return
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("method"), str):
            return
        raw = {k: v for k, v in data.items() if k != "method"}
        call = ApiCall(
            method=data["method"],
            http_method="WEBHOOK-REPLY",
            content_type="application/json",
            started=time.monotonic(),
            raw_params=raw,
            via_webhook_reply=True,
        )
        self.requests.append(call)
        call.status, call.response = await self._dispatch(call, raw, {}, None)
        call.finished = time.monotonic()
        self._notify()

    # -- helpers for methods -----------------------------------------------------------------

    def _target_chat(self, p: _Params, *, sending: bool = True) -> FakeChat:
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        chat: FakeChat | None = None
        if isinstance(chat_id, int):
            chat = self._chats.get(chat_id)
        elif isinstance(chat_id, str) and chat_id.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username == chat_id[1:]), None)
        if chat is None:
            if self.strict_chats or not isinstance(chat_id, int):
                raise _bad_request("chat not found")
            chat = self.user(chat_id).chat if chat_id > 0 else self.group(chat_id)
        if sending and chat.blocked:
            raise ApiError(
                403,
                {
                    "private": "Forbidden: bot was blocked by the user",
                    "channel": "Forbidden: bot is not a member of the channel chat",
                }.get(chat.type, "Forbidden: bot was kicked from the group chat"),
            )
        return chat

    def _format(
        self,
        p: _Params,
        text_field: str,
        entities_field: str,
        *,
        limit: int,
        too_long: str,
        required: bool,
        empty: str = "message text is empty",
    ) -> tuple[str | None, list[JSONDict], str | None]:
        raw = p.get(text_field)
        if raw is None or raw == "":
            if required:
                raise _bad_request(empty)
            return None, [], None
        raw_text = raw if isinstance(raw, str) else json.dumps(raw)
        text, entities = format_text(
            raw_text, p.get_str("parse_mode"), p.get(entities_field), strict_html=self.strict_html
        )
        if not text:
            if required:
                raise _bad_request(empty)
            return None, [], raw_text
        if len(text) > limit:
            raise _bad_request(too_long)
        return text, entities, raw_text

    def _check_markup(self, markup: Any, *, inline_only: bool = False) -> JSONDict | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad_request(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    self._check_inline_button(button)
            if not any(rows):
                return None
            return markup
        if inline_only:
            raise _bad_request("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad_request(
                    'field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    text = (
                        button
                        if isinstance(button, str)
                        else (button.get("text") if isinstance(button, dict) else None)
                    )
                    if not isinstance(text, str):
                        raise _bad_request(
                            'can\'t parse keyboard button: Field "text" must be of type String'
                        )
            return markup
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return markup
        raise _bad_request("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _check_inline_button(button: Any) -> None:
        if not isinstance(button, dict):
            raise _bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        if not isinstance(button.get("text"), str):
            raise _bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not button["text"]:
            raise _bad_request("BUTTON_TEXT_INVALID")
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str):
                raise _bad_request(
                    'can\'t parse inline keyboard button: Field "callback_data" must be of type '
                    "String"
                )
            size = len(data.encode("utf-8"))
            if size == 0 or size > MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            if not isinstance(url, str) or not _looks_like_url(url):
                raise _bad_request("BUTTON_URL_INVALID")
        if not any(key in button for key in INLINE_BUTTON_ACTIONS):
            raise _bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline "
                "keyboard"
            )

    @staticmethod
    def _inline_part(markup: JSONDict | None) -> JSONDict | None:
        return markup if markup is not None and "inline_keyboard" in markup else None

    @staticmethod
    def _apply_reply_keyboard(chat: FakeChat, markup: JSONDict | None) -> None:
        if markup is None:
            return
        if "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup.get("remove_keyboard"):
            chat.reply_keyboard = None

    def _reply_target(self, chat: FakeChat, p: _Params) -> int | None:
        params = p.get("reply_parameters")
        allow_missing = p.get_bool("allow_sending_without_reply")
        message_id = p.get_int("reply_to_message_id")
        if isinstance(params, dict):
            message_id = int(params["message_id"]) if "message_id" in params else None
            allow_missing = bool(params.get("allow_sending_without_reply", allow_missing))
        if message_id is None:
            return None
        target = chat._messages.get(message_id)
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return message_id

    def _sender_for(self, chat: FakeChat) -> JSONDict | None:
        return None if chat.type == "channel" else self.bot_user

    def _resolve_message(self, message: Any, default_chat: FakeChat) -> ChatMessage:
        if isinstance(message, ChatMessage):
            chat_id, message_id = message.chat_id, message.message_id
        elif isinstance(message, int):
            chat_id, message_id = default_chat.id, message
        elif isinstance(message, Mapping):
            chat_id = int(message["chat"]["id"])
            message_id = int(message["message_id"])
        elif hasattr(message, "message_id") and hasattr(message, "chat_id"):
            chat_id, message_id = int(message.chat_id), int(message.message_id)
        else:
            raise FakeBotAPIError(f"can't identify a message from {message!r}")
        chat = self.chat(chat_id)
        try:
            return chat.message(message_id)
        except KeyError:
            raise FakeBotAPIError(f"no message {message_id} in chat {chat_id}") from None

    def _store_file(self, data: bytes, folder: str, suffix: str) -> _StoredFile:
        number = next(self._file_counter)
        stored = _StoredFile(
            file_id=f"FAKE-{folder}-{number:06d}-{abs(hash(data)) % 10**8:08d}",
            file_unique_id=f"U{number:06d}",
            file_path=f"{folder}/file_{number}{suffix}",
            data=data,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _photo_sizes(self, data: bytes, width: int, height: int) -> list[JSONDict]:
        thumb = self._store_file(data[:64], "photos", ".jpg")
        full = self._store_file(data, "photos", ".jpg")
        scale = 90 / max(width, height, 1)
        return [
            {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "width": max(1, int(width * scale)),
                "height": max(1, int(height * scale)),
                "file_size": len(thumb.data),
            },
            {
                "file_id": full.file_id,
                "file_unique_id": full.file_unique_id,
                "width": width,
                "height": height,
                "file_size": len(full.data),
            },
        ]

    def _find_message_for_edit(self, p: _Params) -> ChatMessage:
        if p.get("inline_message_id") is not None:
            raise _bad_request("MESSAGE_ID_INVALID")
        chat = self._target_chat(p, sending=False)
        message_id = p.get_int("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = chat._messages.get(message_id)
        if message is None or message.deleted:
            raise _bad_request("message to edit not found")
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    # -- methods ---------------------------------------------------------------------------

    async def _m_true(self, p: _Params, request: web.Request | None) -> Any:
        return True

    async def _m_get_me(self, p: _Params, request: web.Request | None) -> Any:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_send_message(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p)
        text, entities, raw = self._format(
            p,
            "text",
            "entities",
            limit=MAX_TEXT_LENGTH,
            too_long="message is too long",
            required=True,
        )
        markup = self._check_markup(p.get("reply_markup"))
        reply_to = self._reply_target(chat, p)
        message = chat._add(
            from_bot=True,
            sender=self._sender_for(chat),
            kind="text",
            text=text,
            entities=entities,
            raw_text=raw,
            parse_mode=p.get_str("parse_mode"),
            reply_markup=self._inline_part(markup),
            sent_reply_markup=markup,
            reply_to_message_id=reply_to,
        )
        self._apply_reply_keyboard(chat, markup)
        return message.to_dict()

    async def _m_edit_message_text(self, p: _Params, request: web.Request | None) -> Any:
        message = self._find_message_for_edit(p)
        text, entities, raw = self._format(
            p,
            "text",
            "entities",
            limit=MAX_TEXT_LENGTH,
            too_long="message is too long",
            required=True,
        )
        if message.text is None:
            raise _bad_request("there is no text in the message to edit")
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise _bad_request(NOT_MODIFIED)
        message.versions.append(message._snapshot())
        message.text, message.entities, message.raw_text = text, entities, raw
        message.parse_mode = p.get_str("parse_mode")
        message.reply_markup = message.sent_reply_markup = markup
        message.edit_date = int(time.time())
        return message.to_dict()

    async def _m_edit_message_caption(self, p: _Params, request: web.Request | None) -> Any:
        message = self._find_message_for_edit(p)
        if message.text is not None or message.kind in ("sticker", "location", "contact"):
            raise _bad_request("there is no caption in the message to edit")
        caption, entities, raw = self._format(
            p,
            "caption",
            "caption_entities",
            limit=MAX_CAPTION_LENGTH,
            too_long="message caption is too long",
            required=False,
        )
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if (caption, entities, markup) == (message.caption, message.entities, message.reply_markup):
            raise _bad_request(NOT_MODIFIED)
        message.versions.append(message._snapshot())
        message.caption, message.entities, message.raw_text = caption, entities, raw
        message.reply_markup = message.sent_reply_markup = markup
        message.edit_date = int(time.time())
        return message.to_dict()

    async def _m_edit_message_reply_markup(self, p: _Params, request: web.Request | None) -> Any:
        message = self._find_message_for_edit(p)
        markup = self._check_markup(p.get("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise _bad_request(NOT_MODIFIED)
        message.versions.append(message._snapshot())
        message.reply_markup = message.sent_reply_markup = markup
        message.edit_date = int(time.time())
        return message.to_dict()

    async def _m_delete_message(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p, sending=False)
        message_id = p.get_int("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = chat._messages.get(message_id)
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        message.deleted = True
        return True

    async def _m_delete_messages(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p, sending=False)
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad_request("message identifiers are not specified")
        for message_id in ids:
            message = chat._messages.get(int(message_id))
            if message is not None:
                message.deleted = True
        return True

    async def _m_answer_callback_query(self, p: _Params, request: web.Request | None) -> Any:
        query_id = p.get_str("callback_query_id") or ""
        text = p.get_str("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        state = self._callback_queries.get(query_id)
        expired = (
            state is not None
            and self.callback_query_ttl is not None
            and time.monotonic() - state.created > self.callback_query_ttl
        )
        if state is None or state.answered or expired:
            raise _bad_request(QUERY_TOO_OLD)
        state.answered = True
        self.callback_answers.append(
            CallbackAnswer(
                query_id=query_id,
                user_id=state.user_id,
                chat_id=state.chat_id,
                message_id=state.message_id,
                data=state.data,
                text=text,
                show_alert=p.get_bool("show_alert"),
                url=p.get_str("url"),
                cache_time=p.get_int("cache_time"),
                answered_at=time.monotonic(),
            )
        )
        return True

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if scope is None:
            return "default"
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise _bad_request("can't parse BotCommandScope JSON object")
        kind = scope["type"]
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return str(kind)
        if kind in ("chat", "chat_administrators"):
            return f"{kind}:{scope.get('chat_id')}"
        if kind == "chat_member":
            return f"chat_member:{scope.get('chat_id')}:{scope.get('user_id')}"
        raise _bad_request("unsupported bot command scope type")

    async def _m_set_my_commands(self, p: _Params, request: web.Request | None) -> Any:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > MAX_COMMANDS:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        cleaned: list[JSONDict] = []
        for item in commands:
            if not isinstance(item, dict) or "command" not in item:
                raise _bad_request("can't parse BotCommand: Can't find field \"command\"")
            if "description" not in item:
                raise _bad_request("can't parse BotCommand: Can't find field \"description\"")
            command, description = str(item["command"]), str(item["description"])
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not description.strip():
                raise _bad_request("command description must be non-empty")
            if len(description) > 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": command, "description": description})
        key = (self._scope_key(p.get("scope")), p.get_str("language_code") or "")
        if cleaned:
            self.commands[key] = cleaned
        else:
            self.commands.pop(key, None)
        return True

    async def _m_get_my_commands(self, p: _Params, request: web.Request | None) -> Any:
        key = (self._scope_key(p.get("scope")), p.get_str("language_code") or "")
        return [dict(c) for c in self.commands.get(key, [])]

    async def _m_delete_my_commands(self, p: _Params, request: web.Request | None) -> Any:
        key = (self._scope_key(p.get("scope")), p.get_str("language_code") or "")
        self.commands.pop(key, None)
        return True

    async def _m_send_chat_action(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p)
        action = p.get_str("action") or ""
        if action not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        chat.actions.append(ChatAction(action, time.monotonic()))
        return True

    async def _m_set_chat_menu_button(self, p: _Params, request: web.Request | None) -> Any:
        button = p.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise _bad_request("can't parse menu button JSON object")
        if p.get("chat_id") is None:
            self.default_menu_button = button
        else:
            self._target_chat(p, sending=False).menu_button = button
        return True

    async def _m_get_chat_menu_button(self, p: _Params, request: web.Request | None) -> Any:
        if p.get("chat_id") is not None:
            chat = self._target_chat(p, sending=False)
            if chat.menu_button is not None:
                return chat.menu_button
        return self.default_menu_button or {"type": "default"}

    def _described_setter(self, field_name: str) -> Handler:
        async def handler(p: _Params, request: web.Request | None) -> Any:
            value = p.get_str(field_name) or ""
            limit = {"description": 512, "short_description": 120, "name": 64}[field_name]
            if len(value) > limit:
                raise _bad_request(f"{field_name.upper()}_INVALID")
            self.descriptions[(field_name, p.get_str("language_code") or "")] = value
            return True

        return handler

    def _described_getter(self, field_name: str) -> Handler:
        async def handler(p: _Params, request: web.Request | None) -> Any:
            key = (field_name, p.get_str("language_code") or "")
            default = self.bot_first_name if field_name == "name" else ""
            return {field_name: self.descriptions.get(key, default)}

        return handler

    def _media_sender(self, kind: str) -> Handler:
        suffix = {
            "photo": ".jpg",
            "document": ".bin",
            "voice": ".oga",
            "audio": ".mp3",
            "video": ".mp4",
            "animation": ".mp4",
            "sticker": ".webp",
            "video_note": ".mp4",
        }[kind]

        async def handler(p: _Params, request: web.Request | None) -> Any:
            chat = self._target_chat(p)
            data, file_name, mime = self._media_input(p, kind)
            caption: str | None = None
            entities: list[JSONDict] = []
            raw: str | None = None
            if kind not in ("sticker", "video_note"):
                caption, entities, raw = self._format(
                    p,
                    "caption",
                    "caption_entities",
                    limit=MAX_CAPTION_LENGTH,
                    too_long="message caption is too long",
                    required=False,
                )
            markup = self._check_markup(p.get("reply_markup"))
            reply_to = self._reply_target(chat, p)
            if kind == "photo":
                media: JSONDict = {"photo": self._photo_sizes(data, 800, 600)}
            else:
                stored = self._store_file(data, f"{kind}s", suffix)
                item: JSONDict = {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": len(data),
                }
                if kind == "document":
                    item.update(
                        file_name=file_name or "file.bin",
                        mime_type=mime or "application/octet-stream",
                    )
                elif kind in ("voice", "audio"):
                    item.update(
                        duration=p.get_int("duration") or 1,
                        mime_type=mime or ("audio/ogg" if kind == "voice" else "audio/mpeg"),
                    )
                elif kind in ("video", "animation"):
                    item.update(
                        width=p.get_int("width") or 640,
                        height=p.get_int("height") or 360,
                        duration=p.get_int("duration") or 1,
                    )
                elif kind == "video_note":
                    item.update(
                        length=p.get_int("length") or 240, duration=p.get_int("duration") or 1
                    )
                elif kind == "sticker":
                    item.update(
                        type="regular",
                        width=512,
                        height=512,
                        is_animated=False,
                        is_video=False,
                        emoji=p.get_str("emoji") or "🙂",
                    )
                media = {kind: item}
            message = chat._add(
                from_bot=True,
                sender=self._sender_for(chat),
                kind=kind,
                caption=caption,
                entities=entities,
                raw_text=raw,
                parse_mode=p.get_str("parse_mode"),
                reply_markup=self._inline_part(markup),
                sent_reply_markup=markup,
                media=media,
                reply_to_message_id=reply_to,
            )
            self._apply_reply_keyboard(chat, markup)
            return message.to_dict()

        return handler

    def _media_input(self, p: _Params, kind: str) -> tuple[bytes, str | None, str | None]:
        upload = p.files.get(kind)
        value = p.get(kind)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = p.files.get(value[len("attach://") :])
        if upload is not None:
            return upload.data, upload.filename, upload.content_type
        if value is None or value == "":
            raise _bad_request(f"there is no {kind} in the request")
        value = str(value)
        if value in self._files:
            return self._files[value].data, None, None
        if re.match(r"^https?://", value):
            return value.encode(), value.rsplit("/", 1)[-1] or None, None
        raise _bad_request("wrong file identifier/HTTP URL specified")

    async def _m_send_location(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p)
        latitude, longitude = p.get_float("latitude"), p.get_float("longitude")
        if latitude is None or longitude is None:
            raise _bad_request("wrong latitude or longitude specified")
        markup = self._check_markup(p.get("reply_markup"))
        message = chat._add(
            from_bot=True,
            sender=self._sender_for(chat),
            kind="location",
            media={"location": {"latitude": latitude, "longitude": longitude}},
            reply_markup=self._inline_part(markup),
            sent_reply_markup=markup,
            reply_to_message_id=self._reply_target(chat, p),
        )
        self._apply_reply_keyboard(chat, markup)
        return message.to_dict()

    async def _m_send_contact(self, p: _Params, request: web.Request | None) -> Any:
        chat = self._target_chat(p)
        phone, first_name = p.get_str("phone_number"), p.get_str("first_name")
        if not phone or not first_name:
            raise _bad_request("phone number and first name must be non-empty")
        contact: JSONDict = {"phone_number": phone, "first_name": first_name}
        if p.get_str("last_name"):
            contact["last_name"] = p.get_str("last_name")
        markup = self._check_markup(p.get("reply_markup"))
        message = chat._add(
            from_bot=True,
            sender=self._sender_for(chat),
            kind="contact",
            media={"contact": contact},
            reply_markup=self._inline_part(markup),
            sent_reply_markup=markup,
            reply_to_message_id=self._reply_target(chat, p),
        )
        self._apply_reply_keyboard(chat, markup)
        return message.to_dict()

    async def _m_get_file(self, p: _Params, request: web.Request | None) -> Any:
        stored = self._files.get(p.get_str("file_id") or "")
        if stored is None:
            raise _bad_request("invalid file_id")
        return stored.to_dict()
