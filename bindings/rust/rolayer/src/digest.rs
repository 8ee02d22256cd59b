// SPDX-License-Identifier: Apache-2.0
//! Validated digests: [`Digest`], and the [`ChainId`] and [`DiffId`] newtypes over it.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A validated OCI content digest, `<algorithm>:<lowercase hex>`, with the algorithms the C
/// library accepts: `sha256` (64 hex characters), `sha384` (96) and `sha512` (128).
///
/// ```
/// let d: rolayer::Digest = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef".parse()?;
/// assert_eq!(d.algorithm(), "sha256");
/// assert!("sha256:5F70".parse::<rolayer::Digest>().is_err());
/// # Ok::<(), rolayer::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Validates `s`: [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// naming what is wrong otherwise.
    pub fn parse(s: &str) -> Result<Digest> {
        match check(s) {
            None => Ok(Digest(s.to_owned())),
            Some(why) => {
                let shown: String = s.chars().take(160).collect();
                Err(Error::invalid(format!("invalid digest {shown:?}: {why}")))
            }
        }
    }

    /// A digest from the C library, which only hands out valid ones.
    pub(crate) fn from_library(s: String) -> Digest {
        debug_assert!(
            check(&s).is_none(),
            "the library returned an invalid digest {s:?}"
        );
        Digest(s)
    }

    /// The algorithm: `sha256`, `sha384` or `sha512`.
    pub fn algorithm(&self) -> &str {
        &self.0[..self.0.find(':').unwrap_or(0)]
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        &self.0[self.0.find(':').map_or(0, |i| i + 1)..]
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole digest as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why `s` is not a valid digest, or None.
fn check(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("empty digest".into());
    }
    let Some((algo, hex)) = s.split_once(':') else {
        return Some("missing ':' between algorithm and hex".into());
    };
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            let shown: String = algo.chars().take(32).collect();
            return Some(format!("unsupported digest algorithm '{shown}'"));
        }
    };
    if hex.len() != want {
        return Some(format!(
            "a {algo} digest needs {want} hex characters, got {}",
            hex.len()
        ));
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some("digest hex must be lowercase 0-9a-f".into());
    }
    None
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Digest> {
        match check(&s) {
            None => Ok(Digest(s)),
            Some(_) => Digest::parse(&s),
        }
    }
}

impl TryFrom<&str> for Digest {
    type Error = Error;
    fn try_from(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Digest {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Digest);

        impl $name {
            /// Validates `s` as a [`Digest`].
            pub fn parse(s: &str) -> Result<$name> {
                Digest::parse(s).map($name)
            }

            pub(crate) fn from_library(s: String) -> $name {
                $name(Digest::from_library(s))
            }

            /// The digest, `algorithm:hex`.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The underlying digest.
            pub fn as_digest(&self) -> &Digest {
                &self.0
            }

            /// The underlying digest, owned.
            pub fn into_digest(self) -> Digest {
                self.0
            }
        }

        impl From<Digest> for $name {
            fn from(d: Digest) -> $name {
                $name(d)
            }
        }

        impl From<$name> for Digest {
            fn from(d: $name) -> Digest {
                d.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<$name> {
                Digest::try_from(s).map($name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<$name> {
                $name::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<Digest> for $name {
            fn as_ref(&self) -> &Digest {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl From<$name> for String {
            fn from(d: $name) -> String {
                d.0.into_string()
            }
        }
    };
}

digest_newtype! {
    /// A layer's ChainID: its DiffID for a base layer, else
    /// `sha256(parent ChainID + " " + DiffID)` (OCI image spec). Names a layer in the store.
    ChainId
}

digest_newtype! {
    /// A layer's DiffID: the sha256 of its uncompressed tar stream.
    DiffId
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

    #[test]
    fn parse_and_display() {
        let d: ChainId = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.as_digest().algorithm(), "sha256");
        assert_eq!(d.as_digest().hex().len(), 64);
        assert_eq!(format!("{d:?}"), format!("ChainId({EMPTY})"));
        let diff: DiffId = DiffId::from(d.clone().into_digest());
        assert_eq!(diff.as_str(), d.as_str());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert!(Digest::parse(&format!("sha384:{}", "a".repeat(96))).is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &EMPTY.to_uppercase().replace("SHA256", "sha256"),
            &EMPTY[..EMPTY.len() - 1],
            &format!("{EMPTY}0"),
            &format!("sha256:{}", "g".repeat(64)),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6e\0",
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert_eq!(*err.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
