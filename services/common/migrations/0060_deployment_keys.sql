-- Secrets every replica of the deployment shares, generated once here.
-- page_tokens: the HMAC key that signs page tokens (unless CFGCLONE_PAGE_TOKEN_KEY
-- is set). gen_random_uuid() draws from the server's strong random source; two of
-- them give 244 random bits.
CREATE TABLE deployment_keys (
    name        text PRIMARY KEY,
    key         bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);

INSERT INTO deployment_keys (name, key)
VALUES (
    'page_tokens',
    decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
);
