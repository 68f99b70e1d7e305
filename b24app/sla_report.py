"""Explain a response clock minute by minute, and re-score clocks after a rule change."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.models import MirrorUser, SlaClock, SlaClockEvent
from b24app.models.base import utcnow
from kpi import sla
from kpi.calendar import WorkingCalendar
from sync.sla_ticker import add_event, mirror_title

MAX_PERIODS = 40  # a clock left running for months is summarised, not listed day by day
SUBJECTS = {"task": "задача", "deal": "сделка", "company": "компания"}
REASONS = {
    "comment": "комментарий исполнителя", "status": "смена статуса исполнителем",
    "deadline": "перенос срока исполнителем", "activity": "исходящее дело ответственного",
    "stage": "смена стадии сделки", "reassigned": "сменился исполнитель",
    "deleted": "удалено", "closed": "закрыто без ответа исполнителя (не им)",
}
SOURCES = {"verification": "найдено проверкой по источнику",
           "refresh": "найдено при досинхронизации"}


def _when(moment: datetime | str | None, calendar: WorkingCalendar) -> str:
    """«пт 27.11.2026 16:45» in the calendar's zone."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = moment.astimezone(calendar.tz)
    return f"{sla.WEEKDAYS[local.weekday()]} {local:%d.%m.%Y %H:%M}"


def _name(session: Session, portal_id: int, user_id: int | None) -> str:
    if not user_id:
        return "—"
    row = session.get(MirrorUser, {"portal_id": portal_id, "id": user_id})
    name = f"{row.name} {row.last_name}".strip() if row is not None else ""
    return f"{name} (#{user_id})" if name else f"#{user_id}"


def _title(session: Session, clock: SlaClock) -> str:
    title = mirror_title(session, clock.portal_id, (clock.subject_type, clock.subject_id))
    return f" «{sla.short_title(title)}»" if title else ""


def working_periods(start: datetime, end: datetime,
                    calendar: WorkingCalendar) -> list[tuple[datetime, datetime]]:
    """The working intervals between two instants, clipped to them."""
    out: list[tuple[datetime, datetime]] = []
    day: date = start.astimezone(calendar.tz).date()
    last = end.astimezone(calendar.tz).date()
    while day <= last:
        for a, b in calendar.day_intervals(day):
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                out.append((lo, hi))
        day += timedelta(days=1)
    return out


def _period_lines(clock: SlaClock, until: datetime, calendar: WorkingCalendar) -> list[str]:
    periods = working_periods(clock.started_at, until, calendar)
    lines, total = ["Учтённое рабочее время:"], 0.0
    for a, b in periods[:MAX_PERIODS]:
        minutes = (b - a).total_seconds() / 60
        total += minutes
        lines.append(f"  {_when(a, calendar)}–{b.astimezone(calendar.tz):%H:%M} — "
                     f"{minutes:g} мин (всего {total:g})")
    if len(periods) > MAX_PERIODS:
        rest = calendar.working_minutes(periods[MAX_PERIODS][0], until)
        lines.append(f"  … ещё {len(periods) - MAX_PERIODS} периодов, {rest:g} мин")
    if not periods:
        lines.append("  нет: рабочее время ещё не начиналось")
    return lines


def _reason(detail: dict[str, Any]) -> str:
    reason = str(detail.get("reason"))
    return REASONS.get(reason, reason)


class _Wording:
    """History lines in Russian: one method per event kind."""

    def __init__(self, session: Session, clock: SlaClock, calendar: WorkingCalendar) -> None:
        self.session, self.clock, self.calendar = session, clock, calendar

    def line(self, event: SlaClockEvent) -> str:
        """«<when> — <what happened>»."""
        say = getattr(self, f"_{event.kind}", None)
        text = say(event.detail or {}) if say is not None else event.kind
        return f"{_when(event.at, self.calendar)} — {text}"

    def _name(self, user_id: int | None) -> str:
        return _name(self.session, self.clock.portal_id, user_id)

    def _started(self, d: dict[str, Any]) -> str:
        trigger = str(d.get("trigger"))
        return "старт отсчёта: " + sla.trigger_name(trigger, self.clock.subject_type, trigger)

    def _warned(self, d: dict[str, Any]) -> str:
        return ("предупреждение исполнителю (отправка не раньше "
                f"{_when(d.get('not_before'), self.calendar)})")

    def _breached(self, d: dict[str, Any]) -> str:
        notified = d.get("notified", [])
        text = "срок нарушен: уведомлены " + ", ".join(self._name(u) for u in notified)
        if d.get("late"):
            text += f" (отсчёт остановлен позже срока, {_when(d.get('stopped_at'), self.calendar)})"
        return text

    def _verified(self, d: dict[str, Any]) -> str:
        if "unverified" in d:
            return f"источник недоступен ({d['unverified']}): уведомление без проверки"
        return "проверка по источнику: реакции нет (" + ", ".join(
            f"{k}: {v}" for k, v in d.items()) + ")"

    def _stop_note(self, d: dict[str, Any]) -> str:
        return "; предупреждение отозвано" if d.get("warning_withdrawn") else ""

    def _answered(self, d: dict[str, Any]) -> str:
        found = f"; {SOURCES[d['source']]}" if d.get("source") in SOURCES else ""
        return (f"ответ: {_reason(d)}, {d.get('working_minutes', 0):g} рабочих мин{found}"
                f"{self._stop_note(d)}")

    def _reassigned(self, d: dict[str, Any]) -> str:
        role = "исполнителю" if self.clock.subject_type == "task" else "ответственному"
        return f"передано {role} {self._name(d.get('to_responsible'))}{self._stop_note(d)}"

    def _cancelled(self, d: dict[str, Any]) -> str:
        return f"отменено: {_reason(d)}{self._stop_note(d)}"

    def _rescored(self, d: dict[str, Any]) -> str:
        return (f"пересчитано: срок {_when(d.get('due_at_before'), self.calendar)} → "
                f"{_when(d.get('due_at'), self.calendar)}")


