//! Content-addressed storage: bytes are stored once under their SHA-256, so units that share an
//! input panel share one blob, and contributors cache it by the same name.
//!
//! Two homes, one namespace:
//! - [`BlobStore`], files on disk beside the database (`<database>.blobs/ab/abcd...`): job inputs
//!   (matmul panels, kernel inputs) over [`SMALL_BLOB_BYTES`] and assembled job outputs, which
//!   can be large. A file is written and synced under a temporary name in
//!   `<database>.blobs/partial/` and then renamed, so a blob file is always whole; it is written
//!   before the transaction that refers to it commits. A big one can be written piece by piece
//!   ([`BlobStore::writer`]), hashed as it goes, so it never has to be in memory whole.
//! - The database's `blobs` table: unit outputs, stored in the same transaction as their result;
//!   job inputs of at most [`SMALL_BLOB_BYTES`], stored in the same transaction as their job
//!   ([`StagedBlobs`]); and everything stored by relays from before the blob store.
//!
//! [`BlobStore::get`] looks on disk first and then in the table, so callers need not know which.

use crate::error::ApiError;
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where a blob being written lives until it is renamed to its hash: one directory of the
/// store, so that clearing what a crash left behind reads only this directory, not the whole
/// store.
const PARTIAL_DIR: &str = "partial";

/// Job inputs up to this size go into the database's table with their job, not into files: one
/// page. A file costs two syncs (its data, then its directory's entry) and an inode, which for
/// the 256-byte panels of small units is far more than the bytes; in the table, a job's small
/// inputs share its transaction's one sync.
pub const SMALL_BLOB_BYTES: usize = 4096;

/// Most bytes of small inputs one job puts into the database; the rest go into files. The
/// job's transaction runs on the database's one writer thread, which every result waits for, so
/// an upload of many small chunks must not hold it for long: 1 MiB is a few milliseconds.
pub const STAGED_BYTES_PER_JOB: usize = 1 << 20;

/// Job inputs of at most [`SMALL_BLOB_BYTES`], at most [`STAGED_BYTES_PER_JOB`] in all, held
/// until the job's transaction stores them ([`StagedBlobs::insert`]); each once, however many
/// units share it.
#[derive(Debug, Clone, Default)]
pub struct StagedBlobs {
    blobs: std::collections::BTreeMap<ContentHash, Vec<u8>>,
    bytes: usize,
}

impl StagedBlobs {
    /// Stores every staged blob in the database's table. Run it in the transaction that inserts
    /// the job referring to them.
    pub fn insert(&self, conn: &Connection) -> Result<(), ApiError> {
        for (hash, bytes) in &self.blobs {
            insert_hashed(conn, hash, bytes)?;
        }
        Ok(())
    }

    /// How many distinct blobs are staged.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blobs.len()
    }
}

