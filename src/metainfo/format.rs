use std::fmt;
use std::str::FromStr;

/// Which kind of torrent: decides the info dict's keys and which hashes are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// BEP 3: SHA-1 of each piece in `pieces`.
    V1,
    /// BEP 30: one SHA-1 `root hash` over the piece hashes.
    Merkle,
    /// BEP 52: per-file SHA-256 Merkle trees, `file tree` and `piece layers`.
    V2,
    /// v1 and v2 in one info dict, pad files aligning every file on a piece.
    Hybrid,
}

impl Format {
    /// Has a v1 (SHA-1) info hash and v1 piece space.
    pub fn has_v1(self) -> bool {
        !matches!(self, Format::V2)
    }
    /// Needs SHA-1 piece hashes.
    pub fn hashes_v1_pieces(self) -> bool {
        matches!(self, Format::V1 | Format::Merkle | Format::Hybrid)
    }
    /// Needs SHA-256 block trees.
    pub fn has_v2(self) -> bool {
        matches!(self, Format::V2 | Format::Hybrid)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::V1 => "v1",
            Format::Merkle => "merkle",
            Format::V2 => "v2",
            Format::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Through `FromStr`, so a configuration's `format = "v3"` is told the formats there are.
impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(Format::V1),
            "merkle" => Ok(Format::Merkle),
            "v2" => Ok(Format::V2),
            "hybrid" => Ok(Format::Hybrid),
            other => Err(format!(
                "unknown format `{other}` (expected v1, merkle, v2 or hybrid)"
            )),
        }
    }
}
