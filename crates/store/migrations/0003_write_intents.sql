-- Picture writes in progress: a row is written before the object, and removed in the same
-- transaction that indexes the picture. A row left by a crash (kill -9, power loss) names an
-- object that may exist without an index row; the next start removes such objects, so that
-- every object has its row and no retention ever misses one.

CREATE TABLE write_intents (
    id         TEXT   NOT NULL PRIMARY KEY,
    storage    TEXT   NOT NULL,
    object_key TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
