use serde_json::Value;

use super::*;

/// Skims the whole text, checking every value.
fn valid(text: &str) -> bool {
    let mut s = Skim::new(text);
    s.skip().is_some() && s.finish().is_some()
}

#[test]
fn accepts_what_serde_json_reads() {
    let good = [
        r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        " [ 1 , -2 , 3.5 , -0 , 0.0e-7 , 1E+2 , 18446744073709551615 , 18446744073709551616 ] ",
        r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
        "\"é 中 \u{7f}\"",
        "{}",
        "[]",
        "[[],{},\"\"]",
        "-123456789012345678901234567890",
        "1e300",
    ];
    for text in good {
        assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
        assert!(valid(text), "{text}");
    }
}

#[test]
fn refuses_what_serde_json_refuses() {
    let bad = [
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "[1 2]",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "tru",
        "nul",
        "nullx",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"a\nb\"",
        "\"unterminated",
        "\"\\",
        "1e400",
        "-1e400",
        "{} {}",
        "[1]]",
        "{\"a\":}",
        "[,1]",
        "NaN",
        "Infinity",
    ];
    for text in bad {
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text:?}");
        assert!(!valid(text), "{text:?}");
    }
}

#[test]
fn a_huge_integer_is_checked_for_range_as_serde_json_does() {
    let long = "9".repeat(400);
    assert!(serde_json::from_str::<Value>(&long).is_err());
    assert!(!valid(&long));
    let ok = "9".repeat(300);
    assert!(valid(&ok));
}

#[test]
fn deep_nesting_is_left_to_serde_json() {
    let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
    assert!(valid(&deep(MAX_DEPTH as usize)));
    assert!(!valid(&deep(MAX_DEPTH as usize + 1)));
    assert!(!valid(&deep(100_000)));
}

#[test]
fn reads_fields_strings_and_integers() {
    let text = r#"{"n":7,"neg":-7,"f":7.0,"s":"a\"b","k\u0065y":"v","z":null,"arr":[1,"x"]}"#;
    let mut seen = Vec::new();
    let mut s = Skim::new(text);
    s.object(|s, key| {
        let got = match &*key {
            "n" | "neg" | "f" => format!("{:?}", s.u64_or_skip()?),
            "s" | "key" => format!("{:?}", s.str_or_skip()?),
            "z" => format!("{}", s.skip_non_null()?),
            _ => {
                let mut items = Vec::new();
                s.array(|s, i| {
                    items.push(format!("{i}:{:?}", s.str_or_skip()?));
                    Some(())
                })?;
                items.join(",")
            }
        };
        seen.push(format!("{key}={got}"));
        Some(())
    })
    .unwrap();
    s.finish().unwrap();
    assert_eq!(
        seen,
        [
            "n=Some(7)",
            "neg=None",
            "f=None",
            "s=Some(\"a\\\"b\")",
            "key=Some(\"v\")",
            "z=false",
            "arr=0:None,1:Some(\"x\")"
        ]
    );
}

#[test]
fn borrows_strings_without_escapes() {
    let mut s = Skim::new(r#""plain""#);
    assert!(matches!(s.string(), Some(Cow::Borrowed("plain"))));
    let mut s = Skim::new(r#""a\nb""#);
    assert!(matches!(s.string(), Some(Cow::Owned(t)) if t == "a\nb"));
}

#[test]
fn every_position_of_a_long_string_is_checked() {
    for len in 0..40 {
        for at in 0..len {
            let mut bytes = vec![b'a'; len];
            bytes[at] = b'\n';
            let text = format!("\"{}\"", String::from_utf8(bytes).unwrap());
            assert!(!valid(&text), "control character at {at} of {len}");
        }
        let plain = format!("\"{}\\\"{}\"", "x".repeat(len), "y".repeat(len));
        let mut s = Skim::new(&plain);
        let want = format!("{}\"{}", "x".repeat(len), "y".repeat(len));
        assert_eq!(s.string().as_deref(), Some(want.as_str()));
        assert!(s.finish().is_some());
    }
}
