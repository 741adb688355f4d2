//! Units: a kibibyte, and how figures are written in the tables (rates,
//! microseconds).

/// A kibibyte, for payload sizes.
pub(super) const KIB: usize = 1 << 10;

pub(super) fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

pub(super) fn micros(us: f64) -> String {
    if !us.is_finite() {
        "–".into()
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
}
