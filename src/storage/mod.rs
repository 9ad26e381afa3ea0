//! Reading piece and block bytes of published files. The core is `Layout`: where each file sits
//! in a torrent's piece space, and which file spans a byte range covers.

mod layout;

pub use layout::{Layout, LayoutFile, Span};
