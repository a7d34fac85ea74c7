-- An ESIA account that ESIA reports as not confirmed, admitted as a child's own account that
-- matches a student card: the rule is checked again whenever the account uses what it was given.
ALTER TABLE accounts ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;
