//! One character's normal form for the detectors (see `normalize.rs`): dropped when
//! invisible, else NFKC, then the detectors' syntax characters mapped to ASCII.

use unicode_normalization::UnicodeNormalization;

/// Appends `c`'s normal form to `out` (nothing for an invisible character).
pub fn normalize_char(c: char, out: &mut String) {
    if invisible(c) {
        return;
    }
    for n in std::iter::once(c).nfkc() {
        if !invisible(n) {
            out.push(syntax(n));
        }
    }
}

/// Format characters (Cf) and the other default-ignorable code points (Unicode 15.1,
/// `DerivedGeneralCategory.txt` and `DerivedCoreProperties.txt`): they render as nothing,
/// so they can hide a secret from a detector without changing what a model reads.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// First code points of runs of ten decimal digits (category Nd) that NFKC keeps.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
];

/// The ASCII form of a syntax character NFKC leaves alone; any other character as is.
fn syntax(c: char) -> char {
    match c {
        // Ideographic and halfwidth full stops (NFKC maps the halfwidth one here).
        '\u{3002}' => '.',
        // Hyphens, dashes, the minus sign and the hyphen bullet.
        '\u{2010}'..='\u{2015}' | '\u{2043}' | '\u{2212}' | '\u{FE58}' => '-',
        _ => {
            let u = c as u32;
            match DIGIT_ZEROS.iter().find(|&&z| (z..z + 10).contains(&u)) {
                Some(&z) => char::from(b'0' + (u - z) as u8),
                None => c,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            normalize_char(c, &mut out);
        }
        out
    }

    #[test]
    fn syntax_characters_read_as_ascii() {
        assert_eq!(n("alice＠example。com"), "alice@example.com");
        assert_eq!(n("bob﹫example．org"), "bob@example.org");
        assert_eq!(n("４１５‐５５５−０１２３"), "415-555-0123");
        assert_eq!(n("٤١٥"), "415");
        assert_eq!(n("a\u{00A0}b\u{3000}c"), "a b c");
    }

    #[test]
    fn invisible_characters_are_dropped() {
        assert_eq!(
            n("sk-\u{200B}ab\u{200D}c\u{FEFF}d\u{2060}e\u{00AD}f"),
            "sk-abcdef"
        );
        assert_eq!(n("a\u{FE0F}b\u{E0041}c\u{202E}d"), "abcd");
    }

    #[test]
    fn other_scripts_are_kept() {
        assert_eq!(n("пароль 日本語 café"), "пароль 日本語 café");
    }
}
