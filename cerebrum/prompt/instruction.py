"""Split a prompt into the instruction (prose the user wrote) and the code.

The instruction is what the model must obey, so it is never altered: it is
returned as the exact prose around the code, stripped of surrounding blank
lines. Everything else is "code" and may be cut down by later stages.
"""

from __future__ import annotations

import logging
import re

import attrs

from cerebrum.prompt.reports import find_report_blocks, is_report

_LOGGER = logging.getLogger(__name__)

# Only the first and last lines are looked at for prose, so a 5 MB paste costs
# no more than a small one here.
_MAX_PROSE_LINES = 60

# CommonMark: a fence is indented at most 3 spaces, so a ``` line inside an
# indented docstring example is code, not the end of the paste.
# The look-ahead keeps the tag whole: without it a long tag on a line that then
# fails (a backtick after it) was retried at every length, quadratic in the line.
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+#.-]*)(?![\w+#.-])[^\n`]*$",
                       re.MULTILINE)

_CODE_START_RE = re.compile(
    r"""^\s*(
        (async\s+)?def\s|class\s|import\s|from\s+\S+\s+import|return\b|raise\b|yield\b|
        if\s*\(|for\s*\(|while\s*\(|if\s.*:\s*$|for\s.*:\s*$|while\s.*:\s*$|
        elif\b|else\b|try\s*:|except\b|finally\s*:|with\s.*:\s*$|@\w|
        fn\s|pub\b|impl\b|use\s+\w+::|let\s|const\s|var\s|function\b|export\s|
        interface\s|type\s+\w+\s*=|enum\s|struct\s|typedef\b|namespace\b|template\s*<|
        package\s|func\s|public\b|private\b|protected\b|static\b|
        \#include|\#define|\#if|\#!|\#\s|\#$|//|/\*|\*|\}|\{|\)|\]|<\?|
        echo\s|fi\b|done\b|esac\b|then\b|do\b|local\s|set\s+-|[rRbBuUfF]{0,2}(?:\"\"\"|\'\'\')|\w+\s*=[^=]|\w+(\.\w+)*\(.*\)\s*$
    )""",
    re.VERBOSE,
)
_CODE_END_RE = re.compile(r"[{};,(\[=\\|&+\-*/<>]\s*$")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*")


@attrs.frozen
class PromptParts:
    """A prompt split into its instruction and its code.

    ``instruction_before``/``instruction_after`` are the prose before and
    after the code, verbatim; ``fence_tag`` is the info string of the first
    Markdown fence, when there is one.
    """

    instruction_before: str
    instruction_after: str
    code: str
    fence_tag: str | None = None
    fenced: bool = False

    @property
    def instruction(self) -> str:
        """The whole instruction: the prose before and after the code."""
        return "\n\n".join(
            part for part in (self.instruction_before, self.instruction_after) if part
        )


