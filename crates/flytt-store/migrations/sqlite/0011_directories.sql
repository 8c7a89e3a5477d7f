-- Directories for staged migrations (flytt-directory): settings as JSON
-- written by flytt-directory, the bind password sealed by flytt-secrets.
-- An endpoint names the directory of its users.
CREATE TABLE directory (
    name                   TEXT PRIMARY KEY,
    settings               TEXT NOT NULL,
    bind_password_sealed   TEXT
);
ALTER TABLE endpoint ADD COLUMN directory TEXT REFERENCES directory(name);
