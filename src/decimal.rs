//! Decimal numbers as ASCII without `core::fmt`, for the per-request paths (audit lines,
//! `X-Accel-Expires`), where `write!` machinery costs more than the number itself.

/// Appends `value` in decimal, without leading zeros.
pub fn push(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_display() {
        for value in [0, 7, 10, 99, 1_795_412_460, u64::MAX] {
            let mut out = Vec::new();
            super::push(&mut out, value);
            assert_eq!(out, value.to_string().into_bytes());
        }
    }
}
