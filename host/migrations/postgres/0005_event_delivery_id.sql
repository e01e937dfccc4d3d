-- An event may carry the sender's delivery id: the same id delivered again (a webhook
-- retrying) is accepted once. Kept as long as the event (retention.events).
ALTER TABLE events ADD COLUMN delivery_id TEXT;
CREATE UNIQUE INDEX events_by_delivery ON events(delivery_id) WHERE delivery_id IS NOT NULL;