# A dotted or plain name assigned one value (never how a sentence reads).
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*\s*=\s*[\w$.'\"\[{(]+;?$")


def is_prose_line(line: str) -> bool:
    """Guess whether one line is natural-language prose rather than code."""
    stripped = line.strip()
    if not stripped:
        return False
    if line[:1] in (" ", "\t"):
        # Indented lines are code bodies; prose in a prompt starts at column 0.
        if not re.match(r"\s*([-*]|\d+[.)])\s+\w", line):
            return False
    if _CODE_START_RE.match(line) and not re.match(r"\s*([-*]|\d+[.)])\s+[A-Za-z]", line):
        return False
    if _CODE_END_RE.search(stripped) and not stripped.endswith(("-", "*")):
        return False
    if _ASSIGNMENT_RE.match(stripped):
        return False  # module.exports = Display, x = y
    words = _WORD_RE.findall(stripped)
    if len(words) < 2 and not stripped.endswith(("?", ".", "!", ":")):
        return False
    letters = sum(len(w) for w in words) + stripped.count(" ")
    return letters >= 0.7 * len(stripped)


def _prose_block(
    lines: list[str], indices: range, reports: set[int] | frozenset[int] = frozenset()
) -> int:
    """Count how many lines from the walk ``indices`` form a prose block.

    Blank lines inside the block are allowed, and so are the lines of error
    reports (``reports``); the block ends at the first code line. Returns the
    number of lines consumed, trailing blanks excluded.
    """
    consumed = 0
    seen = 0
    reported = 0
    for count, index in enumerate(indices, start=1):
        line = lines[index]
        if not line.strip():
            continue
        if index in reports:
            reported += 1
            seen = consumed = count
            continue
        if count - reported > _MAX_PROSE_LINES or not is_prose_line(line):
            break
        seen = count
        consumed = count
    return consumed if seen else 0


def _real_fences(text: str) -> list[re.Match[str]]:
    """Fence lines, without reST heading underlines (``~~~~`` under a line of text)."""
    if "```" not in text and "~~~" not in text:
        return []  # the multi-line regex costs a scan of every line; most pastes have no fence
    fences: list[re.Match[str]] = []
    for match in _FENCE_RE.finditer(text):
        if match.group(1)[0] == "~" and not match.group(2):
            previous_end = match.start() - 1
            previous = text[text.rfind("\n", 0, max(0, previous_end)) + 1 : max(0, previous_end)]
            if previous.strip() and not _FENCE_RE.match(previous):
                continue  # "Title\n~~~~~": an underline
        fences.append(match)
    return fences


def _closing_fence(fences: list[re.Match[str]], index: int) -> int | None:
    """The fence that closes ``fences[index]``.

    The next untagged fence of the same character, at least as long, closes
    it, except that code which itself holds Markdown (a Rust doc comment, a
    docstring with an example) opens inner tagged fences: each of those is
    closed by its own bare fence first.
    """
    marker = fences[index].group(1)
    depth = 0
    for later in range(index + 1, len(fences)):
        candidate = fences[later].group(1)
        if candidate[0] != marker[0]:
            continue
        if fences[later].group(2):
            depth += 1
        elif len(candidate) >= len(marker):
            if depth == 0:
                return later
            depth -= 1
    return None


def _split_fenced(text: str, fences: list[re.Match[str]]) -> PromptParts:
    """Prose outside the fences is the instruction; fenced blocks are the code.

    A fenced block that is an error report (a traceback in its own fence) is
    part of the instruction, fence and all.
    """
    code_parts: list[str] = []
    before_parts: list[str] = []
    after_parts: list[str] = []
    tag: str | None = None
    cursor = 0
    index = 0
    while index < len(fences):
        opening = fences[index]
        closing = _closing_fence(fences, index)
        body_start = opening.end() + 1
        body_end = len(text) if closing is None else fences[closing].start()
        block_end = len(text) if closing is None else fences[closing].end() + 1
        body = text[body_start:body_end]
        if is_report(body):
            # Prose, to be kept verbatim: the cursor does not move.
            index = len(fences) if closing is None else closing + 1
            continue
        prose = text[cursor : opening.start()]
        (before_parts if not code_parts else after_parts).append(prose)
        code, reports = _pull_reports(body)
        code_parts.append(code)
        after_parts.extend(reports)
        cursor = block_end
        if tag is None:
            tag = opening.group(2) or None
        if closing is None:
            # An unterminated fence (a paste cut short) runs to the end.
            break
        index = closing + 1
    if tag is None and fences:
        tag = fences[0].group(2) or None
    after_parts.append(text[cursor:])
    if not code_parts:
        # Every fence held a report: the rest is prose around them.
        return PromptParts(instruction_before=text.strip(), instruction_after="", code="")
    return PromptParts(
        instruction_before="\n".join(p.strip("\n") for p in before_parts if p.strip()).strip(),
        instruction_after="\n".join(p.strip("\n") for p in after_parts if p.strip()).strip(),
        code="\n\n".join(part.rstrip("\n") for part in code_parts),
        fence_tag=tag.lower() if tag else None,
        fenced=True,
    )


def _pull_reports(code: str) -> tuple[str, list[str]]:
    """Split error reports out of ``code``: they belong to the instruction."""
    if "\n" not in code and len(code) < 20:
        return code, []
    lines = code.split("\n")
    # A report the user pasted opens at column 0; an indented one is the code's
    # own (a doctest's traceback in a docstring, an example in a comment).
    blocks = [
        block for block in find_report_blocks(lines) if lines[block[0]][:1] not in (" ", "\t")
    ]
    if not blocks:
        return code, []
    kept: list[str] = []
    reports: list[str] = []
    cursor = 0
    for start, end, _ in blocks:
        kept.extend(lines[cursor:start])
        reports.append("\n".join(lines[start:end]).strip("\n"))
        cursor = end
    kept.extend(lines[cursor:])
    return "\n".join(kept).strip("\n"), reports


def split_prompt(text: str) -> PromptParts:
    """Split ``text`` into instruction and code.

    Fenced blocks are code and the prose around them the instruction. Without
    fences, a prose block at the start and/or the end is the instruction.
    Error reports (tracebacks, panics, compiler errors) are instruction
    wherever they are. Text with no code-looking line at all is all "code"
    (plain text), with the last short paragraph taken as the question when
    the text is long.
    """
    fences = _real_fences(text)
    if fences:
        parts = _split_fenced(text, fences)
        if not _holds_code(parts.instruction):
            return parts
        # Code outside the fences: the fences are inside the code (Markdown in
        # a doc comment, some files fenced and some not). Split it as unfenced.
    lines = text.split("\n")
    reports = find_report_blocks(lines)
    report_lines = {line for start, end, _ in reports for line in range(start, end)}
    head = _prose_block(lines, range(0, len(lines)), report_lines)
    tail = (
        _prose_block(lines, range(len(lines) - 1, head - 1, -1), report_lines)
        if head < len(lines)
        else 0
    )
    middle = lines[head : len(lines) - tail]
    if head + tail >= len(lines) or not _has_code_lines(
        [line for number, line in enumerate(middle, start=head) if number not in report_lines]
    ):
        if reports and head + tail < len(lines):
            # Prose and a report, no code: nothing to cut.
            return PromptParts(instruction_before=text.strip(), instruction_after="", code="")
        return _split_all_prose(text)
    before = "\n".join(lines[:head]).strip()
    after = "\n".join(lines[len(lines) - tail :]).strip() if tail else ""
    code, pulled = _pull_reports("\n".join(middle).strip("\n"))
    if pulled:
        after = "\n\n".join(part for part in (*pulled, after) if part)
    return PromptParts(instruction_before=before, instruction_after=after, code=code)


def _holds_code(prose: str) -> bool:
    """Whether text taken as prose around fences is in fact mostly code (reports aside)."""
    lines = prose.split("\n")
    if len(lines) < 6:
        return False
    reports = {line for start, end, _ in find_report_blocks(lines) for line in range(start, end)}
    checked = [
        line for number, line in enumerate(lines[:400]) if line.strip() and number not in reports
    ]
    code = sum(1 for line in checked if not is_prose_line(line))
    return code >= 5 and code >= 0.5 * len(checked)


def _has_code_lines(lines: list[str]) -> bool:
    """Whether a sample of ``lines`` holds a few lines of code, not just prose."""
    code = 0
    checked = 0
    for line in lines:
        if not line.strip():
            continue
        checked += 1
        if not is_prose_line(line):
            code += 1
            if code >= 3:
                return True
        if checked >= 400:
            break
    return code > 0 and code == checked


def _split_all_prose(text: str) -> PromptParts:
    """Plain text: the final paragraph, if short, is taken as the question."""
    body = text.strip()
    cut = body.rfind("\n\n")
    if cut > 0 and len(body) - cut <= 600:
        return PromptParts(
            instruction_before="", instruction_after=body[cut:].strip(), code=body[:cut]
        )
    if len(body) <= 600:
        return PromptParts(instruction_before=body, instruction_after="", code="")
    return PromptParts(instruction_before="", instruction_after="", code=body)


def message_text(content: object) -> str:
    """Return the text of an OpenAI chat message ``content`` (string or parts list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(texts)
    return ""


def code_weight(text: str) -> int:
    """How much code a message carries: the length of its code part (0 for prose)."""
    parts = split_prompt(text)
    return len(parts.code) if _looks_like_code(parts) else 0


def _looks_like_code(parts: PromptParts) -> bool:
    if parts.fenced:
        return bool(parts.code.strip())
    sample = parts.code.split("\n", 200)[:200]
    code_lines = sum(1 for line in sample if line.strip() and not is_prose_line(line))
    return code_lines >= 3
