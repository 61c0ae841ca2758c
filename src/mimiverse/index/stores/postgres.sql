-- The PostgreSQL index store. Many projects share one database: every row carries its
-- project's id. Chunks are the truth; `lexemes` derives from them (code-aware tokens
-- under `mimi_code`, weighted symbol A > path B > context C > body D). Vectors live in one table per
-- embedding model, `mimi_vectors_<id>`, created on the first put_vectors for that model
-- with a fixed `vector(<dim>)` column and an HNSW index (see postgres.py).
CREATE EXTENSION IF NOT EXISTS vector;

-- Text search config `mimi_code`: english stemming without english stopwords. Documents
-- keep every token (code names like `all`, `not`, `only` are not noise); queries drop
-- their stopwords before they get here (see tokens.query_terms), as with SQLite's porter.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_ts_dict
                 WHERE dictname = 'mimi_english_stem' AND dictnamespace = current_schema()::regnamespace) THEN
    CREATE TEXT SEARCH DICTIONARY mimi_english_stem (TEMPLATE = snowball, Language = english);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_ts_config
                 WHERE cfgname = 'mimi_code' AND cfgnamespace = current_schema()::regnamespace) THEN
    CREATE TEXT SEARCH CONFIGURATION mimi_code (COPY = english);
    ALTER TEXT SEARCH CONFIGURATION mimi_code
      ALTER MAPPING REPLACE english_stem WITH mimi_english_stem;
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS mimi_projects (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS mimi_meta (
  project integer NOT NULL REFERENCES mimi_projects(id) ON DELETE CASCADE,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (project, key)
);

CREATE TABLE IF NOT EXISTS mimi_files (
  project integer NOT NULL REFERENCES mimi_projects(id) ON DELETE CASCADE,
  path text NOT NULL,
  language text NOT NULL,
  size bigint NOT NULL,
  mtime_ns bigint NOT NULL,
  file_hash text NOT NULL,
  PRIMARY KEY (project, path)
);

CREATE TABLE IF NOT EXISTS mimi_chunks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project integer NOT NULL,
  path text NOT NULL,
  start_line integer NOT NULL,
  end_line integer NOT NULL,
  language text NOT NULL,
  kind text NOT NULL,
  symbol text NOT NULL,
  content text NOT NULL,
  context text NOT NULL,
  content_hash text NOT NULL,
  lexemes tsvector NOT NULL,
  FOREIGN KEY (project, path) REFERENCES mimi_files(project, path)
    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX IF NOT EXISTS mimi_chunks_path ON mimi_chunks (project, path);
CREATE INDEX IF NOT EXISTS mimi_chunks_hash ON mimi_chunks (project, content_hash);
CREATE INDEX IF NOT EXISTS mimi_chunks_lexemes ON mimi_chunks USING gin (lexemes);

-- One row per embedding model: its vectors table is mimi_vectors_<id>, of dimension dim.
CREATE TABLE IF NOT EXISTS mimi_vector_models (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model text NOT NULL UNIQUE,
  dim integer NOT NULL CHECK (dim > 0)
);
