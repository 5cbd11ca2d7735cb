//! The target registry of a multiplexed MCP backend: the targets' names in merge order,
//! and the tool-name prefix that tells the client which target a tool lives on
//! (`weather__echo` is tool `echo` on target `weather`).
//!
//! Target names are `[A-Za-z0-9-]+` and never contain the separator, so a prefixed name
//! splits at the first separator: what follows is the upstream's tool name as it is,
//! separators included. The separator is made of characters legal in tool names
//! (`[A-Za-z0-9_.-]`), so prefixed names stay legal.

/// When tool names carry their target's prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrefixMode {
    /// Only when there is more than one target.
    #[default]
    Auto,
    /// Always, even for a single target.
    Always,
}

/// A target set that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("no targets")]
    Empty,
    #[error(
        "separator {separator:?}: must be non-empty and made of A-Z, a-z, 0-9, '_', '.' and '-'"
    )]
    Separator { separator: String },
    #[error("targets[{index}].name {name:?}: must be non-empty and made of A-Z, a-z, 0-9 and '-'")]
    Name { index: usize, name: String },
    #[error("targets[{index}].name {name:?}: the same as targets[{first}].name")]
    Duplicate {
        index: usize,
        first: usize,
        name: String,
    },
    #[error("targets[{index}].name {name:?}: contains the separator {separator:?}")]
    ContainsSeparator {
        index: usize,
        name: String,
        separator: String,
    },
}

/// The targets of one multiplexed backend, in merge order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSet {
    names: Vec<String>,
    separator: String,
    prefix: PrefixMode,
}

impl TargetSet {
    /// Checks and keeps the names (in merge order), the separator and the prefix mode.
    pub fn new(
        names: Vec<String>,
        separator: String,
        prefix: PrefixMode,
    ) -> Result<Self, TargetError> {
        let separator_ok = !separator.is_empty()
            && separator
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !separator_ok {
            return Err(TargetError::Separator { separator });
        }
        if names.is_empty() {
            return Err(TargetError::Empty);
        }
        for (index, name) in names.iter().enumerate() {
            let legal =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !legal {
                let name = name.clone();
                return Err(TargetError::Name { index, name });
            }
            if let Some(first) = names[..index].iter().position(|n| n == name) {
                let name = name.clone();
                return Err(TargetError::Duplicate { index, first, name });
            }
            if name.contains(separator.as_str()) {
                let (name, separator) = (name.clone(), separator.clone());
                return Err(TargetError::ContainsSeparator {
                    index,
                    name,
                    separator,
                });
            }
        }
        Ok(TargetSet {
            names,
            separator,
            prefix,
        })
    }

    /// The targets' names, in merge order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of target `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// The number of targets (at least one).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never: a target set has at least one target.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The separator between a target's name and a tool's.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// Whether tool names carry their target's prefix.
    pub fn prefixed(&self) -> bool {
        match self.prefix {
            PrefixMode::Always => true,
            PrefixMode::Auto => self.names.len() > 1,
        }
    }

    /// The name the client sees for tool `tool` of target `index`.
    ///
    /// # Panics
    /// If `index` is not a target's.
    pub fn encode(&self, index: usize, tool: &str) -> String {
        let target = &self.names[index];
        if !self.prefixed() {
            return tool.to_string();
        }
        let mut name = String::with_capacity(target.len() + self.separator.len() + tool.len());
        name.push_str(target);
        name.push_str(&self.separator);
        name.push_str(tool);
        name
    }

    /// The target and upstream tool name a client's tool name stands for; `None` when it
    /// names no target or no tool.
    pub fn decode<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if !self.prefixed() {
            return (!name.is_empty()).then_some((0, name));
        }
        let (target, tool) = name.split_once(self.separator.as_str())?;
        if tool.is_empty() {
            return None;
        }
        let index = self.names.iter().position(|n| n == target)?;
        Some((index, tool))
    }

    /// A hash of the names, their order, the separator and whether names are prefixed:
    /// the same in every process and build (FNV-1a), so a session sealed for another
    /// target set is told apart. Target URLs are not part of it; see `fingerprint_with`.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint_with(&[])
    }

    /// [`Self::fingerprint`] that also covers `extra` (the targets' URLs), so sessions
    /// made for a target at another address do not open.
    pub fn fingerprint_with(&self, extra: &[&str]) -> u64 {
        let mut h = Fnv1a::new();
        h.write(b"tollgate/mcp-targets/v1");
        h.write(&[0xff, u8::from(self.prefixed())]);
        h.write(self.separator.as_bytes());
        for name in &self.names {
            // 0xff is never in UTF-8 text, so ["ab", "c"] and ["a", "bc"] differ.
            h.write(&[0xff]);
            h.write(name.as_bytes());
        }
        for e in extra {
            h.write(&[0xfe]);
            h.write(e.as_bytes());
        }
        h.0
    }
}

/// 64-bit FNV-1a.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests;
