"""Task format rules, decisions and texts: plain data tables, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kpi.task_format import (
    CLOSING,
    CODES,
    DEADLINE_MISSING,
    DEADLINE_PAST,
    REGULATION,
    RESPONSIBLE_MISSING,
    TITLE_REGEX,
    TITLE_SHORT,
    TITLE_STOP_WORD,
    Actions,
    CheckState,
    FormatRules,
    TaskFacts,
    Violation,
    check,
    comment_text,
    decide,
    fixed_text,
    is_service_text,
    normalize,
    notify_text,
)

CREATED = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)  # 10:00 in Novosibirsk
LATER = CREATED + timedelta(days=2)
RULES = FormatRules()
GOOD_TITLE = "Подготовить КП для ООО Ромашка"


def facts(title: str = GOOD_TITLE, *, deadline: datetime | None = LATER, responsible: int = 5,
          created_at: datetime | None = CREATED) -> TaskFacts:
    """A well-set task with some fields changed."""
    return TaskFacts(title=title, description="", deadline=deadline, responsible_id=responsible,
                     created_by=3, created_at=created_at)


def codes(found: tuple[Violation, ...]) -> list[str]:
    return [v.code for v in found]


def title_codes(title: str, rules: FormatRules = RULES) -> list[str]:
    return codes(check(facts(title), rules, at_creation=True))


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(("text", "expected"), [
    ("Срочно", "срочно"),
    ("СРОЧНО!!!", "срочно"),
    ("  Вопрос? ", "вопрос"),
    ("Ёлка и ЕЛКА", "елка и елка"),
    ("Е\u0308лка", "елка"),  # a decomposed ё
    ("Задача:сделать", "задача сделать"),
    ("🔥🔥 Срочно 🔥", "срочно"),
    ("❤️", ""),  # a heart with its variation selector (a combining mark)
    ("!!!", ""),
    ("", ""),
    ("Счёт №12/3 — ООО «Ромашка»", "счет 12 3 ооо ромашка"),
    ("Call ACME re: Q4", "call acme re q4"),
    ("ТЗ", "тз"),
    ("tab\tand\nnewline", "tab and newline"),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# ---------------------------------------------------------------- title rules


@pytest.mark.parametrize(("title", "expected"), [
    # Meaningful titles: 3 words, or 15 characters.
    (GOOD_TITLE, []),
    ("КП для Ромашки", []),  # three words, though only 14 characters
    ("Переговоры", [TITLE_SHORT]),  # 10 characters, one word
    ("Перезвонить клиенту", []),  # two words, 19 characters
    ("Созвониться!", [TITLE_SHORT]),
    ("Согласовать спецификацию", []),  # two words, 24 characters
    ("ТЗ", [TITLE_SHORT]),
    ("Счёт 123", [TITLE_SHORT]),
    ("Заказ 1234567890", []),  # two words, 16 characters with the space
    ("Call ACME back", []),  # Latin counts the same
    ("Звонок . . . . . . . . . .", [TITLE_SHORT]),  # padding is not characters
    ("   Звонок   ", [TITLE_SHORT]),
    ("Blum 71B3550 x 200", []),
    ("🔥 Отгрузка 🔥 🔥 🔥 🔥", [TITLE_SHORT]),  # emoji are not characters
    # Bare stop words, any case, ё/е, punctuation, emoji, repeated !!!.
    ("Задача", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("Срочно", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("СРОЧНО!!!", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("срочно!!!!!!!!!!!!!!!!!!!!!!!", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("Вопрос?", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("«Сделать»", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("⚡ Срочно ⚡", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("!!!", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("???", [TITLE_SHORT, TITLE_STOP_WORD]),  # «!!!» stands for every title without words
    ("🔥🔥🔥", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("", [TITLE_SHORT, TITLE_STOP_WORD]),
    # Only stop words, however many: long enough, still says nothing.
    ("Срочно! Задача! Вопрос! Сделать!", [TITLE_STOP_WORD]),
    ("Задача задача задача", [TITLE_STOP_WORD]),
    ("Срочно сделать", [TITLE_SHORT, TITLE_STOP_WORD]),
    # A stop word next to real words is fine; so is a word that only contains one.
    ("Срочно отгрузить заказ Ромашке", []),
    ("Вопросы по доставке", []),
    ("Задачи на неделю", []),
    ("Сделать", [TITLE_SHORT, TITLE_STOP_WORD]),
    ("Сделать КП", [TITLE_SHORT]),
])
def test_title_rules(title: str, expected: list[str]) -> None:
    assert title_codes(title) == expected


@pytest.mark.parametrize(("rules", "title", "expected"), [
    (FormatRules(min_words=0, min_chars=0), "ТЗ", []),  # the length rule switched off
    (FormatRules(min_words=1, min_chars=0), "", [TITLE_STOP_WORD]),  # either 0 switches it off
    (FormatRules(min_words=2, min_chars=100), "КП Ромашке", []),
    (FormatRules(stop_words=()), "Срочно", [TITLE_SHORT]),
    (FormatRules(stop_words=()), "!!!", [TITLE_SHORT]),  # no wordless stop word configured
    (FormatRules(stop_words=("Ёжик",)), "ежик ЕЖИК ёжик", [TITLE_STOP_WORD]),
    (FormatRules(stop_words=("по звонку", "Срочно")), "Срочно по звонку!", [TITLE_STOP_WORD]),
    (FormatRules(stop_words=("по звонку",)), "по звонку клиента", []),
    (FormatRules(title_regex=r"^\[[А-ЯA-Z]+\] "), "[КП] Ромашка, 200 петель", []),
    (FormatRules(title_regex=r"^\[[А-ЯA-Z]+\] "), GOOD_TITLE, [TITLE_REGEX]),
    (FormatRules(title_regex=r"(?i)ромашк"), "  подготовить кп для РОМАШКИ  ", []),
    (FormatRules(title_regex=r"\d"), "Срочно", [TITLE_SHORT, TITLE_STOP_WORD, TITLE_REGEX]),
])
def test_configured_rules(rules: FormatRules, title: str, expected: list[str]) -> None:
    assert title_codes(title, rules) == expected


# ---------------------------------------------------------------- deadline and responsible


@pytest.mark.parametrize(("deadline", "responsible", "at_creation", "open_codes", "expected"), [
    (LATER, 5, True, (), []),
    (None, 5, True, (), [DEADLINE_MISSING]),
    (None, 5, False, (), [DEADLINE_MISSING]),
    (CREATED - timedelta(minutes=1), 5, True, (), [DEADLINE_PAST]),
    (CREATED, 5, True, (), []),  # due the instant it was set: not earlier
    # Later checks never open it, keep it open while true, and close it once moved.
    (CREATED - timedelta(days=1), 5, False, (), []),
    (CREATED - timedelta(days=1), 5, False, (DEADLINE_PAST,), [DEADLINE_PAST]),
    (CREATED + timedelta(minutes=1), 5, False, (DEADLINE_PAST,), []),
    (LATER, 0, True, (), [RESPONSIBLE_MISSING]),
    (None, 0, True, (), [DEADLINE_MISSING, RESPONSIBLE_MISSING]),
])
def test_deadline_and_responsible(deadline: datetime | None, responsible: int,
                                  at_creation: bool, open_codes: tuple[str, ...],
                                  expected: list[str]) -> None:
    found = check(facts(deadline=deadline, responsible=responsible), RULES,
                  at_creation=at_creation, open_codes=open_codes)
    assert codes(found) == expected


def test_a_deadline_that_passes_later_is_not_a_format_violation() -> None:
    """Created with a future deadline; checked again after it passed: overdue, not format."""
    task = facts(deadline=CREATED + timedelta(hours=1))
    assert check(task, RULES, at_creation=False) == ()
    assert check(task, RULES, at_creation=True) == ()


def test_unknown_creation_time_skips_the_past_rule() -> None:
    task = facts(deadline=CREATED - timedelta(days=1), created_at=None)
    assert check(task, RULES, at_creation=True) == ()


def test_the_past_deadline_is_quoted_in_the_portal_zone() -> None:
    deadline = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)  # 17:00 in Novosibirsk
    (found,) = check(facts(deadline=deadline), RULES, at_creation=True)
    assert found.subject == "12.11.2026 17:00"
    moscow = FormatRules(timezone="Europe/Moscow")
    assert check(facts(deadline=deadline), moscow, at_creation=True)[0].subject == (
        "12.11.2026 13:00")


def test_codes_come_in_a_stable_order() -> None:
    found = check(facts("Срочно", deadline=None, responsible=0),
                  FormatRules(title_regex="x"), at_creation=True)
    assert codes(found) == [*CODES[:4], RESPONSIBLE_MISSING]


# ---------------------------------------------------------------- decisions

V = {code: Violation(code) for code in CODES}
NEW = CheckState()


def state(violations: str = "", commented: str = "", *, verdict: bool | None = False,
          returned: bool = False) -> CheckState:
    """A stored state from space-separated codes."""
    return CheckState(verdict, frozenset(violations.split()), frozenset(commented.split()),
                      returned)


def found(spec: str) -> list[Violation]:
    return [V[code] for code in spec.split()]


@pytest.mark.parametrize(("previous", "now", "comment", "confirm", "after"), [
    # The creation verdict: a clean task, then a bad one.
    (NEW, "", "", False, state(verdict=True)),
    (NEW, "deadline_missing title_short", "deadline_missing title_short", False,
     state("deadline_missing title_short", "deadline_missing title_short")),
    # The same violations again, any number of times: nothing.
    (state("deadline_missing", "deadline_missing"), "deadline_missing", "", False,
     state("deadline_missing", "deadline_missing")),
    # A partial fix: silence, and the fixed code leaves both sets.
    (state("deadline_missing title_short", "deadline_missing title_short"), "title_short", "",
     False, state("title_short", "title_short")),
    # The full fix: one confirmation; the verdict at creation stays what it was.
    (state("title_short", "title_short"), "", "", True, state()),
    # A new violation after the fix, or next to an open one: a comment about it alone.
    (state(), "deadline_missing", "deadline_missing", False,
     state("deadline_missing", "deadline_missing")),
    (state("title_short", "title_short"), "title_short deadline_missing", "deadline_missing",
     False, state("deadline_missing title_short", "deadline_missing title_short")),
    # A clean task that stays clean: nothing; a compliant verdict is kept.
    (state(verdict=True), "", "", False, state(verdict=True)),
    (state(verdict=True), "responsible_missing", "responsible_missing", False,
     state("responsible_missing", "responsible_missing", verdict=True)),
])
def test_decide(previous: CheckState, now: str, comment: str, confirm: bool,
                after: CheckState) -> None:
    actions = decide(previous, found(now))
    assert [v.code for v in actions.comment] == comment.split()
    assert actions.notify == bool(comment)
    assert actions.confirm is confirm
    assert actions.state == after
    assert not actions.return_to_creator
    # Deciding again from the new state with the same findings does nothing.
    again = decide(actions.state, found(now))
    assert (again.comment, again.confirm, again.state) == ((), False, actions.state)


def test_opened_and_fixed_stamps() -> None:
    opened = decide(NEW, found("deadline_missing"))
    assert (opened.opened, opened.fixed) == (True, False)
    grown = decide(opened.state, found("deadline_missing title_short"))
    assert (grown.opened, grown.fixed) == (False, False)
    fixed = decide(grown.state, [])
    assert (fixed.opened, fixed.fixed, fixed.confirm) == (False, True, True)
    assert decide(fixed.state, []) == Actions(state=fixed.state)


@pytest.mark.parametrize(("previous", "may_return", "expected"), [
    (NEW, True, True),
    (NEW, False, False),  # strict mode off, or the creator is the responsible already
    (state("deadline_missing", "deadline_missing"), True, False),  # not at creation
    (CheckState(None, frozenset(), frozenset(), returned=True), True, False),  # once
])
def test_strict_mode_returns_at_the_creation_verdict_only(previous: CheckState,
                                                          may_return: bool,
                                                          expected: bool) -> None:
    actions = decide(previous, found("deadline_missing"), may_return=may_return)
    assert actions.return_to_creator is expected
    assert actions.state.returned is (expected or previous.returned)


def test_a_compliant_task_is_never_returned() -> None:
    assert not decide(NEW, [], may_return=True).return_to_creator


def test_a_closed_task_gets_a_verdict_but_no_remark() -> None:
    actions = decide(NEW, found("deadline_missing"), may_return=True, quiet=True)
    assert (actions.comment, actions.notify, actions.return_to_creator) == ((), False, False)
    assert actions.state == state("deadline_missing", "", verdict=False)
    # Nothing was said, so nothing is confirmed when it is fixed.
    assert not decide(actions.state, [], quiet=True).confirm


# ---------------------------------------------------------------- texts


def test_comment_text_for_a_stop_word_title_without_deadline() -> None:
    violations = check(facts("Срочно", deadline=None), RULES, at_creation=True)
    assert comment_text(violations) == "\n".join([
        REGULATION,
        "Пожалуйста, поправьте задачу:",
        "• Название «Срочно» не объясняет, что нужно сделать: напишите действие и результат, "
        "например «Подготовить КП для ООО Ромашка».",
        "• Не указан крайний срок: установите дату и время выполнения.",
        CLOSING,
    ])
    assert REGULATION == ("Задачи ставятся по регламенту: [Что сделать] / [Срок] / "
                          "[Ответственный].")
    assert CLOSING == "После исправления замечание закроется автоматически."


def test_comment_text_lines_per_rule() -> None:
    deadline = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
    violations = check(facts("ТЗ", deadline=deadline, responsible=0),
                       FormatRules(title_regex=r"^\["), at_creation=True)
    text = comment_text(violations, returned=True)
    assert "• Название «ТЗ» слишком короткое: нужно хотя бы 3 слова или 15 символов. " in text
    assert "• Название «ТЗ» не соответствует формату, принятому в компании (шаблон ^\\[)" in text
    assert ("• Срок 12.11.2026 17:00 уже прошёл в момент постановки задачи: укажите реальный "
            "срок.") in text
    assert "• Не назначен ответственный: укажите, кто будет выполнять задачу." in text
    lines = text.splitlines()
    assert lines[0] == REGULATION and lines[-1] == CLOSING
    assert lines[-2] == ("Задача возвращена постановщику: исправьте её и назначьте "
                         "ответственного заново.")


@pytest.mark.parametrize(("words", "chars", "phrase"), [
    (1, 21, "1 слово или 21 символ"),
    (2, 12, "2 слова или 12 символов"),
    (5, 22, "5 слов или 22 символа"),
    (11, 111, "11 слов или 111 символов"),
])
def test_russian_plurals(words: int, chars: int, phrase: str) -> None:
    (violation,) = check(facts(""), FormatRules(min_words=words, min_chars=chars,
                                                stop_words=()), at_creation=True)
    assert violation.detail == phrase


def test_blank_and_long_titles_are_quoted_sensibly() -> None:
    (blank,) = check(facts("   "), FormatRules(min_words=0, min_chars=0), at_creation=True)
    assert blank.message.startswith("Название задачи не заполнено: ")
    long_title = "Срочно " * 30
    (stop,) = check(facts(long_title), RULES, at_creation=True)
    assert len(stop.subject) == 80 and stop.subject.endswith("…")


def test_fixed_and_notify_texts() -> None:
    assert fixed_text() == "Спасибо, задача поставлена по регламенту."
    link = "https://nois.bitrix24.ru/company/personal/user/5/tasks/task/view/42/"
    violations = check(facts("Срочно", deadline=None), RULES, at_creation=True)
    text = notify_text(42, "Срочно", violations, link)
    assert text.splitlines() == [
        "Задача #42 «Срочно» поставлена не по регламенту: название не объясняет, что нужно "
        "сделать; не указан срок.",
        f"Что исправить — в комментарии к задаче: [URL={link}]открыть задачу[/URL]",
        CLOSING,
    ]
    returned = notify_text(42, "Срочно", violations, link, returned=True)
    assert "Задача возвращена вам как постановщику." in returned


def test_the_services_own_comments_are_recognised() -> None:
    """The SLA must not take the service's remark for the responsible's answer."""
    violations = check(facts("Срочно", deadline=None), RULES, at_creation=True)
    assert is_service_text(comment_text(violations))
    assert is_service_text(comment_text(violations, returned=True))
    assert is_service_text(f"  {fixed_text()}\n")
    assert not is_service_text("Принял, сделаю к обеду")
    assert not is_service_text(f"Спасибо! {fixed_text()} Сделаю.")
