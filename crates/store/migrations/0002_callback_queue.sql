-- Webhook deliveries not yet done: written when a delivery is queued, removed once it is
-- delivered or has used up its tries, so that a restart (or a crash) loses none of them.
-- `id` is the delivery id sent in X-Livesnap-Delivery, stable across restarts.

CREATE TABLE callback_queue (
    id         TEXT   NOT NULL PRIMARY KEY,
    event      TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
