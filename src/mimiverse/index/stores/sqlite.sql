-- The embedded index store. Chunks are the truth; chunks_fts and vector files derive from them.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS files (
  path TEXT PRIMARY KEY,
  language TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  file_hash TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS chunks (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  start_line INTEGER NOT NULL,
  end_line INTEGER NOT NULL,
  language TEXT NOT NULL,
  kind TEXT NOT NULL,
  symbol TEXT NOT NULL,
  content TEXT NOT NULL,
  context TEXT NOT NULL,
  content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(content_hash);

-- Code-aware token strings (see mimiverse/index/tokens.py), stemmed by porter. A regular
-- (not contentless) table: contentless_delete needs SQLite 3.43, Debian 12 has 3.40.
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
  symbol, path, context, body,
  tokenize='porter unicode61 remove_diacritics 2'
);

-- Vectors by content hash, so an unchanged chunk is never embedded again.
CREATE TABLE IF NOT EXISTS vectors (
  content_hash TEXT NOT NULL,
  model TEXT NOT NULL,
  vector BLOB NOT NULL,
  PRIMARY KEY (content_hash, model)
) WITHOUT ROWID;
