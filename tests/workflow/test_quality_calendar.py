"""Working-day deadlines by the Chinese calendar (policies.workdays): holidays, 调休 make-up
working days, the opening day not counting, China Standard Time days, and the fall-back past the
years the installed calendar knows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from policies.workdays import CST, add_working_days, known_years, on_time, working_day


def cst(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def end_of(day: str) -> datetime:
    """24:00 CST of `day`, in UTC."""
    return (datetime.fromisoformat(day).replace(tzinfo=CST) + timedelta(days=1)).astimezone(UTC)


# 2025: 国庆 + 中秋 Oct 1-8 off; Sunday Sep 28 and Saturday Oct 11 are 调休 working days.


def test_the_national_day_week_and_its_make_up_days() -> None:
    assert date(2025, 9, 28).weekday() == 6 and working_day(date(2025, 9, 28)).working  # a working Sunday
    assert date(2025, 10, 11).weekday() == 5 and working_day(date(2025, 10, 11)).working  # a working Saturday
    assert not any(working_day(date(2025, 10, d)).working for d in range(1, 9))
    assert not working_day(date(2025, 9, 27)).working  # an ordinary Saturday


def test_opened_on_the_friday_before_counts_the_working_sunday() -> None:
    # Fri 26 → Sun 28 (调休), Mon 29, Tue 30
    due = add_working_days(cst("2025-09-26T09:00:00"))
    assert due.due == end_of("2025-09-30") and due.due_day == date(2025, 9, 30)
    assert not due.provisional


def test_opened_on_the_eve_of_the_holiday_skips_it_and_counts_the_working_saturday() -> None:
    # Tue Sep 30 → (Oct 1-8 off) Thu 9, Fri 10, Sat 11 (调休)
    assert add_working_days(cst("2025-09-30T17:00:00")).due == end_of("2025-10-11")


def test_spring_festival_2026() -> None:
    # 春节 2026: Feb 15-23 off, Saturday Feb 14 a working day. Fri 13 → Sat 14, Tue 24, Wed 25
    assert working_day(date(2026, 2, 14)).working
    assert not working_day(date(2026, 2, 23)).working
    assert add_working_days(cst("2026-02-13T10:00:00")).due == end_of("2026-02-25")


def test_an_ordinary_week() -> None:
    # Wed → Thu, Fri, Mon (the weekend does not count)
    assert add_working_days(cst("2025-11-05T10:00:00")).due == end_of("2025-11-10")


def test_the_day_is_a_china_standard_time_day() -> None:
    # 2025-11-04 17:00 UTC is Wednesday 01:00 in Beijing: the opening day is the Wednesday
    assert add_working_days(datetime(2025, 11, 4, 17, 0, tzinfo=UTC)).due == end_of("2025-11-10")
    # a naive time is UTC
    assert add_working_days(datetime(2025, 11, 4, 17, 0)).due == end_of("2025-11-10")


def test_on_time_is_up_to_the_end_of_the_last_day() -> None:
    due = add_working_days(cst("2025-11-05T10:00:00")).due
    assert on_time(due, due)
    assert on_time(cst("2025-11-10T23:59:59"), due)
    assert not on_time(cst("2025-11-11T00:00:01"), due)


def test_past_the_known_years_mon_to_fri_is_assumed_and_the_deadline_is_provisional() -> None:
    first, last = known_years()
    assert first <= 2025 <= last
    day = date(2100, 1, 1)  # a Friday, surely unknown to any calendar release
    assert working_day(day).known is False and working_day(day).working is True
    due = add_working_days(datetime(2100, 1, 1, 2, 0, tzinfo=UTC))  # Fri → Mon 4, Tue 5, Wed 6
    assert due.provisional and due.due == end_of("2100-01-06")


def test_a_deadline_spanning_into_an_unknown_year_is_provisional() -> None:
    _, last = known_years()
    due = add_working_days(cst(f"{last}-12-30T10:00:00"))
    assert due.provisional


def test_at_least_one_working_day() -> None:
    with pytest.raises(ValueError):
        add_working_days(cst("2025-11-05T10:00:00"), 0)
