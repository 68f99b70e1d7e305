"""The NPS ledger: one answer per contact and wave (the first one wins), and the wave calendar."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any, Literal

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from b24app.db import insert_ignoring_conflict
from b24app.models import NpsAnswer, utcnow
from b24app.nps import NpsSettings

Source = Literal["survey", "import", "crm_field"]
SOURCES: frozenset[str] = frozenset({"survey", "import", "crm_field"})
UNIQUE = ["portal_id", "contact_id", "wave"]
_WAVE = re.compile(r"(\d{4})-H([12])")
MAX_COMMENT = 2000
_SCORE_TEXT = re.compile(r"[0-9]{1,2}")
# Control characters other than tab and line breaks: PostgreSQL text refuses NUL outright.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Answer:
    """An answer on its way into the ledger."""

    contact_id: int
    company_id: int | None
    score: int
    wave: str
    answered_at: datetime
    source: Source
    comment: str = ""


def valid_score(value: Any) -> bool:
    """Whether ``value`` is an NPS score: an integer 0–10 (``True`` is not a score)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10


def score_from_text(text: str) -> int | None:
    """A score typed as text: ASCII digits only (``str.isdigit`` would take «０» and «²»)."""
    text = text.strip()
    if not _SCORE_TEXT.fullmatch(text):
        return None
    score = int(text)
    return score if score <= 10 else None


def clean_comment(text: str) -> str:
    """A comment fit to store: no control characters, at most ``MAX_COMMENT`` characters."""
    return _CONTROL.sub("", text.replace("\r\n", "\n")).strip()[:MAX_COMMENT]


def _values(portal_id: int, answer: Answer) -> dict[str, Any]:
    if not valid_score(answer.score):
        raise ValueError(f"NPS score must be an integer 0..10, got {answer.score!r}")
    if answer.source not in SOURCES:
        raise ValueError(f"unknown NPS answer source {answer.source!r}")
    if answer.answered_at.tzinfo is None:
        raise ValueError("answered_at must be an aware datetime")
    if not _WAVE.fullmatch(answer.wave):
        raise ValueError(f"malformed wave {answer.wave!r} (expected YYYY-H1 or YYYY-H2)")
    return {"portal_id": portal_id, "contact_id": answer.contact_id,
            "company_id": answer.company_id, "score": answer.score,
            "comment": clean_comment(answer.comment), "wave": answer.wave,
            "answered_at": answer.answered_at, "source": answer.source,
            "created_at": utcnow()}


def record_answer(  # noqa: PLR0917 - the ledger's call shape, one argument per column
        session: Session, portal_id: int, contact_id: int, company_id: int | None, score: int,
        wave: str, answered_at: datetime, source: Source, comment: str = "") -> bool:
    """Insert one answer; ``False`` when the contact already answered in this wave."""
    answer = Answer(contact_id, company_id, score, wave, answered_at, source, comment)
    statement = insert_ignoring_conflict(session, NpsAnswer, _values(portal_id, answer), UNIQUE)
    return session.execute(statement.returning(NpsAnswer.id)).scalar_one_or_none() is not None


def record_many(session: Session, portal_id: int, answers: Iterable[Answer]
                ) -> set[tuple[int, str]]:
    """Insert answers in one statement; the ``(contact_id, wave)`` keys actually inserted."""
    rows = [_values(portal_id, answer) for answer in answers]
    if not rows:
        return set()
    result = session.execute(_multi_insert(session, rows).returning(NpsAnswer.contact_id,
                                                                    NpsAnswer.wave))
    return {(contact_id, wave) for contact_id, wave in result}


def _multi_insert(session: Session, rows: list[dict[str, Any]]) -> Insert:
    # ON CONFLICT DO NOTHING also skips a repeat inside the same statement on both backends:
    # the first row of a key wins, as with separate inserts.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(NpsAnswer).values(rows).on_conflict_do_nothing(
            index_elements=UNIQUE)
    if dialect == "sqlite":
        return sqlite.insert(NpsAnswer).values(rows).on_conflict_do_nothing(
            index_elements=UNIQUE)
    raise NotImplementedError(f"insert ... on conflict on {dialect} is not supported")


# -- waves -------------------------------------------------------------------------------------
def wave_of(instant: datetime, settings: NpsSettings, tz: tzinfo) -> str:
    """The wave an instant falls in, by the portal's local date: ``"2026-H2"``."""
    if instant.tzinfo is None:
        raise ValueError("wave_of needs an aware datetime")
    local = instant.astimezone(tz).date()
    starts = settings.wave_starts
    for index in reversed(range(len(starts))):
        if (local.month, local.day) >= starts[index]:
            return f"{local.year}-H{index + 1}"
    # Before the first start of the year: the last wave of the previous year still runs.
    return f"{local.year - 1}-H{len(starts)}"


def wave_start(wave: str, settings: NpsSettings, tz: tzinfo) -> datetime:
    """The instant a wave begins (local midnight of its start date), aware."""
    match = _WAVE.fullmatch(wave)
    if match is None:
        raise ValueError(f"malformed wave {wave!r} (expected YYYY-H1 or YYYY-H2)")
    month, day = settings.wave_starts[int(match[2]) - 1]
    return datetime.combine(date(int(match[1]), month, day), time(), tzinfo=tz)


def next_wave(wave: str) -> str:
    """The wave after ``wave``."""
    year, half = wave.split("-H")
    return f"{year}-H2" if half == "1" else f"{int(year) + 1}-H1"
