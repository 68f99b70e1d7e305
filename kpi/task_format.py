"""The [what]/[deadline]/[responsible] rule for tasks: checks, decisions and Russian texts (pure).

Edges, decided once (domain.md, "Communication rules", rule 1):

* A title is normalised before the word rules: NFC, case folded, «ё» read as «е», every
  character that is not a letter or a digit (punctuation, emoji, symbols) becomes a space.
  Words are what remains; characters are those words joined by single spaces, so padding
  («Звонок . . . . . .», «Срочно!!!!!!!!») does not make a title long.
* ``title_short``: fewer than ``min_words`` words AND fewer than ``min_chars`` characters
  («at least 3 words or 15 characters»: «КП для Ромашки» has 3 words and passes).
* ``title_stop_word``: the normalised title is one stop word or only stop words (stop words
  are normalised the same way and may be phrases). A stop word without letters or digits,
  such as the default «!!!», stands for every title without them («???», «🔥», «!!!»).
* ``title_regex``: ``re.search`` of the configured pattern on the stripped title, as written
  (anchor it with ``^`` and use ``(?i)`` for a case-insensitive rule).
* ``deadline_past`` is a creation rule: the deadline is earlier than the task's creation
  instant. It opens only at the creation verdict and stays open on later checks while the
  deadline is still before creation; a deadline that passes later is overdue, not a format
  violation, and no later edit opens it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

TITLE_SHORT = "title_short"
TITLE_STOP_WORD = "title_stop_word"
TITLE_REGEX = "title_regex"
DEADLINE_MISSING = "deadline_missing"
DEADLINE_PAST = "deadline_past"
RESPONSIBLE_MISSING = "responsible_missing"
CODES = (TITLE_SHORT, TITLE_STOP_WORD, TITLE_REGEX, DEADLINE_MISSING, DEADLINE_PAST,
         RESPONSIBLE_MISSING)

DEFAULT_STOP_WORDS = ("Задача", "Вопрос", "Срочно", "Сделать", "!!!")
REGULATION = "Задачи ставятся по регламенту: [Что сделать] / [Срок] / [Ответственный]."
CLOSING = "После исправления замечание закроется автоматически."
FIXED = "Спасибо, задача поставлена по регламенту."
RETURNED = "Задача возвращена постановщику: исправьте её и назначьте ответственного заново."
RETURNED_TO_YOU = "Задача возвращена вам как постановщику."
EXAMPLE = "«Подготовить КП для ООО Ромашка»"
QUOTE_LIMIT = 80  # a longer title is cut in texts: the reader knows their own task

_MESSAGES = {
    TITLE_SHORT: "Название «{subject}» слишком короткое: нужно хотя бы {detail}. "
                 f"Напишите действие и результат, например {EXAMPLE}.",
    TITLE_STOP_WORD: "Название «{subject}» не объясняет, что нужно сделать: напишите действие "
                     f"и результат, например {EXAMPLE}.",
    TITLE_REGEX: "Название «{subject}» не соответствует формату, принятому в компании "
                 "(шаблон {detail}): исправьте название по этому формату.",
    DEADLINE_MISSING: "Не указан крайний срок: установите дату и время выполнения.",
    DEADLINE_PAST: "Срок {subject} уже прошёл в момент постановки задачи: укажите реальный срок.",
    RESPONSIBLE_MISSING: "Не назначен ответственный: укажите, кто будет выполнять задачу.",
}
_BLANK_TITLE = ("Название задачи не заполнено: напишите действие и результат, "
                f"например {EXAMPLE}.")
_LABELS = {
    TITLE_SHORT: "слишком короткое название",
    TITLE_STOP_WORD: "название не объясняет, что нужно сделать",
    TITLE_REGEX: "название не по формату",
    DEADLINE_MISSING: "не указан срок",
    DEADLINE_PAST: "срок уже прошёл в момент постановки",
    RESPONSIBLE_MISSING: "не назначен ответственный",
}


@dataclass(frozen=True)
class FormatRules:
    """What a properly set task looks like; the caller builds it from settings."""

    min_words: int = 3
    min_chars: int = 15
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    title_regex: str = ""
    strict_mode: bool = False
    timezone: str = "Asia/Novosibirsk"  # the portal's, for dates quoted in comments


@dataclass(frozen=True)
class TaskFacts:
    """The fields of a task the rules look at (aware datetimes)."""

    title: str
    description: str = ""
    deadline: datetime | None = None
    responsible_id: int = 0
    created_by: int = 0
    created_at: datetime | None = None


@dataclass(frozen=True)
class Violation:
    """One broken rule: a stable code, the quoted subject and a rule detail for the text."""

    code: str
    subject: str = ""
    detail: str = ""

    @property
    def message(self) -> str:
        """The sentence of the task comment that says what to fix."""
        if self.code in (TITLE_SHORT, TITLE_STOP_WORD) and not self.subject:
            return _BLANK_TITLE
        return _MESSAGES[self.code].format(subject=self.subject, detail=self.detail)

    @property
    def label(self) -> str:
        """A few words for the notification."""
        return _LABELS[self.code]


@dataclass(frozen=True)
class CheckState:
    """What is kept about a task between checks (a ``TaskFormatCheck`` row as plain data)."""

    compliant_at_creation: bool | None = None  # None: no creation verdict yet
    violations: frozenset[str] = frozenset()
    commented: frozenset[str] = frozenset()  # open codes the task has a comment about
    returned: bool = False

    @property
    def at_creation(self) -> bool:
        """Whether the next check gives the creation verdict."""
        return self.compliant_at_creation is None


@dataclass(frozen=True)
class Actions:
    """What to do after a check, and the state to store."""

    state: CheckState
    comment: tuple[Violation, ...] = ()  # post one comment about these (the new codes)
    confirm: bool = False  # post the short confirmation
    return_to_creator: bool = False  # strict mode: make the creator responsible
    opened: bool = False  # violations appeared on a clean task: stamp opened_at
    fixed: bool = False  # the last violation closed: stamp fixed_at

    @property
    def notify(self) -> bool:
        """The creator is notified with every comment about violations."""
        return bool(self.comment)


# ---------------------------------------------------------------- title normalisation


def normalize(text: str) -> str:
    """Case-folded words of ``text`` (ё → е) separated by single spaces; the rest dropped."""
    folded = unicodedata.normalize("NFC", text).casefold().replace("ё", "е")
    # Combining marks left after NFC (emoji variation selectors, stray accents) vanish
    # rather than split a word; everything else that is not a letter or digit separates.
    kept = ("" if unicodedata.category(ch).startswith("M") else ch if ch.isalnum() else " "
            for ch in folded)
    return " ".join("".join(kept).split())


@lru_cache(maxsize=64)
def _stop_phrases(stop_words: tuple[str, ...]) -> tuple[frozenset[tuple[str, ...]], bool]:
    """Stop words as token tuples, and whether one of them has no words (like «!!!»)."""
    phrases = {tuple(normalize(word).split()) for word in stop_words}
    return frozenset(p for p in phrases if p), () in phrases


def _only_stop_words(tokens: Sequence[str], stop_words: tuple[str, ...]) -> bool:
    phrases, wordless = _stop_phrases(stop_words)
    if not tokens:
        return wordless
    # reachable[i]: tokens[:i] splits into stop phrases (phrases may span several words).
    reachable = [True] + [False] * len(tokens)
    for start in range(len(tokens)):
        if not reachable[start]:
            continue
        for phrase in phrases:
            end = start + len(phrase)
            if tuple(tokens[start:end]) == phrase:
                reachable[end] = True
    return reachable[-1]


def _quote(title: str) -> str:
    text = " ".join(title.split())
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT - 1].rstrip() + "…"


def _plural(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} {one}"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} {few}"
    return f"{n} {many}"


# ---------------------------------------------------------------- the check


def _title_violations(title: str, rules: FormatRules) -> list[Violation]:
    tokens = normalize(title).split()
    subject = _quote(title)
    found: list[Violation] = []
    if len(tokens) < rules.min_words and len(" ".join(tokens)) < rules.min_chars:
        detail = (f"{_plural(rules.min_words, 'слово', 'слова', 'слов')} или "
                  f"{_plural(rules.min_chars, 'символ', 'символа', 'символов')}")
        found.append(Violation(TITLE_SHORT, subject, detail))
    if _only_stop_words(tokens, rules.stop_words):
        found.append(Violation(TITLE_STOP_WORD, subject))
    if rules.title_regex and re.search(rules.title_regex, title.strip()) is None:
        found.append(Violation(TITLE_REGEX, subject, rules.title_regex))
    return found


def check(facts: TaskFacts, rules: FormatRules, *, at_creation: bool,
          open_codes: Collection[str] = ()) -> tuple[Violation, ...]:
    """The broken rules of a task, in ``CODES`` order.

    ``open_codes`` are the violations still open from the previous check: a later check
    keeps ``deadline_past`` only while it is open and still true (see the module notes).
    """
    found = _title_violations(facts.title, rules)
    deadline, created = facts.deadline, facts.created_at
    if deadline is None:
        found.append(Violation(DEADLINE_MISSING))
    elif (created is not None and deadline < created
          and (at_creation or DEADLINE_PAST in open_codes)):
        local = deadline.astimezone(ZoneInfo(rules.timezone))
        found.append(Violation(DEADLINE_PAST, local.strftime("%d.%m.%Y %H:%M")))
    if not facts.responsible_id:
        found.append(Violation(RESPONSIBLE_MISSING))
    return tuple(found)


# ---------------------------------------------------------------- the decision


def decide(previous: CheckState, violations: Sequence[Violation], *, may_return: bool = False,
           quiet: bool = False) -> Actions:
    """What to do about the violations found now, given what was done before.

    A code is commented once while it stays open; a comment names only the codes that are
    new. ``quiet`` (a closed task) records the verdict but posts nothing about violations.
    ``may_return`` (strict mode, a creator who is not the responsible) returns the task at
    its creation verdict, once.
    """
    current = frozenset(v.code for v in violations)
    new = current - previous.commented
    comment: tuple[Violation, ...] = () if quiet else tuple(
        v for v in violations if v.code in new)
    returned = bool(comment) and previous.at_creation and may_return and not previous.returned
    verdict = (not current) if previous.at_creation else previous.compliant_at_creation
    state = CheckState(
        compliant_at_creation=verdict,
        violations=current,
        # A fixed code leaves the set, so breaking it again later is news again.
        commented=current if comment else previous.commented & current,
        returned=previous.returned or returned,
    )
    return Actions(state=state, comment=comment,
                   confirm=not current and bool(previous.commented),
                   return_to_creator=returned,
                   opened=bool(current) and not previous.violations,
                   fixed=not current and bool(previous.violations))


# ---------------------------------------------------------------- texts


def _shown(violations: Iterable[Violation]) -> list[Violation]:
    """Violations to write about: a stop-word title needs no second «too short» line."""
    items = list(violations)
    codes = {v.code for v in items}
    return [v for v in items if not (v.code == TITLE_SHORT and TITLE_STOP_WORD in codes)]


def comment_text(violations: Iterable[Violation], *, returned: bool = False) -> str:
    """The task comment: the regulation, what to fix, and how the remark closes."""
    lines = [REGULATION, "Пожалуйста, поправьте задачу:"]
    lines += [f"• {v.message}" for v in _shown(violations)]
    if returned:
        lines.append(RETURNED)
    lines.append(CLOSING)
    return "\n".join(lines)


def fixed_text() -> str:
    """The short confirmation once the task meets the regulation."""
    return FIXED


def is_service_text(text: str) -> bool:
    """Whether a task comment is one of this service's remarks or confirmations.

    The service posts with the installer's account, so the author says nothing; the text
    does: a remark opens with :data:`REGULATION`, a confirmation is exactly :data:`FIXED`.
    """
    stripped = text.strip()
    return stripped == FIXED or stripped.startswith(REGULATION)


def notify_text(task_id: int, title: str, violations: Iterable[Violation], link: str, *,
                returned: bool = False) -> str:
    """The creator's notification; its first line is its summary (outbox batching)."""
    labels = "; ".join(v.label for v in _shown(violations))
    lines = [f"Задача #{task_id} «{_quote(title)}» поставлена не по регламенту: {labels}.",
             f"Что исправить — в комментарии к задаче: [URL={link}]открыть задачу[/URL]"]
    if returned:
        lines.append(RETURNED_TO_YOU)
    lines.append(CLOSING)
    return "\n".join(lines)
