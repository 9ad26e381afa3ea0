//! Piece → file-span mapping.
//!
//! A torrent's pieces address one byte space in which its files are laid end to end. BEP 47 pad
//! files (hybrid torrents) occupy real space filled with zeros; v2-only torrents align every file
//! on a piece boundary without listing pad files (BEP 52), so their gaps belong to no file.

/// One file's place in the piece space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutFile {
    pub offset: u64,
    pub length: u64,
    /// A BEP 47 pad file: zeros, never on disk.
    pub pad: bool,
}

/// A part of a byte range that falls in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub file: usize,
    /// Offset in the file.
    pub offset: u64,
    pub length: u64,
    pub pad: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub piece_length: u64,
    pub files: Vec<LayoutFile>,
    /// End of the last file: the piece space's length.
    pub total: u64,
}

impl Layout {
    /// Files laid end to end (v1, Merkle, and hybrid with its pad files listed).
    /// `files` is (length, is_pad) in torrent order.
    pub fn contiguous(piece_length: u64, files: impl IntoIterator<Item = (u64, bool)>) -> Self {
        let mut offset = 0;
        let files = files
            .into_iter()
            .map(|(length, pad)| {
                let f = LayoutFile {
                    offset,
                    length,
                    pad,
                };
                offset += length;
                f
            })
            .collect();
        Layout {
            piece_length,
            files,
            total: offset,
        }
    }

    /// v2-only: every non-empty file starts on a piece boundary.
    pub fn aligned(piece_length: u64, lengths: impl IntoIterator<Item = u64>) -> Self {
        let mut offset = 0u64;
        let mut total = 0;
        let files = lengths
            .into_iter()
            .map(|length| {
                if length > 0 {
                    offset = offset.next_multiple_of(piece_length);
                }
                let f = LayoutFile {
                    offset,
                    length,
                    pad: false,
                };
                offset += length;
                total = offset;
                f
            })
            .collect();
        Layout {
            piece_length,
            files,
            total,
        }
    }

    pub fn piece_count(&self) -> u64 {
        self.total.div_ceil(self.piece_length)
    }

    /// Byte range of a piece in the piece space (the last piece may be short).
    pub fn piece_range(&self, piece: u64) -> (u64, u64) {
        let start = piece * self.piece_length;
        let end = (start + self.piece_length).min(self.total);
        (start, end.max(start))
    }

    /// The file spans that cover `[start, start + length)`, in order. Gaps (v2 alignment) and
    /// bytes past the end are not covered by any span.
    pub fn spans(&self, start: u64, length: u64) -> Vec<Span> {
        let end = start.saturating_add(length).min(self.total);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        // First file whose end is past `start`.
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        for (i, f) in self.files.iter().enumerate().skip(first) {
            if f.offset >= end {
                break;
            }
            if f.length == 0 {
                continue;
            }
            let from = start.max(f.offset);
            let to = end.min(f.offset + f.length);
            if from < to {
                out.push(Span {
                    file: i,
                    offset: from - f.offset,
                    length: to - from,
                    pad: f.pad,
                });
            }
        }
        out
    }

    /// The files (not pads) a piece touches.
    pub fn files_of_piece(&self, piece: u64) -> Vec<usize> {
        let (start, end) = self.piece_range(piece);
        self.spans(start, end - start)
            .into_iter()
            .filter(|s| !s.pad)
            .map(|s| s.file)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cross_file_boundaries() {
        // Files of 10, 0, 25 and 5 bytes in pieces of 16.
        let l = Layout::contiguous(16, [(10, false), (0, false), (25, false), (5, false)]);
        assert_eq!(l.total, 40);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(
            l.spans(0, 16),
            vec![
                Span {
                    file: 0,
                    offset: 0,
                    length: 10,
                    pad: false
                },
                Span {
                    file: 2,
                    offset: 0,
                    length: 6,
                    pad: false
                },
            ]
        );
        assert_eq!(
            l.spans(16, 16),
            vec![Span {
                file: 2,
                offset: 6,
                length: 16,
                pad: false
            }]
        );
        assert_eq!(l.piece_range(2), (32, 40));
        assert_eq!(
            l.spans(32, 16),
            vec![
                Span {
                    file: 2,
                    offset: 22,
                    length: 3,
                    pad: false
                },
                Span {
                    file: 3,
                    offset: 0,
                    length: 5,
                    pad: false
                },
            ]
        );
        assert_eq!(l.files_of_piece(0), vec![0, 2]);
        assert!(l.spans(40, 16).is_empty());
        assert!(l.spans(u64::MAX - 1, 16).is_empty());
    }

    #[test]
    fn pad_files_and_v2_alignment() {
        let hybrid = Layout::contiguous(16, [(10, false), (6, true), (20, false)]);
        assert_eq!(hybrid.files[2].offset, 16);
        assert_eq!(hybrid.files_of_piece(0), vec![0]);
        assert!(hybrid.spans(0, 16)[1].pad);

        let v2 = Layout::aligned(16, [10, 0, 20, 3]);
        let offsets: Vec<u64> = v2.files.iter().map(|f| f.offset).collect();
        assert_eq!(offsets, vec![0, 10, 16, 48]);
        assert_eq!(v2.total, 51);
        assert_eq!(v2.piece_count(), 4);
        assert_eq!(
            v2.spans(0, 16),
            vec![Span {
                file: 0,
                offset: 0,
                length: 10,
                pad: false
            }]
        );
    }
}
