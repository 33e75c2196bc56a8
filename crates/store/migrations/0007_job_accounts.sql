-- The account a job belongs to (NULL: the administrator's), and so its usage.
ALTER TABLE jobs ADD COLUMN account TEXT;
ALTER TABLE job_usage ADD COLUMN account TEXT;