/// Blob files on disk.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The store beside `database`: `data/glowworm.sqlite` keeps its blobs in
    /// `data/glowworm.blobs/`. The directory is created when the first blob is written.
    pub fn beside(database: &Path) -> BlobStore {
        BlobStore {
            dir: database.with_extension("blobs"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        let name = hash.to_string();
        self.dir.join(&name[..2]).join(name)
    }

    /// Stores a job input and returns its hash: one of at most [`SMALL_BLOB_BYTES`] is staged
    /// in `staged` for the job's transaction while the job's staged inputs stay within
    /// [`STAGED_BYTES_PER_JOB`]; any other is written to a file now, as [`BlobStore::put`] does.
    /// Either way its bytes are hashed once.
    pub fn stage(&self, bytes: &[u8], staged: &mut StagedBlobs) -> Result<ContentHash, ApiError> {
        let hash = ContentHash::of(bytes);
        if staged.blobs.contains_key(&hash) {
            return Ok(hash);
        }
        if bytes.len() > SMALL_BLOB_BYTES || staged.bytes + bytes.len() > STAGED_BYTES_PER_JOB {
            self.write(&hash, bytes)?;
            return Ok(hash);
        }
        staged.blobs.insert(hash, bytes.to_vec());
        staged.bytes += bytes.len();
        Ok(hash)
    }

    /// Stores `bytes` (once) and returns their hash. When it returns, the file is durable.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentHash, ApiError> {
        let hash = ContentHash::of(bytes);
        self.write(&hash, bytes)?;
        Ok(hash)
    }

    /// Writes `bytes`, whose hash is `hash`, to their file unless it exists; durable when it
    /// returns.
    fn write(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), ApiError> {
        if self.path(hash).exists() {
            return Ok(());
        }
        let mut file = self.partial_file()?;
        file.write_all(bytes)
            .map_err(|e| self.io("writing in", e))?;
        self.persist(file, hash)
    }

    /// Starts writing a blob piece by piece, for one too big to hold in memory (an assembled
    /// job output): its bytes go to a temporary file as they come and are hashed on the way;
    /// [`BlobWriter::finish`] names the file by its hash.
    pub fn writer(&self) -> Result<BlobWriter<'_>, ApiError> {
        Ok(BlobWriter {
            store: self,
            file: BufWriter::with_capacity(WRITER_BUFFER_BYTES, self.partial_file()?),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn io(&self, what: &str, e: std::io::Error) -> ApiError {
        ApiError::Storage(format!("{what} {}: {e}", self.dir.display()))
    }

    /// A new temporary file in the partial directory, deleted unless persisted.
    fn partial_file(&self) -> Result<tempfile::NamedTempFile, ApiError> {
        let partial = self.dir.join(PARTIAL_DIR);
        std::fs::create_dir_all(&partial).map_err(|e| self.io("creating", e))?;
        tempfile::NamedTempFile::new_in(&partial).map_err(|e| self.io("writing in", e))
    }

    /// Syncs the whole temporary `file` and renames it to `hash`'s path (unless that exists:
    /// the same bytes are there already), then syncs the directory, so the rename is durable
    /// when it returns.
    fn persist(&self, file: tempfile::NamedTempFile, hash: &ContentHash) -> Result<(), ApiError> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().expect("a blob path has a directory");
        file.as_file()
            .sync_all()
            .map_err(|e| self.io("syncing in", e))?;
        std::fs::create_dir_all(parent).map_err(|e| self.io("creating", e))?;
        file.persist(&path)
            .map_err(|e| self.io("naming a blob in", e.error))?;
        // The rename is durable once the directory is synced.
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| self.io("syncing", e))
    }

    /// Deletes the temporary files of writes that a crash cut short (a killed relay leaves them
    /// behind; no blob refers to them), and returns how many there were. Call it when the relay
    /// starts, before it opens the database (whose assembler writes job outputs at once) and
    /// before any upload: it would delete a write in progress.
    pub fn remove_partial_writes(&self) -> std::io::Result<usize> {
        let files = match std::fs::read_dir(self.dir.join(PARTIAL_DIR)) {
            Ok(files) => files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for file in files {
            std::fs::remove_file(file?.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The bytes stored under `hash` on disk or, failing that, in the database's table.
    pub fn get(&self, conn: &Connection, hash: &ContentHash) -> Result<Option<Vec<u8>>, ApiError> {
        match std::fs::read(self.path(hash)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => get(conn, hash),
            Err(e) => Err(ApiError::Storage(format!("reading blob {hash}: {e}"))),
        }
    }

    /// Like [`BlobStore::get`], for a blob the database refers to: missing is an internal error.
    pub fn get_required(&self, conn: &Connection, hash: &ContentHash) -> Result<Vec<u8>, ApiError> {
        self.get(conn, hash)?
            .ok_or_else(|| ApiError::Internal(format!("blob {hash} is missing")))
    }
}

/// Bytes a [`BlobWriter`] gathers before it writes them to its file.
const WRITER_BUFFER_BYTES: usize = 256 << 10;

/// A blob file being written piece by piece ([`BlobStore::writer`]). Dropped before
/// [`BlobWriter::finish`], it leaves nothing behind.
pub struct BlobWriter<'a> {
    store: &'a BlobStore,
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    bytes: u64,
}

impl BlobWriter<'_> {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| self.store.io("writing in", e))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Syncs the file and names it by the hash of everything written, which it returns. When it
    /// returns, the blob is durable, as after [`BlobStore::put`].
    pub fn finish(self) -> Result<ContentHash, ApiError> {
        let hash = ContentHash(self.hasher.finalize().into());
        let file = self
            .file
            .into_inner()
            .map_err(|e| self.store.io("writing in", e.into_error()))?;
        self.store.persist(file, &hash)?;
        Ok(hash)
    }
}

/// Stores `bytes` (once) in the database's table and returns their hash: for unit outputs,
/// inside the transaction that records their result.
pub fn store(conn: &Connection, bytes: &[u8]) -> Result<ContentHash, ApiError> {
    let hash = ContentHash::of(bytes);
    insert_hashed(conn, &hash, bytes)?;
    Ok(hash)
}

/// Inserts `bytes`, whose hash is `hash`, into the database's table unless they are there.
fn insert_hashed(conn: &Connection, hash: &ContentHash, bytes: &[u8]) -> Result<(), ApiError> {
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (hash, bytes) VALUES (?1, ?2)")?
        .execute(params![hash.to_string(), bytes])?;
    Ok(())
}

/// The bytes stored under `hash` in the database's table, if any.
pub fn get(conn: &Connection, hash: &ContentHash) -> Result<Option<Vec<u8>>, ApiError> {
    let bytes = conn
        .prepare_cached("SELECT bytes FROM blobs WHERE hash = ?1")?
        .query_row([hash.to_string()], |row| row.get(0))
        .optional()?;
    Ok(bytes)
}

/// Like [`get`], for a blob the database itself refers to: missing is an internal error.
pub fn get_required(conn: &Connection, hash: &ContentHash) -> Result<Vec<u8>, ApiError> {
    get(conn, hash)?.ok_or_else(|| ApiError::Internal(format!("blob {hash} is missing")))
}

/// Reads a hash stored as hex text in column `index`.
pub fn hash_column(row: &rusqlite::Row, index: usize) -> rusqlite::Result<ContentHash> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_partial_writes_keeps_every_blob() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = BlobStore::beside(&dir.path().join("relay.sqlite"));
        assert_eq!(store.remove_partial_writes().unwrap(), 0, "no store yet");
        let hash = store.put(b"a whole blob").unwrap();
        // What a relay killed mid-write leaves behind.
        std::fs::write(
            store.dir().join(PARTIAL_DIR).join(".tmpAbC123"),
            b"half a bl",
        )
        .unwrap();

        assert_eq!(store.remove_partial_writes().unwrap(), 1);
        assert_eq!(store.remove_partial_writes().unwrap(), 0);
        assert_eq!(std::fs::read(store.path(&hash)).unwrap(), b"a whole blob");
    }

    /// A blob written piece by piece is the same file, under the same hash, as one written
    /// whole; a writer dropped unfinished leaves nothing.
    #[test]
    fn a_blob_written_piece_by_piece_is_named_by_its_whole_hash() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = BlobStore::beside(&dir.path().join("relay.sqlite"));
        let bytes: Vec<u8> = (0..3 * WRITER_BUFFER_BYTES + 5).map(|i| i as u8).collect();
        let mut writer = store.writer().unwrap();
        for piece in bytes.chunks(100_000) {
            writer.write(piece).unwrap();
        }
        assert_eq!(writer.len(), bytes.len() as u64);
        let hash = writer.finish().unwrap();
        assert_eq!(hash, ContentHash::of(&bytes));
        assert_eq!(std::fs::read(store.path(&hash)).unwrap(), bytes);
        // Written again: the file is there already, and stays whole.
        let mut again = store.writer().unwrap();
        again.write(&bytes).unwrap();
        assert_eq!(again.finish().unwrap(), hash);
        assert_eq!(std::fs::read(store.path(&hash)).unwrap(), bytes);

        let mut dropped = store.writer().unwrap();
        dropped.write(b"half a blob").unwrap();
        drop(dropped);
        assert_eq!(store.remove_partial_writes().unwrap(), 0);
    }

    /// Small inputs wait for their job's transaction, each once; big ones are files at once.
    /// Either way the store finds them under their hash.
    #[test]
    fn small_inputs_go_into_the_database_and_big_ones_into_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let database = dir.path().join("relay.sqlite");
        let store = BlobStore::beside(&database);
        let conn = Connection::open(&database).unwrap();
        conn.execute_batch("CREATE TABLE blobs (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL)")
            .unwrap();

        let small = vec![7u8; SMALL_BLOB_BYTES];
        let big = vec![8u8; SMALL_BLOB_BYTES + 1];
        let mut staged = StagedBlobs::default();
        let small_hash = store.stage(&small, &mut staged).unwrap();
        assert_eq!(store.stage(&small, &mut staged).unwrap(), small_hash);
        let big_hash = store.stage(&big, &mut staged).unwrap();
        assert_eq!(
            (small_hash, big_hash),
            (ContentHash::of(&small), ContentHash::of(&big))
        );

        assert_eq!(staged.blobs.len(), 1, "the small one, once");
        assert!(
            store.path(&big_hash).exists(),
            "the big one is a file already"
        );
        assert!(!store.path(&small_hash).exists());
        assert_eq!(
            store.get(&conn, &small_hash).unwrap(),
            None,
            "not stored before the job"
        );

        staged.insert(&conn).unwrap();
        assert_eq!(store.get(&conn, &small_hash).unwrap(), Some(small));
        assert_eq!(store.get(&conn, &big_hash).unwrap(), Some(big));
    }

    /// Past its budget, a job's small inputs become files too.
    #[test]
    fn a_job_stages_at_most_its_budget() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = BlobStore::beside(&dir.path().join("relay.sqlite"));
        let mut staged = StagedBlobs::default();
        let chunks = STAGED_BYTES_PER_JOB / SMALL_BLOB_BYTES + 2;
        let hashes: Vec<ContentHash> = (0..chunks)
            .map(|i| {
                let chunk = (i as u32).to_le_bytes().repeat(SMALL_BLOB_BYTES / 4);
                store.stage(&chunk, &mut staged).unwrap()
            })
            .collect();
        assert_eq!(staged.bytes, STAGED_BYTES_PER_JOB);
        assert_eq!(staged.blobs.len(), chunks - 2);
        let files: Vec<bool> = hashes.iter().map(|h| store.path(h).exists()).collect();
        assert_eq!(
            files.iter().filter(|f| **f).count(),
            2,
            "the last two are files"
        );
        assert!(files[chunks - 1] && files[chunks - 2]);
    }
}
