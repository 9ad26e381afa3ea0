//! Reading piece and block bytes of published files. The core is `Layout`: where each file sits
//! in a torrent's piece space, and which file spans a byte range covers; `Content` is the shell
//! that reads those spans from disk and refuses files changed since they were hashed.

mod content;
mod layout;

pub use content::{Content, Stamp, StorageError};
pub use layout::{Layout, LayoutFile, Span};
