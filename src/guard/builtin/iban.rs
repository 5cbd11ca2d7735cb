//! `iban`: International Bank Account Numbers, ISO 13616.
//!
//! Two capital letters (a country in [`length`]'s table), two check digits, then the
//! BBAN of capitals and digits — compact (`DE89370400440532013000`) or in groups of four
//! separated by single spaces (`DE89 3704 0044 0532 0130 00`). The total length must be
//! the country's, and the ISO 7064 mod-97 check must give 1. Lower-case IBANs are not
//! recognised. Not glued to a word on either side.

use super::text::{at, before, is_alnum};

/// The IBAN whose check digits start at `i` (the first digit after the country code).
pub(super) fn find(s: &[u8], i: usize) -> Option<(usize, usize)> {
    if i < 2 || !s[i - 2].is_ascii_uppercase() || !s[i - 1].is_ascii_uppercase() {
        return None;
    }
    let start = i - 2;
    if before(s, start).is_some_and(is_alnum) {
        return None;
    }
    let len = length([s[start], s[start + 1]])?;
    if !(s.get(i + 1)?.is_ascii_digit()) {
        return None;
    }
    let is_bban = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut buf = [0u8; 34];
    buf[..4].copy_from_slice(&s[start..start + 4]);
    let mut n = 4;
    let mut p = start + 4;
    if at(s, p) == Some(b' ') {
        // Groups of four after single spaces; only the last may be shorter.
        while n < len {
            if at(s, p) != Some(b' ') {
                return None;
            }
            let group = (p + 1..(p + 5).min(s.len()))
                .take_while(|&k| is_bban(s[k]))
                .count();
            if group == 0 || (group < 4 && n + group != len) || n + group > len {
                return None;
            }
            buf[n..n + group].copy_from_slice(&s[p + 1..p + 1 + group]);
            n += group;
            p += 1 + group;
        }
    } else {
        let group = (p..s.len())
            .take_while(|&k| is_bban(s[k]))
            .take(len - 4 + 1)
            .count();
        if n + group != len {
            return None;
        }
        buf[n..len].copy_from_slice(&s[p..p + group]);
        p += group;
    }
    if at(s, p).is_some_and(is_alnum) || !mod97_ok(&buf[..len]) {
        return None;
    }
    Some((start, p))
}

/// ISO 7064 mod 97-10 over the IBAN with its first four characters moved to the end.
pub(super) fn mod97_ok(iban: &[u8]) -> bool {
    let rotated = iban[4..].iter().chain(&iban[..4]);
    let mut rem = 0u32;
    for &c in rotated {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + (c - b'0') as u32) % 97,
            b'A'..=b'Z' => (rem * 100 + (c - b'A' + 10) as u32) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// The IBAN length of a country (SWIFT IBAN registry), for the countries in it.
pub(super) fn length(country: [u8; 2]) -> Option<usize> {
    let len = match &country {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        _ => return None,
    };
    Some(len)
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn valid_ibans_compact_and_grouped() {
        for iban in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB29 NWBK 6016 1331 9268 19",
            "GB29NWBK60161331926819",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68 5390 0754 7034",
            "NO93 8601 1117 947",
            "CH93 0076 2011 6238 5295 7",
            "ES91 2100 0418 4502 0005 1332",
            "IT60 X054 2811 1010 0000 0123 456",
            "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
        ] {
            assert_eq!(
                found("iban", &format!("IBAN: {iban}. Thanks")),
                [iban],
                "{iban}"
            );
        }
        assert_eq!(
            found("iban", "«DE89370400440532013000»"),
            ["DE89370400440532013000"]
        );
    }

    #[test]
    fn bad_checksums_lengths_and_shapes() {
        for text in [
            "DE88370400440532013000",      // check digits
            "DE89370400440532013001",      // checksum
            "DE89 3704 0044 0532 0130 01", // checksum
            "DE8937040044053201300",       // short
            "DE890370400440532013000",     // long
            "DE89 37040 044 0532 0130 00", // grouping
            "ZZ89370400440532013000",      // unknown country
            "xDE89370400440532013000",     // glued
            "de89370400440532013000",      // lower case
            "DE 89370400440532013000",
        ] {
            assert_eq!(found("iban", text), Vec::<&str>::new(), "{text}");
        }
    }
}
