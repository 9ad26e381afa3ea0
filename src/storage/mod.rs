//! Reading piece and block bytes of published files. The core is `Layout`: where each file sits
//! in a torrent's piece space, and which file spans a byte range covers. `Root` is the one way
//! content files are opened (beneath the content folder, no links, identity checked on the
//! descriptor), `FilePool` bounds the descriptors kept open, and `Content` is the shell that reads
//! spans through them and refuses files changed since they were hashed.

mod content;
mod layout;
mod open;
mod pool;

pub use content::{Content, ContentFile, StorageError};
pub use layout::{Layout, LayoutFile, Span};
pub use open::{stat_mtime, FileId, Root};
pub use pool::{open_files_limit, FileKey, FilePool};
