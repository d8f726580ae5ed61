-- Per-application rate limit in events per second (NULL: none).
ALTER TABLE applications ADD COLUMN rate_limit INTEGER;
