//! Valid entities of every kind, with correct checksums, in the formats people write.

use super::XorShift;

pub(super) const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
];
pub(super) const LAST: &[&str] = &[
    "smith", "jones", "garcia", "miller", "davis", "martinez", "lopez", "wilson", "anderson",
    "thomas", "moore", "martin", "lee", "perez", "white", "harris", "clark", "lewis", "young",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "acme.io",
    "corp.co.uk",
    "uni-hamburg.de",
    "shop.example",
    "bigcorp.net",
    "startup.ai",
    "help-desk.example.com",
    "xn--bcher-kva.example",
];
pub(super) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A valid entity of `kind` (a built-in name), and where in the returned text the entity
/// starts (after context words such as `SSN: `).
pub(super) fn generate(kind: &str, rng: &mut XorShift) -> (String, usize) {
    let text = match kind {
        "ssn" => return ssn(rng),
        "email" => email(rng),
        "phone" => phone(rng),
        "credit_card" => card(rng, true),
        "iban" => iban(rng, true),
        "ipv4" => format!(
            "{}.{}.{}.{}",
            rng.range(1, 255),
            rng.below(256),
            rng.below(256),
            rng.range(1, 254)
        ),
        "ipv6" => ipv6(rng),
        "aws_access_key_id" => {
            format!(
                "{}{}",
                rng.pick(&["AKIA", "ASIA"]),
                rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            )
        }
        "github_token" => {
            if rng.chance(70) {
                format!(
                    "gh{}_{}",
                    *rng.pick(b"pousr") as char,
                    rng.string(ALNUM, 36)
                )
            } else {
                format!(
                    "github_pat_{}_{}",
                    rng.string(ALNUM, 22),
                    rng.string(ALNUM, 59)
                )
            }
        }
        "gitlab_token" => format!("glpat-{}", rng.string(&B64URL[..62], 20)),
        "slack_token" => format!(
            "xox{}-{}-{}-{}",
            *rng.pick(b"bpar") as char,
            rng.digits(11),
            rng.digits(13),
            random_mixed(rng, ALNUM, 24)
        ),
        "openai_api_key" => {
            if rng.chance(60) {
                format!("sk-proj-{}", random_mixed(rng, B64URL, 64))
            } else {
                format!("sk-{}", random_mixed(rng, ALNUM, 48))
            }
        }
        "anthropic_api_key" => format!("sk-ant-api03-{}AA", random_mixed(rng, B64URL, 93)),
        "jwt" => jwt(rng),
        "private_key" => private_key(rng),
        other => panic!("unknown kind {other}"),
    };
    (text, 0)
}

/// Random characters with at least one capital, one small letter and one digit.
fn random_mixed(rng: &mut XorShift, alphabet: &[u8], n: usize) -> String {
    let mut s = rng.string(alphabet, n - 3).into_bytes();
    for class in [
        &b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[..],
        b"abcdefghijklmnopqrstuvwxyz",
        b"0123456789",
    ] {
        let at = rng.below(s.len() as u64 + 1) as usize;
        s.insert(at, *rng.pick(class));
    }
    String::from_utf8(s).expect("ASCII")
}

fn email(rng: &mut XorShift) -> String {
    let (f, l) = (*rng.pick(FIRST), *rng.pick(LAST));
    let local = match rng.below(5) {
        0 => format!("{f}.{l}"),
        1 => format!("{f}_{l}{}", rng.below(100)),
        2 => format!("{f}+{}", rng.pick(&["news", "billing", "test"])),
        3 => format!("{}{l}", &f[..1]),
        _ => f.to_uppercase(),
    };
    format!("{local}@{}", rng.pick(DOMAINS))
}

fn nanp_digits(rng: &mut XorShift) -> (String, String, String) {
    let area = loop {
        let a = rng.range(200, 999);
        if a % 100 != 11 {
            break a;
        }
    };
    (
        area.to_string(),
        rng.range(200, 999).to_string(),
        rng.digits(4),
    )
}

