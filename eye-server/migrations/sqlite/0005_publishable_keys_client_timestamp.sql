-- Publishable keys (the browser tracker): the origins whose pages may send events with
-- the application's key, as a JSON array of `scheme://host[:port]`. NULL: a secret key,
-- sent by servers, never accepted in a URL and never granted CORS.
ALTER TABLE applications ADD COLUMN origins TEXT;

-- The sender's own timestamp, in microseconds, when the request said when it was sent
-- (`sent_at`) and `timestamp` holds the value corrected for the sender's clock. NULL
-- when the request carried no `sent_at`.
ALTER TABLE events ADD COLUMN client_timestamp INTEGER;
