-- The endpoint's CardDAV/CalDAV server, if contacts and calendars move too.
ALTER TABLE endpoint ADD COLUMN dav_url TEXT;