fn phone(rng: &mut XorShift) -> String {
    let (a, e, l) = nanp_digits(rng);
    match rng.below(12) {
        0 => format!("({a}) {e}-{l}"),
        1 => format!("{a}-{e}-{l}"),
        2 => format!("{a}.{e}.{l}"),
        3 => format!("+1 {a} {e} {l}"),
        4 => format!("1-{a}-{e}-{l}"),
        5 => format!("+1{a}{e}{l}"),
        6 => format!("+1 ({a}) {e}-{l}"),
        7 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
        8 => {
            let n = rng.range(6, 8) as usize;
            format!("+49 30 {}", rng.digits(n))
        }
        9 => format!(
            "+33 {} {} {} {} {}",
            rng.range(1, 9),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        10 => format!("+81 3 {} {}", rng.digits(4), rng.digits(4)),
        _ => format!("{a} {e} {l}"),
    }
}

fn ssn(rng: &mut XorShift) -> (String, usize) {
    let area = loop {
        let a = rng.range(1, 899);
        if a != 666 {
            break a;
        }
    };
    let (g, s) = (rng.range(1, 99), rng.range(1, 9999));
    match rng.below(5) {
        // Unformatted only with context; the label starts after it.
        0 => (format!("SSN: {area:03}{g:02}{s:04}"), 5),
        1 => (format!("{area:03} {g:02} {s:04}"), 0),
        _ => (format!("{area:03}-{g:02}-{s:04}"), 0),
    }
}

/// Luhn check digit for a payload (digits as values).
pub(super) fn luhn_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = d as u32;
            if k % 2 == 0 {
                let y = d * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A card number of a random brand, Luhn-valid if `valid`, formatted as people do.
pub(super) fn card(rng: &mut XorShift, valid: bool) -> String {
    let (prefix, len): (String, usize) = match rng.below(8) {
        0 => ("4".into(), 16),
        1 => ("4".into(), 13),
        2 => (rng.range(51, 55).to_string(), 16),
        3 => (rng.range(2221, 2720).to_string(), 16),
        4 => (rng.pick(&["34", "37"]).to_string(), 15),
        5 => (rng.pick(&["6011", "65"]).to_string(), 16),
        6 => (rng.range(3528, 3589).to_string(), 16),
        _ => (rng.pick(&["36", "300", "305"]).to_string(), 14),
    };
    let mut d: Vec<u8> = prefix.bytes().map(|c| c - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.below(10) as u8);
    }
    let check = luhn_digit(&d);
    d.push(if valid {
        check
    } else {
        (check + 1 + rng.below(9) as u8) % 10
    });
    let s: String = d.iter().map(|x| (b'0' + x) as char).collect();
    let sep = *rng.pick(&[" ", "-", ""]);
    match len {
        16 => [&s[..4], &s[4..8], &s[8..12], &s[12..]].join(sep),
        15 => [&s[..4], &s[4..10], &s[10..]].join(sep),
        14 => [&s[..4], &s[4..10], &s[10..]].join(sep),
        _ => s,
    }
}

const IBAN_COUNTRIES: &[(&str, usize, usize)] = &[
    // country, length, how many leading BBAN characters are capitals (bank code)
    ("DE", 22, 0),
    ("GB", 22, 4),
    ("FR", 27, 0),
    ("NL", 18, 4),
    ("ES", 24, 0),
    ("IT", 27, 1),
    ("BE", 16, 0),
    ("CH", 21, 0),
    ("NO", 15, 0),
    ("PL", 28, 0),
];

/// An IBAN with correct (or, if `!valid`, wrong) check digits, compact or grouped.
pub(super) fn iban(rng: &mut XorShift, valid: bool) -> String {
    let &(cc, len, letters) = rng.pick(IBAN_COUNTRIES);
    let bban = format!(
        "{}{}",
        rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", letters),
        rng.digits(len - 4 - letters)
    );
    let check = 98 - mod97(&format!("{bban}{cc}00"));
    let check = if valid {
        check
    } else {
        (check + 1 + rng.below(90) as u32) % 97 + 2
    };
    let compact = format!("{cc}{check:02}{bban}");
    if rng.chance(50) {
        compact
    } else {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn mod97(s: &str) -> u32 {
    s.bytes().fold(0u32, |rem, c| match c {
        b'0'..=b'9' => (rem * 10 + (c - b'0') as u32) % 97,
        _ => (rem * 100 + (c - b'A' + 10) as u32) % 97,
    })
}

fn ipv6(rng: &mut XorShift) -> String {
    let groups: Vec<String> = (0..8)
        .map(|_| format!("{:x}", rng.below(0x10000)))
        .collect();
    match rng.below(4) {
        0 => groups.join(":"),
        1 => format!("2001:db8::{}", groups[7]),
        2 => format!("fe80::{}:{}", groups[6], groups[7]),
        _ => format!("{}:{}::{}", groups[0], groups[1], groups[7]),
    }
}

pub(super) fn base64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..chunk.len() + 1 {
            out.push(B64URL[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

fn jwt(rng: &mut XorShift) -> String {
    let header = match rng.below(3) {
        0 => r#"{"alg":"HS256","typ":"JWT"}"#.to_string(),
        1 => format!(r#"{{"alg":"RS256","kid":"{}"}}"#, rng.string(ALNUM, 8)),
        _ => r#"{ "alg": "ES256" }"#.to_string(),
    };
    let payload = format!(
        r#"{{"sub":"{}","name":"{} {}","iat":{}}}"#,
        rng.digits(10),
        rng.pick(FIRST),
        rng.pick(LAST),
        rng.range(1_500_000_000, 1_800_000_000)
    );
    let sig = rng.string(B64URL, 43);
    format!(
        "{}.{}.{sig}",
        base64url(header.as_bytes()),
        base64url(payload.as_bytes())
    )
}

fn private_key(rng: &mut XorShift) -> String {
    let label = rng.pick(&[
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ]);
    let lines = rng.range(3, 12);
    let body: Vec<String> = (0..lines).map(|_| rng.string(B64, 64)).collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----",
        body.join("\n")
    )
}
