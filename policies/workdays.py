"""Working days by the Chinese calendar (法定节假日 and 调休), for deadlines such as 问题数据's
"fixed within 3 working days".

The calendar comes from the maintained `chinesecalendar` package (the State Council's yearly
holiday notice, 国务院办公厅关于节假日安排的通知, as data), not from a hand-kept list here.

A day is counted in China Standard Time (UTC+8), the day a report is opened does not count, and
the deadline is the end (24:00 CST) of the N-th working day after it: a report opened on Friday
afternoon before 国庆 is due when the third working day after it ends, 调休 weekend days
included as the notice makes them working days.

Past the years the package knows (the notice for next year appears in October or November, the
package some weeks later), the deadline falls back to Monday-Friday and is marked
`provisional`: refusing would stop every report filed in late December, and the stored
deadline is recomputed once the calendar knows the year (gateway.workflow.quality)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

import chinese_calendar

CST = timezone(timedelta(hours=8), "CST")
# More than any run of consecutive holidays: a bound on the search, not a rule.
_MAX_SCAN_DAYS = 60


@dataclass(frozen=True, slots=True)
class WorkingDay:
    working: bool
    known: bool  # False: the calendar has no data for the year; Mon-Fri was assumed


@dataclass(frozen=True, slots=True)
class Deadline:
    due: datetime  # aware, UTC: the end of the last working day counted
    provisional: bool  # some day counted was outside the calendar's years (Mon-Fri assumed)

    @property
    def due_day(self) -> date:
        """The last working day, as a CST date (the day the deadline ends)."""
        return (self.due.astimezone(CST) - timedelta(microseconds=1)).date()


def working_day(day: date) -> WorkingDay:
    """Is `day` a working day? Holidays, weekends and 调休 make-up working days by the calendar;
    Monday-Friday (known=False) for a year it does not cover."""
    try:
        return WorkingDay(bool(chinese_calendar.is_workday(day)), True)
    except NotImplementedError:  # "no available data for year N"
        return WorkingDay(day.weekday() < 5, False)


def known_years() -> tuple[int, int]:
    """The first and last year the installed calendar covers."""
    from chinese_calendar.constants import holidays, workdays

    days = [*holidays, *workdays]
    return min(days).year, max(days).year


def add_working_days(opened_at: datetime, working_days: int = 3) -> Deadline:
    """The deadline `working_days` working days after `opened_at` (an aware datetime; a naive
    one is taken as UTC). The opening day itself never counts."""
    if working_days < 1:
        raise ValueError("working_days must be at least 1")
    aware = opened_at if opened_at.tzinfo is not None else opened_at.replace(tzinfo=UTC)
    day = aware.astimezone(CST).date()
    counted = 0
    provisional = False
    for _ in range(working_days * _MAX_SCAN_DAYS):
        day += timedelta(days=1)
        verdict = working_day(day)
        provisional = provisional or not verdict.known
        if verdict.working:
            counted += 1
            if counted == working_days:
                end = datetime.combine(day + timedelta(days=1), time(0), CST)
                return Deadline(end.astimezone(UTC), provisional)
    raise ValueError(f"no {working_days} working days found after {aware.isoformat()}")  # pragma: no cover


def on_time(resolved_at: datetime, deadline: datetime) -> bool:
    """Resolved no later than the deadline (both aware; naive taken as UTC)."""

    def utc(dt: datetime) -> datetime:
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)

    return utc(resolved_at) <= utc(deadline)
