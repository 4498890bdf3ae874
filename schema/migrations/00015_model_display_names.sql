-- +goose Up

-- A model's name is its display name, as Truss's model_name is ("basic truss"): 1-255
-- printable characters, not only blanks. Models are addressed by ID, so it needs no
-- identifier rules.
ALTER TABLE models DROP CONSTRAINT models_name_check;
ALTER TABLE models ADD CONSTRAINT models_name_check
    CHECK (char_length(name) BETWEEN 1 AND 255 AND name !~ '[[:cntrl:]]' AND btrim(name) <> '');

-- +goose Down
ALTER TABLE models DROP CONSTRAINT models_name_check;
ALTER TABLE models ADD CONSTRAINT models_name_check CHECK (name ~ '^[A-Za-z0-9._-]{1,255}$');
