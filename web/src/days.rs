//! Day separators in a conversation. A message's bubble shows only its
//! time of day; the day it belongs to is said once, above the first
//! message of each day ("Today", "Yesterday", "Friday 27 November"), as
//! chat apps do -- in the browser's time zone.
//!
//! The naming is pure (and tested natively); reading the browser's clock
//! and calendar is at the edge, in [`Day::of`] and [`Day::today`].

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub year: u32,
    /// 0 = January.
    pub month: u32,
    /// 1-31.
    pub date: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// What the separator above a day's first message says, seen on `today`
/// (whose day before is `yesterday`).
pub fn label(day: Day, today: Day, yesterday: Day) -> String {
    if day == today {
        return "Today".into();
    }
    if day == yesterday {
        return "Yesterday".into();
    }
    let weekday = WEEKDAYS[day.weekday as usize % 7];
    let month = MONTHS[day.month as usize % 12];
    if day.year == today.year {
        format!("{weekday} {} {month}", day.date)
    } else {
        format!("{weekday} {} {month} {}", day.date, day.year)
    }
}

/// When a conversation's newest message was sent, as the conversation
/// list says it: the time today, "Yesterday", the date ("27 Nov") earlier
/// this year, with the year before that.
pub fn list_label(day: Day, today: Day, yesterday: Day, time_of_day: &str) -> String {
    if day == today {
        return time_of_day.to_string();
    }
    if day == yesterday {
        return "Yesterday".into();
    }
    let month = &MONTHS[day.month as usize % 12][..3];
    if day.year == today.year {
        format!("{} {month}", day.date)
    } else {
        format!("{} {month} {}", day.date, day.year)
    }
}

#[cfg(target_arch = "wasm32")]
impl Day {
    /// The day of a moment (ms since the epoch) in the browser's time zone.
    pub fn of(ms: i64) -> Self {
        Self::from_js(&js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
            ms as f64,
        )))
    }

    /// Today and yesterday, by the browser's clock.
    pub fn today() -> (Self, Self) {
        let now = js_sys::Date::new_0();
        let yesterday = js_sys::Date::new_with_year_month_day(
            now.get_full_year(),
            now.get_month() as i32,
            now.get_date() as i32 - 1,
        );
        (Self::from_js(&now), Self::from_js(&yesterday))
    }

    fn from_js(d: &js_sys::Date) -> Self {
        Self {
            year: d.get_full_year(),
            month: d.get_month(),
            date: d.get_date(),
            weekday: d.get_day(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn day(year: u32, month: u32, date: u32, weekday: u32) -> Day {
        Day {
            year,
            month,
            date,
            weekday,
        }
    }

    // Sunday 29 November 2026, and the day before.
    const TODAY: Day = day(2026, 10, 29, 0);
    const YESTERDAY: Day = day(2026, 10, 28, 6);

    #[test]
    fn today_and_yesterday_by_name() {
        assert_eq!(label(TODAY, TODAY, YESTERDAY), "Today");
        assert_eq!(label(YESTERDAY, TODAY, YESTERDAY), "Yesterday");
    }

    #[test]
    fn earlier_days_by_date_with_the_year_only_when_another() {
        assert_eq!(
            label(day(2026, 10, 27, 5), TODAY, YESTERDAY),
            "Friday 27 November"
        );
        assert_eq!(
            label(day(2026, 0, 1, 4), TODAY, YESTERDAY),
            "Thursday 1 January"
        );
        assert_eq!(
            label(day(2025, 11, 31, 3), TODAY, YESTERDAY),
            "Wednesday 31 December 2025"
        );
    }

    #[test]
    fn the_conversation_list_says_the_time_today_and_the_date_before() {
        assert_eq!(list_label(TODAY, TODAY, YESTERDAY, "14:05"), "14:05");
        assert_eq!(
            list_label(YESTERDAY, TODAY, YESTERDAY, "14:05"),
            "Yesterday"
        );
        assert_eq!(
            list_label(day(2026, 8, 3, 4), TODAY, YESTERDAY, "14:05"),
            "3 Sep"
        );
        assert_eq!(
            list_label(day(2025, 11, 31, 3), TODAY, YESTERDAY, "14:05"),
            "31 Dec 2025"
        );
    }

    #[test]
    fn yesterday_across_a_year_boundary() {
        let today = day(2027, 0, 1, 5);
        let yesterday = day(2026, 11, 31, 4);
        assert_eq!(label(yesterday, today, yesterday), "Yesterday");
        assert_eq!(
            label(day(2026, 11, 30, 3), today, yesterday),
            "Wednesday 30 December 2026"
        );
    }
}
