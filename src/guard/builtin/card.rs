//! `credit_card`: payment card numbers, Luhn-checked.
//!
//! Shape: 13–19 digits, either unbroken or in groups joined by one space or one dash
//! (the same throughout), the first group of four and the others of three to six
//! (`4111 1111 1111 1111`, `3782-822463-10005`). Then the brand's prefix and length must
//! agree (Visa, Mastercard incl. 2221–2720, Amex, Discover, JCB, Diners) and the Luhn
//! checksum must hold. Numeric boundary rules as in `text.rs` (not glued to words, not a
//! later group of a longer grouped number).

use super::text::{digits_of, groups, numeric_left_ok, numeric_right_ok, value};

/// The card number starting at the first digit `i`, as `(start, end)`.
pub(super) fn find(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut lens = [0u8; 8];
    let first = super::text::run_end(s, i, 19, |c| c.is_ascii_digit()) - i;
    let (end, sep) = if (13..=19).contains(&first) {
        (i + first, None)
    } else if first == 4 {
        let sep = s.get(i + 4).copied().filter(|c| *c == b' ' || *c == b'-')?;
        let (end, n) = groups(s, i, Some(sep), 6, 6, &mut lens)?;
        if n < 2 || lens[1..n].iter().any(|&l| l < 3) {
            return None;
        }
        (end, Some(sep))
    } else {
        return None;
    };
    let mut buf = [0u8; 19];
    let digits = digits_of(s, i, end, &mut buf)?;
    if !(13..=19).contains(&digits.len()) || !brand_ok(digits) || !luhn_ok(digits) {
        return None;
    }
    (numeric_left_ok(s, i, sep) && numeric_right_ok(s, end, sep)).then_some((i, end))
}

/// Whether the number's prefix belongs to a supported brand issuing that length.
pub(super) fn brand_ok(d: &[u8]) -> bool {
    let len = d.len();
    let p = |k: usize| value(&d[..k]);
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&p(2)) && len == 16,
        2 => (2221..=2720).contains(&p(4)) && len == 16,
        3 => {
            let amex = matches!(p(2), 34 | 37) && len == 15;
            let jcb = (3528..=3589).contains(&p(4)) && (16..=19).contains(&len);
            let diners = ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
                && (14..=19).contains(&len);
            amex || jcb || diners
        }
        6 => {
            let discover = p(4) == 6011
                || (644..=649).contains(&p(3))
                || p(2) == 65
                || (622126..=622925).contains(&p(6));
            discover && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// The Luhn (mod 10) checksum over digit values.
pub(super) fn luhn_ok(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &x)| {
            let x = x as u32;
            if k % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn valid_numbers_of_every_brand_and_format() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4222222222222",
            "5555 5555 5555 4444",
            "2223 0031 2200 3222",
            "3782 822463 10005",
            "371449635398431",
            "6011 1111 1111 1117",
            "6011000990139424",
            "3530 1113 3330 0000",
            "3566002020360505",
            "3056 930902 5904",
            "36227206271667",
        ] {
            assert_eq!(
                found("credit_card", &format!("pay with {card}, thanks")),
                [card],
                "{card}"
            );
        }
        assert_eq!(
            found("credit_card", "4111111111111111"),
            ["4111111111111111"]
        );
        assert_eq!(
            found("credit_card", "(4111 1111 1111 1111)"),
            ["4111 1111 1111 1111"]
        );
    }

    #[test]
    fn luhn_invalid_and_look_alikes_are_rejected() {
        for text in [
            "4111 1111 1111 1112",         // Luhn
            "4111111111111121",            // Luhn
            "1234 5678 9012 3456",         // no brand, Luhn
            "9111 1111 1111 1111",         // no brand
            "5555 5555 5555 444",          // short
            "4111 1111 1111 1111 1111",    // 20 digits
            "4111 1111-1111 1111",         // mixed separators
            "4111  1111 1111 1111",        // double space
            "41111 111 1111 1111",         // first group not four
            "ID 1234 4111 1111 1111 1111", // later groups of a longer number
            "x4111111111111111",           // glued
            "4111111111111111x",
            "4111111111111111.5",
            "v4111-1111-1111-1111",
            "41111111111111111111111", // long digit run
        ] {
            assert_eq!(found("credit_card", text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn unicode_around_cards() {
        assert_eq!(
            found("credit_card", "карта 4111 1111 1111 1111。"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found("credit_card", "💳4111111111111111💳"),
            ["4111111111111111"]
        );
    }
}
