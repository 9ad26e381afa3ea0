//! One catalog job: look at an entry, and hash it (or rebuild it from a renamed entry's hashes)
//! if it changed. Runs on a blocking thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::store::now_secs;
use super::{
    publishable_name, shared, Catalog, Fingerprint, JobResult, Kept, Published, Retired, Source,
};
use crate::hash::walk::{self, Content};
use crate::hash::{self, CreateOptions};
use crate::metainfo::{piece_size, plan_files, ContentHashes, Format, Metainfo, NewTorrent};
use crate::storage::{self, ContentFile, StorageError};

impl Catalog {
    /// Looks at one entry and hashes it if it changed (runs on a blocking thread).
    pub(super) fn job(&self, name: &str) -> JobResult {
        let gone = || {
            self.keep_for_rename(name);
            JobResult::Gone
        };
        if !publishable_name(name) {
            return gone();
        }
        // A link is followed only beneath the content folder, and only when asked.
        let path = match self.source(name) {
            Source::At(path) => path,
            Source::Gone | Source::Skipped => return gone(),
        };
        let content = match self.collect(name, &path) {
            Ok(c) => c,
            Err(walk::WalkError::NotFound(_)) => return gone(),
            Err(e) => return JobResult::Failed(e.to_string()),
        };
        let fp = Fingerprint::of(&content);
        let encoded = fp.encoded();
        if self.state().published.get(name) == Some(&encoded.digest) {
            return JobResult::Unchanged;
        }
        if content.total() == 0 {
            return JobResult::Failed("no content yet (zero bytes)".into());
        }
        // A renamed entry: same files, same options — rebuild under the new name from its hashes.
        let content_key = fp.content_key();
        let retired = self.state().retired.get(&content_key).cloned();
        // Cluster mode: another node may have hashed it (or be hashing it) already. Keyed by
        // the whole fingerprint (names included: the content key leaves a single file's name
        // out, and two files of one size and time would share it) and the options.
        let shared = self.shared.get().map(|s| {
            let key = format!("{}/{}", hex::encode(encoded.digest), self.options.key());
            (s.clone(), key)
        });
        let publish = |p, hashed| JobResult::Publish {
            published: Box::new(p),
            fingerprint: encoded,
            content_key,
            hashed,
        };
        if let Some((meta, kept)) = retired.and_then(|r| self.rebuild(&content, &r)) {
            return match self.published(name, &content, meta, kept) {
                Ok(p) => publish(p, false),
                Err(e) => JobResult::Failed(e.to_string()),
            };
        }

        // Kept only while this node holds the claim to hash it for the others: a node whose
        // copy differs hashes it for itself and records nothing over the first node's record.
        let mut shared = shared;
        if let Some((share, key)) = &shared {
            if let Some(record) = share.find_or_claim(key) {
                match self.rebuild_shared(name, &content, &record) {
                    Ok(p) => {
                        tracing::info!("`{name}`: hashes reused from another node");
                        return publish(p, false);
                    }
                    Err(why) => tracing::warn!(
                        "`{name}`: another node's hashes not used ({why}): hashing it here"
                    ),
                }
                shared = None;
            }
        }

        // A version hashed again to the same torrent (its files touched, not changed) keeps its
        // date: the page and the feed would otherwise show it as new.
        let before = self
            .registry
            .published(name)
            .map(|p| (p.meta.info_hash, p.published_at));
        let done = Arc::new(AtomicU64::new(0));
        self.registry
            .set_hashing(name, content.total(), done.clone());
        tracing::info!("hashing `{name}` ({} bytes)", content.total());
        let started = Instant::now();
        match hash::create_with_digests(&content, &self.root, &self.create_options(), &done, None) {
            Ok(hash::Created {
                meta,
                pieces,
                file_sha256,
            }) => {
                self.registry
                    .hashed_bytes
                    .fetch_add(content.total(), Ordering::Relaxed);
                tracing::info!(
                    "hashed `{name}` in {:.2} s",
                    started.elapsed().as_secs_f64()
                );
                let merkle = (meta.format == Format::Merkle).then_some(pieces);
                if let Some((share, key)) = &shared {
                    let record = shared::Record::new(&meta, merkle.as_deref(), &file_sha256);
                    share.record(key, &record.encode());
                }
                let published_at = match before {
                    Some((hash, at)) if hash == meta.info_hash => at,
                    _ => now_secs(),
                };
                let kept = Kept {
                    merkle_pieces: merkle,
                    file_sha256: Some(file_sha256),
                    published_at,
                };
                match self.published(name, &content, meta, kept) {
                    Ok(p) => publish(p, true),
                    Err(e) => JobResult::Failed(e.to_string()),
                }
            }
            Err(e) => {
                if let Some((share, key)) = &shared {
                    share.release(key);
                }
                JobResult::Failed(e.to_string())
            }
        }
    }

