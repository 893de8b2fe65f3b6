use std::time::{SystemTime, UNIX_EPOCH};

/// The machine's wall clock in seconds since the Unix epoch, as the protocol carries it.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `HH:MM:SS.mmm` (UTC) of a protocol timestamp, for people reading a log or a chat line.
pub fn format_clock_time(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "--:--:--.---".to_owned();
    }
    let millis = (secs * 1000.0).round() as u64;
    let ms = millis % 1000;
    let s = (millis / 1000) % 60;
    let m = (millis / 60_000) % 60;
    let h = (millis / 3_600_000) % 24;
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_of_day() {
        // 2026-01-01T12:34:56.789Z
        assert_eq!(format_clock_time(1_767_270_896.789), "12:34:56.789");
        assert_eq!(format_clock_time(f64::NAN), "--:--:--.---");
    }
}
