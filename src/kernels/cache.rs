//! The size of one core's L2 cache, which the AVX2 kernel's blocking follows: read from
//! Linux's sysfs, or given as `CHARRNN_L2` (bytes, or with a K or M suffix) to measure the
//! blocking for another CPU's cache on this one.

use std::sync::OnceLock;

/// Assumed when neither the system nor the environment says (the smallest L2 of the CPUs
/// charrnn is measured on: AMD Zen 1, 512 KB per core).
pub const DEFAULT_L2: usize = 512 * 1024;

/// Where the L2 size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    System,
    Default,
}

/// Bytes of L2 per core and where the figure came from; decided once per process.
pub fn l2() -> (usize, Source) {
    static L2: OnceLock<(usize, Source)> = OnceLock::new();
    *L2.get_or_init(|| {
        if let Some(b) = std::env::var("CHARRNN_L2")
            .ok()
            .and_then(|v| parse_size(&v))
        {
            return (b, Source::Environment);
        }
        match sysfs_l2() {
            Some(b) => (b, Source::System),
            None => (DEFAULT_L2, Source::Default),
        }
    })
}

/// "2048K", "2M", "524288" as bytes; `None` for anything else or zero.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1024),
        (i, 'M' | 'm') => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()?
        .checked_mul(unit)
        .filter(|&b| b > 0)
}

fn sysfs_l2() -> Option<usize> {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    // index0, index1, ... (and other entries, which have no `level`).
    std::fs::read_dir(base).ok()?.flatten().find_map(|entry| {
        let dir = entry.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let (level, kind) = (read("level")?, read("type")?);
        (level.trim() == "2" && kind.trim() != "Instruction")
            .then(|| parse_size(&read("size")?))
            .flatten()
    })
}

/// "2 MB (from the system)" and the like, for `charrnn bench`.
pub fn describe() -> String {
    let (b, source) = l2();
    let size = if b % (1024 * 1024) == 0 {
        format!("{} MB", b / (1024 * 1024))
    } else {
        format!("{} KB", b / 1024)
    };
    let from = match source {
        Source::Environment => "CHARRNN_L2",
        Source::System => "from the system",
        Source::Default => "assumed: the system does not say",
    };
    format!("{size} ({from})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2048K"), Some(2 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size(" 524288\n"), Some(524_288));
        for bad in ["", "K", "0", "-1K", "1.5M", "99999999999999999999M"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert!(l2().0 > 0);
    }
}
