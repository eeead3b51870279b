"""Error reports pasted with the code: find them, keep them, read their frames.

A Python traceback, a Go panic, a Rust panic (with or without backtrace) or
compiler error, a Java stack trace, a C compiler's ``file:line:col: error``:
the user pasted it because it says where the code fails, so it is part of the
instruction, never code to cut. Its frames name functions (and ``file:line``
places) that ranking puts first, the innermost frame that lies in the pasted
code (the crash site) above its callers.

Pure functions over text; every scan is line by line and bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

# A report longer than this is trimmed, keeping its innermost frames.
MAX_REPORT_CHARS = 3000
# Reports are looked for in at most this many lines at each end of a paste.
MAX_SCAN_LINES = 4000

PYTHON = "python_traceback"
GO = "go_panic"
RUST = "rust_panic"
JAVA = "java_stack_trace"
COMPILER = "compiler_error"

# Lines that open a report.
_START_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (PYTHON, re.compile(r"^\s*Traceback \(most recent call last\):\s*$")),
    (GO, re.compile(r"^(panic: |fatal error: |goroutine \d+ \[[\w ,]+\]:\s*$)")),
    (RUST, re.compile(r"^thread '[^']*' panicked at |^error(\[E\d+\])?: \S|^stack backtrace:\s*$")),
    (JAVA, re.compile(r"^(Exception in thread \"[^\"]*\" |Caused by: )[\w.$]+")),
    (JAVA, re.compile(r"^([a-z_][\w]*\.)+[A-Z][\w$]*(Exception|Error)(: .*)?$")),
    (
        COMPILER,
        re.compile(
            r"^[\w./\\-]+\.\w{1,5}:\d+(:\d+)?: (fatal error|error|warning|note|undefined)\b"
        ),
    ),
    (COMPILER, re.compile(r"^[\w./\\-]+\.\w{1,5}\(\d+,\d+\): error ")),
    (COMPILER, re.compile(r"^[\w./\\-]+\.\w{1,5}: In (member )?function ['‘`]")),
)

# Lines that continue a report once it has started.
_CONTINUE_RE = re.compile(
    r"""^(
        \s+File\ "[^"]*",\ line\ \d+|             # Python frame
        \s{2,}\S|\t\S|                            # indented: source lines, Go/Java frames
        \s*\^[\^~\s]*$|\s*[~^]+\s*$|               # caret markers
        \s*\|.*|\s*\d+\s*\|.*|\s*-->\s.*|          # rustc / gcc source excerpts
        \s*=\ (note|help):.*|
        (During\ handling|The\ above\ exception)\b.*|
        [\w.]*(Error|Exception|Warning|Exit|Interrupt|Iteration)\b.*|
        [\w.$]+:\ .*|                              # "pkg.CustomError: message"
        goroutine\ \d+\ \[.*|\[signal\ .*|exit\ status\ \d+|created\ by\ .*|
        [\w./\\-]+\.\w{1,5}:\d+(:\d+)?:.*|         # more compiler lines
        note:\ .*|help:\ .*|warning:\ .*|error(\[E\d+\])?:\ .*|
        stack\ backtrace:|Caused\ by:.*|\.\.\.\ \d+\ more|
        [\w.]+(\.\(\*?\w+\))?\.\w+\(.*\)(\ \+0x[0-9a-f]+)?$   # Go "pkg.(*T).f(...)"
    )""",
    re.VERBOSE,
)

_PY_FRAME_RE = re.compile(
    r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+)(, in (?P<func>[\w<>.]+))?'
)
_GO_FUNC_RE = re.compile(r"^(?P<func>[\w./-]+(\.\(\*?\w+\))?)\.(?P<name>\w+)\(.*\)$")
_GO_PLACE_RE = re.compile(r"^\t(?P<file>\S+\.go):(?P<line>\d+)")
# Matched on the stripped line: "\s*$" after a lazy name retried the whole run of
# spaces at each of the name's characters (quadratic in a line of spaces).
_RUST_FUNC_RE = re.compile(r"^\d+: (?P<func>[\w:<>{} ]+?)(::h[0-9a-f]{16})?$")
_RUST_PLACE_RE = re.compile(r"(at |--> |panicked at )(?P<file>[\w./\\-]+\.rs):(?P<line>\d+)(:\d+)?")
_JAVA_FRAME_RE = re.compile(
    r"^\s*at (?P<func>[\w.$<>]+)\((?P<file>[\w$.-]+\.(java|kt|scala)):(?P<line>\d+)\)"
)
_PLACE_RE = re.compile(r"(?P<file>[\w./\\-]+\.\w{1,5}):(?P<line>\d+)(:\d+)?")
_TS_PLACE_RE = re.compile(r"^(?P<file>[\w./\\-]+\.\w{1,5})\((?P<line>\d+),\d+\)")
_IN_FUNCTION_RE = re.compile(r"In (member )?function ['‘`](?:[\w:<>~ ]*::)?(?P<func>~?\w+)")
_RUST_STD_RE = re.compile(
    r"^(std|core|alloc|rust_begin_unwind|__rust|_start|main$|<alloc|<core|<std)"
)
_MESSAGE_RE = re.compile(
    r"^([\w.$]*(Error|Exception|Warning)|panic|error(\[E\d+\])?|fatal error)\b:?\s*(?P<msg>.*)$"
)


@attrs.frozen
class Frame:
    """One place a report points at: a function and/or a ``file:line``."""

    function: str | None
    file: str | None
    line: int | None
    text: str


@attrs.frozen
class ErrorReport:
    """A report found in a prompt, its frames innermost first."""

    kind: str
    text: str
    frames: tuple[Frame, ...]
    message: str

    @property
    def innermost(self) -> Frame | None:
        return self.frames[0] if self.frames else None


# One pass over a line first: most lines of a paste open nothing.
_ANY_START_RE = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in _START_RES))


def report_kind(line: str) -> str | None:
    """The kind of report ``line`` opens, or None."""
    for kind, pattern in _START_RES:
        if pattern.match(line):
            return kind
    return None


def find_report_blocks(lines: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of each report in ``lines`` (end exclusive).

    A report starts at an opening line and runs over continuation lines; one
    blank line inside it is allowed when a continuation follows. Only the
    first and last :data:`MAX_SCAN_LINES` lines are looked at.
    """
    blocks: list[tuple[int, int, str]] = []
    count = len(lines)
    skip_until = -1
    for index in _candidate_starts(lines):
        if index < skip_until:
            continue
        kind = report_kind(lines[index])
        if kind is None:
            continue
        end = index + 1
        if (
            kind == RUST
            and end < count
            and lines[end].strip()
            and lines[index].startswith("thread ")
        ):
            end += 1  # the panic's message: any text
        while end < count:
            line = lines[end]
            if not line.strip():
                if (
                    end + 1 < count
                    and lines[end + 1].strip()
                    and (_CONTINUE_RE.match(lines[end + 1]) or report_kind(lines[end + 1]))
                ):
                    end += 1
                    continue
                break
            if _CONTINUE_RE.match(line) or report_kind(line):
                end += 1
                continue
            break
        blocks.append((index, end, kind))
        skip_until = end
    return _merge_adjacent(blocks, lines)


def _candidate_starts(lines: list[str]) -> list[int]:
    """Indices of lines that may open a report (one combined regex per line)."""
    count = len(lines)
    scan = (
        range(count)
        if count <= 2 * MAX_SCAN_LINES
        else [*range(MAX_SCAN_LINES), *range(count - MAX_SCAN_LINES, count)]
    )
    match = _ANY_START_RE.match
    return [index for index in scan if match(lines[index])]


def _merge_adjacent(
    blocks: list[tuple[int, int, str]], lines: list[str]
) -> list[tuple[int, int, str]]:
    """Chained tracebacks ("During handling ...") and compiler error lists are one report."""
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in blocks:
        if merged:
            previous_start, previous_end, previous_kind = merged[-1]
            between = lines[previous_end:start]
            if (
                all(not line.strip() or _CONTINUE_RE.match(line) for line in between)
                and len(between) <= 2
            ):
                merged[-1] = (previous_start, end, previous_kind)
                continue
        merged.append((start, end, kind))
    return merged


def line_number(digits: str) -> int:
    """A line number as printed; an absurd one (more digits than any file has
    lines, past what ``int()`` will read or SQLite's integers hold) is read as
    "past the end"."""
    return int(digits) if len(digits) <= 9 else 10**9


def is_report(text: str) -> bool:
    """Whether ``text`` (a fenced block, say) is mostly an error report."""
    lines = [line for line in text.split("\n")[:400] if line.strip()]
    if not lines:
        return False
    blocks = find_report_blocks(lines)
    covered = sum(end - start for start, end, _ in blocks)
    return (
        covered >= 0.6 * len(lines)
        and covered >= 2
        or (bool(blocks) and blocks[0][0] == 0 and covered >= 0.4 * len(lines))
    )


def parse_report(text: str, kind: str | None = None) -> ErrorReport:
    """Read the frames (innermost first) and the message of one report."""
    lines = text.split("\n")
    kind = kind or next((k for k in map(report_kind, lines) if k), COMPILER)
    frames: list[Frame] = []
    message = ""
    python_frames: list[Frame] = []
    go_function: str | None = None
    rust_function: str | None = None
    for line in lines:
        match = _PY_FRAME_RE.match(line)
        if match:
            if match.group("func") == "<module>":
                continue  # the script's top level: no function to point at
            python_frames.append(
                Frame(
                    _last_name(match.group("func")),
                    match.group("file"),
                    line_number(match.group("line")),
                    line.strip(),
                )
            )
            continue
        match = _JAVA_FRAME_RE.match(line)
        if match:
            frames.append(
                Frame(
                    _last_name(match.group("func")),
                    match.group("file"),
                    line_number(match.group("line")),
                    line.strip(),
                )
            )
            continue
        if kind == GO:
            match = _GO_FUNC_RE.match(line)
            if match:
                go_function = match.group("name")
                continue
            match = _GO_PLACE_RE.match(line)
            if match and go_function:
                number = line_number(match.group("line"))
                frames.append(Frame(go_function, match.group("file"), number, line.strip()))
                go_function = None
                continue
        if kind == RUST:
            match = _RUST_FUNC_RE.match(line.strip())
            if match:
                name = match.group("func").strip()
                rust_function = None if _RUST_STD_RE.match(name) else _last_name(name)
                if rust_function:
                    frames.append(Frame(rust_function, None, None, line.strip()))
                continue
            match = _RUST_PLACE_RE.search(line)
            if match:
                number = line_number(match.group("line"))
                located = Frame(rust_function, match.group("file"), number, line.strip())
                if (
                    frames
                    and frames[-1].function == rust_function
                    and frames[-1].line is None
                    and rust_function
                ):
                    frames[-1] = located
                elif not line.lstrip().startswith("at "):
                    frames.append(located)
                continue
        function = None
        match = _IN_FUNCTION_RE.search(line)
        if match:
            function = match.group("func")
        place = _TS_PLACE_RE.match(line) or (_PLACE_RE.match(line) if kind == COMPILER else None)
        if place:
            frames.append(
                Frame(function, place.group("file"), line_number(place.group("line")), line.strip())
            )
        elif function:
            frames.append(Frame(function, None, None, line.strip()))
        found = _MESSAGE_RE.match(line.strip())
        if found and not message:
            message = line.strip()
    if python_frames:
        # Python prints the innermost frame last.
        frames = python_frames[::-1] + frames
        tail = [line.strip() for line in lines if line.strip() and not line[:1].isspace()]
        message = tail[-1] if tail else message
    return ErrorReport(kind, text, tuple(_dedupe(frames)), message[:300])


def _last_name(qualified: str | None) -> str | None:
    """``com.acme.Store.load`` → ``load``; ``mycrate::parser::parse_header`` → ``parse_header``."""
    if not qualified:
        return None
    parts = [part for part in re.split(r"::|\.", qualified.strip()) if part]
    # Closures and generics ("{{closure}}", "<impl Foo>") name their enclosing function.
    for part in reversed(parts):
        name = re.sub(r"\$.*", "", part)
        if re.fullmatch(r"[A-Za-z_]\w*", name) and name not in ("closure", "lambda"):
            return name
    return None


def _dedupe(frames: list[Frame]) -> list[Frame]:
    seen: set[tuple[str | None, str | None, int | None]] = set()
    out: list[Frame] = []
    # "panicked at src/x.rs:17" and the backtrace's "at ./src/x.rs:17" are one place:
    # the backtrace's frame, which names the function, stands for both.
    named = {(_base(f.file), f.line) for f in frames if f.function and f.line is not None}
    frames = [f for f in frames if f.function or (_base(f.file), f.line) not in named]
    for frame in frames:
        key = (frame.function, frame.file, frame.line)
        if key not in seen:
            seen.add(key)
            out.append(frame)
    return out


def _base(path: str | None) -> str | None:
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else None


def find_reports(text: str) -> list[ErrorReport]:
    """Every report in ``text`` (an instruction), parsed."""
    lines = text.split("\n")
    return [
        parse_report("\n".join(lines[start:end]), kind)
        for start, end, kind in find_report_blocks(lines)
    ]


def trim_report(text: str, kind: str, max_chars: int = MAX_REPORT_CHARS) -> str:
    """Cut a huge report down to ``max_chars``, keeping the innermost frames.

    Python prints the innermost frame last, the others first; the opening
    line and, for Python, the exception line are always kept.
    """
    if len(text) <= max_chars:
        return text
    lines = text.split("\n")
    head: list[str] = lines[:2]
    room = max_chars - sum(len(line) + 1 for line in head) - 60
    body: list[str] = []
    if kind == PYTHON:
        for line in reversed(lines[2:]):
            if room - len(line) - 1 < 0:
                break
            body.insert(0, line)
            room -= len(line) + 1
        omitted = len(lines) - len(head) - len(body)
        return "\n".join([*head, f"  ... ({omitted} lines of the report omitted) ...", *body])
    for line in lines[2:]:
        if room - len(line) - 1 < 0:
            break
        body.append(line)
        room -= len(line) + 1
    omitted = len(lines) - len(head) - len(body)
    return "\n".join([*head, *body, f"  ... ({omitted} lines of the report omitted) ..."])


def map_reports(text: str, replace: Callable[[str, str], str]) -> str:
    """``text`` with each error report in it replaced by ``replace(report, kind)``."""
    lines = text.split("\n")
    blocks = find_report_blocks(lines)
    if not blocks:
        return text
    out: list[str] = []
    cursor = 0
    for start, end, kind in blocks:
        out.extend(lines[cursor:start])
        out.append(replace("\n".join(lines[start:end]), kind))
        cursor = end
    out.extend(lines[cursor:])
    return "\n".join(out)


def strip_reports(text: str) -> str:
    """``text`` without its report lines, except each report's message (for word matching)."""
    return map_reports(text, lambda report, kind: parse_report(report, kind).message)