    /// The torrent another node recorded for this content, rebuilt under this entry's name
    /// and spot-checked against the files here.
    fn rebuild_shared(
        &self,
        name: &str,
        content: &Content,
        record: &[u8],
    ) -> Result<Published, String> {
        let (torrent, merkle_pieces, file_sha256) =
            shared::Record::decode(record).ok_or("a record that does not decode")?;
        let retired = Retired {
            torrent,
            merkle_pieces,
            file_sha256: Some(file_sha256),
            at: Instant::now(),
        };
        let (meta, kept) = self
            .rebuild(content, &retired)
            .ok_or("made with other options, or of other files")?;
        let merkle = kept.merkle_pieces.clone();
        let p = self
            .published(name, content, meta, kept)
            .map_err(|e| e.to_string())?;
        shared::spot_check(&p.meta, merkle.as_deref(), &p.content)?;
        Ok(p)
    }

    fn create_options(&self) -> CreateOptions {
        CreateOptions {
            piece_length: (self.options.piece_size != 0).then_some(self.options.piece_size),
            threads: if self.options.hash_threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.options.hash_threads
            },
            private: self.options.private,
            created_by: Some(format!("bitseed {}", env!("CARGO_PKG_VERSION"))),
            ..CreateOptions::new(self.options.format)
        }
    }

    /// The retired torrent's hashes under this entry's name, if it was made the same way (with
    /// a Merkle torrent's piece hashes, and the files' SHA-256, passed on). A torrent retired
    /// without its files' SHA-256 is hashed again rather than published without them.
    fn rebuild(&self, content: &Content, retired: &Retired) -> Option<(Metainfo, Kept)> {
        let digests = retired
            .file_sha256
            .clone()
            .filter(|d| d.len() == content.files.len())?;
        let old = Metainfo::from_bytes(&retired.torrent).ok()?;
        let wanted = if self.options.piece_size == 0 {
            piece_size::auto(content.total())
        } else {
            self.options.piece_size
        };
        if old.format != self.options.format
            || old.private != self.options.private
            || old.piece_length != wanted
        {
            return None;
        }
        let merkle = retired
            .merkle_pieces
            .clone()
            .filter(|_| old.format == Format::Merkle);
        let hashes = match ContentHashes::from_metainfo(&old) {
            Some(h) => h,
            // A Merkle torrent holds only its root: its pieces come from the store.
            None => ContentHashes {
                pieces: merkle.clone()?,
                v2_files: Vec::new(),
            },
        };
        let listed: Vec<(Vec<String>, u64)> = content
            .files
            .iter()
            .map(|f| (f.path.clone(), f.length))
            .collect();
        NewTorrent {
            name: content.name.clone(),
            format: old.format,
            piece_length: old.piece_length,
            single_file: content.single_file,
            files: plan_files(&listed, old.format, old.piece_length),
            hashes,
            private: old.private,
            source: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: old.created_by.clone(),
            creation_date: None,
        }
        .build()
        .ok()
        .filter(|m| m.root_hash == old.root_hash)
        .map(|m| {
            let kept = Kept {
                merkle_pieces: merkle,
                file_sha256: Some(digests),
                published_at: now_secs(),
            };
            (m, kept)
        })
    }

    /// The published entry: its torrent and its files, read beneath the content folder and
    /// checked against the identities the walk listed (and the hasher verified).
    pub(super) fn published(
        &self,
        name: &str,
        content: &Content,
        meta: Metainfo,
        kept: Kept,
    ) -> Result<Published, StorageError> {
        let Kept {
            merkle_pieces,
            file_sha256,
            published_at,
        } = kept;
        let mut real = content.files.iter();
        let files = meta
            .files
            .iter()
            .map(|f| {
                if f.pad {
                    return None;
                }
                real.next().map(|s| ContentFile {
                    path: s
                        .disk
                        .strip_prefix(&self.content)
                        .unwrap_or(&s.disk)
                        .to_owned(),
                    id: s.id(),
                })
            })
            .collect();
        let files = storage::Content::new(meta.layout(), self.root.clone(), files)?;
        let digests = std::sync::OnceLock::new();
        if let Some(d) = file_sha256.filter(|d| d.len() == content.files.len()) {
            let _ = digests.set(d);
        }
        Ok(Published {
            name: name.to_owned(),
            disk: self.content.join(name),
            meta: Arc::new(meta),
            content: Arc::new(files),
            offload: Default::default(),
            merkle_pieces: merkle_pieces.map(Arc::new),
            file_sha256: digests,
            published_at,
        })
    }
}
