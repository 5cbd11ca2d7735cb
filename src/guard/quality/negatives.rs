//! Look-alikes: text that resembles an entity but is not one under the documented rules.

use super::entities::{self, ALNUM, FIRST};
use super::XorShift;

const HEX: &[u8] = b"0123456789abcdef";

/// One look-alike, of a random sort.
pub(super) fn generate(rng: &mut XorShift) -> String {
    let f = *rng.pick(FIRST);
    let d = |rng: &mut XorShift, n| rng.digits(n);
    match rng.below(32) {
        0 | 1 => entities::card(rng, false),
        2 => {
            let (a, g, s) = match rng.below(5) {
                0 => (0, rng.range(1, 99), rng.range(1, 9999)),
                1 => (666, rng.range(1, 99), rng.range(1, 9999)),
                2 => (rng.range(900, 999), rng.range(1, 99), rng.range(1, 9999)),
                3 => (rng.range(1, 665), 0, rng.range(1, 9999)),
                _ => (rng.range(1, 665), rng.range(1, 99), 0),
            };
            format!("SSN {a:03}-{g:02}-{s:04}")
        }
        3 => format!("v{}.{}.{}", rng.below(20), rng.below(30), rng.below(100)),
        4 => format!(
            "release {}.{}.{}-rc{}",
            rng.below(20),
            rng.below(30),
            rng.below(100),
            rng.below(9)
        ),
        5 => format!("2024-{:02}-{:02}", rng.range(1, 12), rng.range(1, 28)),
        6 => format!(
            "{:02}/{:02}/20{}",
            rng.range(1, 28),
            rng.range(1, 12),
            d(rng, 2)
        ),
        7 => format!(
            "2024-06-15 {:02}:{:02}:{:02}",
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        8 => format!(
            "{:02}:{:02}:{:02}.{}",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            d(rng, 3)
        ),
        9 => format!("ORD-{}-{}-{}", d(rng, 4), d(rng, 4), d(rng, 4)),
        10 => format!("order #{}", d(rng, 10)),
        11 => format!("INV-{}-{}-{}", d(rng, 3), d(rng, 3), d(rng, 4)),
        12 => {
            let n = rng.range(9, 12) as usize;
            format!("account {}", d(rng, n))
        }
        13 => entities::iban(rng, false),
        14 => format!(
            "{}.{}.{}.{}",
            rng.range(256, 999),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        15 => format!(
            "{}.{}.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        16 => rng
            .pick(&[
                "sk-learn",
                "sk-1",
                "risk-free",
                "sk-test-key",
                "sk-this-is-not-a-real-key-2024",
                "task-based",
            ])
            .to_string(),
        17 => {
            let n = rng.range(4, 12) as usize;
            format!("AKIA{}", rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", n))
        }
        18 => match rng.below(4) {
            0 => format!("ghp_{}", rng.string(ALNUM, 10)),
            1 => "github_pat_short".to_string(),
            2 => format!("glpat-{}", rng.string(ALNUM, 8)),
            _ => format!("xoxo-hugs-{}", d(rng, 3)),
        },
        19 => format!("https://{f}@intranet.example.com/dashboard"),
        20 => rng
            .pick(&[
                "ssh://git@github.com/org/repo.git",
                "git@github.com:org/repo.git",
                "root@localhost",
                "https://user:hunter2@db.example.com:5432/app",
            ])
            .to_string(),
        21 => format!("@{f} and {f}@ and {f} at example dot com"),
        22 => format!("{}-{}-{}", d(rng, 2), d(rng, 3), d(rng, 4)),
        23 => format!("{}-{}", rng.range(200, 999), d(rng, 4)),
        24 => rng
            .pick(&[
                "3.14159",
                "1,234,567.89",
                "$4,111.11",
                "x = 10:30",
                "ratio 16:9",
            ])
            .to_string(),
        25 => rng
            .pick(&[
                "std::vec::Vec",
                "00:1A:2B:3C:4D:5E",
                "Foo::bar()",
                "de::Error",
                "12:30",
            ])
            .to_string(),
        26 => rng
            .pick(&[
                "dGhpcyBpcyBub3QgYSBqd3Q=",
                "eyJub3QiOiJqd3QifQ.eyJhIjoxfQ.c2ln",
                "hey.JSON.file",
            ])
            .to_string(),
        27 => format!(
            "-----BEGIN CERTIFICATE-----\n{}\n{}\n-----END CERTIFICATE-----",
            rng.string(ALNUM, 64),
            rng.string(ALNUM, 40)
        ),
        28 => format!(
            "commit {} sha256 {}",
            rng.string(HEX, 7),
            rng.string(HEX, 64)
        ),
        _ => format!(
            "{}-{}-{}-{}-{}",
            rng.string(HEX, 8),
            rng.string(HEX, 4),
            rng.string(HEX, 4),
            rng.string(HEX, 4),
            rng.string(HEX, 12)
        ),
    }
}