def _outcome(clock: SlaClock, until: datetime, calendar: WorkingCalendar) -> str:
    minutes = sla.elapsed(clock, until, calendar)
    if clock.state == "answered":
        verdict = "в срок" if minutes <= clock.target_minutes else "с нарушением срока"
        return f"Итог: ответ через {minutes:g} рабочих мин — {verdict}."
    if clock.state == "cancelled":
        return f"Итог: отсчёт отменён ({_reason({'reason': clock.stop_reason})})."
    stage = {"running": "идёт", "warn": "идёт, предупреждение", "breach": "срок нарушен"}
    return f"Итог: без ответа {minutes:g} рабочих мин, {stage[sla.stage(clock, until)]}."


def explain(session: Session, clock_id: int, calendar: WorkingCalendar,
            now: datetime | None = None) -> list[str]:
    """Russian lines: the start, each working period counted, every event, the stop and why."""
    clock = session.get(SlaClock, clock_id)
    if clock is None:
        return [f"Часы ответа №{clock_id} не найдены."]
    until = clock.stopped_at or now or clock.due_at
    subject = f"{SUBJECTS.get(clock.subject_type, clock.subject_type)} #{clock.subject_id}"
    wording = _Wording(session, clock, calendar)
    events = session.scalars(select(SlaClockEvent).where(SlaClockEvent.clock_id == clock.id)
                             .order_by(SlaClockEvent.at, SlaClockEvent.id)).all()
    return [
        f"Часы ответа №{clock.id}: {subject}{_title(session, clock)}, ответственный "
        f"{_name(session, clock.portal_id, clock.responsible_id)}; цель "
        f"{clock.target_minutes} рабочих мин.",
        f"Старт: {_when(clock.started_at, calendar)}; предупреждение: "
        f"{_when(clock.warn_at, calendar)}; срок: {_when(clock.due_at, calendar)}.",
        *_period_lines(clock, until, calendar),
        "События:",
        *(f"  {wording.line(e)}" for e in events),
        _outcome(clock, until, calendar),
    ]


def rescore(session: Session, portal_id: int, calendar: WorkingCalendar, policy: sla.SlaPolicy,
            since: datetime, *, now: datetime | None = None) -> int:
    """Recompute warn/due instants and minutes of clocks started since ``since``.

    Notifications already sent stay sent (``warned_at``/``breached_at`` are history); a
    running clock whose new instants lie ahead is simply ticked against them later.
    Returns how many clocks changed; each gets a "rescored" event with the old values.
    """
    at = now or utcnow()
    changed = 0
    clocks = session.scalars(select(SlaClock).where(
        SlaClock.portal_id == portal_id, SlaClock.started_at >= since).order_by(SlaClock.id))
    for clock in clocks:
        warn_at, due_at = sla.schedule(clock.started_at, policy, calendar)
        minutes = clock.working_minutes
        if clock.stopped_at is not None or now is not None:
            minutes = round(sla.elapsed(clock, clock.stopped_at or at, calendar), 3)
        new = (warn_at, due_at, policy.target_minutes, minutes)
        old = (clock.warn_at, clock.due_at, clock.target_minutes, clock.working_minutes)
        if new == old:
            continue
        clock.warn_at, clock.due_at, clock.target_minutes, clock.working_minutes = new
        clock.updated_at = at
        add_event(session, clock, "rescored", at, warn_at_before=old[0], due_at_before=old[1],
                  target_before=old[2], minutes_before=old[3], warn_at=warn_at, due_at=due_at,
                  target_minutes=policy.target_minutes, working_minutes=minutes)
        changed += 1
    session.flush()
    return changed
