//! Sizes as administrators write them: `35MB`, `1.5 GB`, `500KB`, `1048576`.
//! Units are binary, as in Exchange's LargeItemLimit (1 MB = 1024 × 1024 bytes).

pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 35MB, 500KB, 1048576)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use B, KB, MB or GB)")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// A size as `parse_size` reads it back: `2500 MB`, `20 KB`, `3 GB`, `12.5
/// GB`. A unit goes up only where nothing is lost or the number is large
/// (Gmail's limit stays `2500 MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0
        && unit < UNITS.len() - 1
        && (value % 1024.0 == 0.0 || value >= 10.0 * 1024.0)
    {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{human_size, parse_size};

    #[test]
    fn sizes_read_back() {
        for text in ["2500 MB", "20 KB", "3 GB", "999 B", "12.5 GB"] {
            assert_eq!(parse_size(text).map(human_size), Ok(text.to_string()));
        }
        assert_eq!(human_size(1536 << 20), "1536 MB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("35MB"), Ok(35 << 20));
        assert_eq!(parse_size("1.5 GB"), Ok(3 << 29));
        assert_eq!(parse_size("500kb"), Ok(500 << 10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
