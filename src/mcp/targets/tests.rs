//! Target sets: validation errors, prefixing per mode, first-separator decoding, and the
//! fingerprint's stability.

use super::*;

fn set(names: &[&str], sep: &str, prefix: PrefixMode) -> Result<TargetSet, TargetError> {
    TargetSet::new(
        names.iter().map(|n| n.to_string()).collect(),
        sep.to_string(),
        prefix,
    )
}

fn two() -> TargetSet {
    set(&["weather", "calendar"], "__", PrefixMode::Auto).unwrap()
}

#[test]
fn validation_names_the_bad_target() {
    assert_eq!(set(&[], "__", PrefixMode::Auto), Err(TargetError::Empty));
    let e = set(&["a", "b_c"], "__", PrefixMode::Auto).unwrap_err();
    assert_eq!(
        e,
        TargetError::Name {
            index: 1,
            name: "b_c".into()
        }
    );
    assert_eq!(
        e.to_string(),
        r#"targets[1].name "b_c": must be non-empty and made of A-Z, a-z, 0-9 and '-'"#
    );
    for bad in ["", "a b", "a.b", "ü", "a/b"] {
        assert!(matches!(
            set(&[bad], "__", PrefixMode::Auto),
            Err(TargetError::Name { index: 0, .. })
        ));
    }
    assert_eq!(
        set(&["a", "b", "a"], "__", PrefixMode::Auto),
        Err(TargetError::Duplicate {
            index: 2,
            first: 0,
            name: "a".into()
        })
    );
    let e = set(&["ok", "cal-x"], "-", PrefixMode::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"targets[1].name "cal-x": contains the separator "-""#
    );
    for sep in ["", "/", " ", "__:", "é"] {
        assert!(matches!(
            set(&["a"], sep, PrefixMode::Auto),
            Err(TargetError::Separator { .. })
        ));
    }
    assert!(set(&["a-1", "B2"], "._-", PrefixMode::Auto).is_ok());
}

#[test]
fn single_target_is_unprefixed_unless_always() {
    let one = set(&["weather"], "__", PrefixMode::Auto).unwrap();
    assert!(!one.prefixed());
    assert_eq!(one.encode(0, "echo"), "echo");
    assert_eq!(one.decode("echo"), Some((0, "echo")));
    assert_eq!(one.decode("weather__echo"), Some((0, "weather__echo")));
    assert_eq!(one.decode(""), None);
    let always = set(&["weather"], "__", PrefixMode::Always).unwrap();
    assert!(always.prefixed());
    assert_eq!(always.encode(0, "echo"), "weather__echo");
    assert_eq!(always.decode("weather__echo"), Some((0, "echo")));
    assert_eq!(always.decode("echo"), None);
}

#[test]
fn encode_and_decode_round_trip() {
    let t = two();
    assert!(t.prefixed());
    assert_eq!(t.encode(1, "echo"), "calendar__echo");
    assert_eq!(t.decode("calendar__echo"), Some((1, "echo")));
    for (i, tool) in [(0, "echo"), (1, "a.b-c_d"), (0, "x__y"), (1, "__lead")] {
        assert_eq!(t.decode(&t.encode(i, tool)), Some((i, tool)));
    }
}

#[test]
fn decode_splits_at_the_first_separator() {
    let t = set(&["a", "b"], "__", PrefixMode::Auto).unwrap();
    assert_eq!(t.decode("a__b__c"), Some((0, "b__c")));
    assert_eq!(t.decode("b____"), Some((1, "__")));
}

#[test]
fn decode_rejects_unknown_targets_and_empty_tools() {
    let t = two();
    for name in [
        "nope__echo",
        "echo",
        "weather__",
        "__echo",
        "",
        "Weather__echo",
    ] {
        assert_eq!(t.decode(name), None, "{name:?}");
    }
}

#[test]
fn fnv1a_matches_the_reference_vectors() {
    let hash = |b: &[u8]| {
        let mut h = Fnv1a::new();
        h.write(b);
        h.0
    };
    assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn fingerprint_is_stable_and_tells_sets_apart() {
    let fp = two().fingerprint();
    assert_eq!(fp, two().fingerprint());
    // Fixed across processes and builds: a change here invalidates every session.
    assert_eq!(fp, 0x5d45_b9d0_8b15_1fcf);
    let others = [
        set(&["calendar", "weather"], "__", PrefixMode::Auto),
        set(&["weather", "calendar"], "--", PrefixMode::Auto),
        set(&["weather", "calendar", "x"], "__", PrefixMode::Auto),
        set(&["weathe", "rcalendar"], "__", PrefixMode::Auto),
    ];
    for other in others {
        assert_ne!(other.unwrap().fingerprint(), fp);
    }
    let auto = set(&["weather"], "__", PrefixMode::Auto).unwrap();
    let always = set(&["weather"], "__", PrefixMode::Always).unwrap();
    assert_ne!(auto.fingerprint(), always.fingerprint());
    // Always with two targets names tools as Auto does: same sessions.
    let two_always = set(&["weather", "calendar"], "__", PrefixMode::Always).unwrap();
    assert_eq!(two_always.fingerprint(), fp);
}

#[test]
fn accessors() {
    let t = two();
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
    assert_eq!(t.names(), ["weather", "calendar"]);
    assert_eq!(t.name(1), Some("calendar"));
    assert_eq!(t.name(2), None);
    assert_eq!(t.separator(), "__");
}
