//! The piece-size rule: a power of two from 16 KiB to 16 MiB, aiming at 1,000–2,000 pieces.

pub const MIN_AUTO: u64 = 16 * 1024;
pub const MAX_AUTO: u64 = 16 * 1024 * 1024;
/// Largest piece size accepted when given by hand.
pub const MAX_MANUAL: u64 = 64 * 1024 * 1024;
const TARGET_PIECES: u64 = 2000;

/// The smallest power of two that keeps the piece count at or under 2,000, within 16 KiB–16 MiB:
/// any size between 32 MB and 32 GB gets 1,001–2,000 pieces.
pub fn auto(total: u64) -> u64 {
    total
        .div_ceil(TARGET_PIECES)
        .max(1)
        .next_power_of_two()
        .clamp(MIN_AUTO, MAX_AUTO)
}

/// Checks a piece size given by hand: a power of two from 16 KiB to 64 MiB.
pub fn check(piece_length: u64) -> Result<u64, String> {
    if !piece_length.is_power_of_two() {
        return Err(format!("piece size {piece_length} is not a power of two"));
    }
    if !(MIN_AUTO..=MAX_MANUAL).contains(&piece_length) {
        return Err(format!(
            "piece size {piece_length} is out of range (16 KiB to 64 MiB)"
        ));
    }
    Ok(piece_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn rule() {
        assert_eq!(auto(1), 16 * KIB);
        assert_eq!(auto(2000 * 16 * KIB), 16 * KIB);
        assert_eq!(auto(32 * MIB), 32 * KIB);
        assert_eq!(auto(100 * MIB), 64 * KIB);
        assert_eq!(auto(GIB), MIB);
        assert_eq!(auto(2 * GIB), 2 * MIB);
        assert_eq!(auto(2 * GIB + 1), 2 * MIB);
        assert_eq!(auto(1000 * GIB), 16 * MIB);
        for total in [40 * MIB, 700 * MIB, 3 * GIB, 20 * GIB] {
            let pieces = total.div_ceil(auto(total));
            assert!((1000..=2000).contains(&pieces), "{total}: {pieces}");
        }
    }

    #[test]
    fn manual_sizes() {
        assert!(check(16 * KIB).is_ok());
        assert!(check(64 * MIB).is_ok());
        assert!(check(8 * KIB).is_err());
        assert!(check(128 * MIB).is_err());
        assert!(check(3 * MIB).is_err());
        assert!(check(0).is_err());
    }
}
