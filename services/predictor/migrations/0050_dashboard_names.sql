-- Names of the numbered states and reasons, so that SQL read by people (Grafana's
-- panels, ad-hoc queries) says "rolled_back" rather than 8. The numbers are those of
-- the protobuf enums ChangeState and RollbackReason; a test keeps the two in step.

CREATE TABLE change_states (
    state  smallint PRIMARY KEY,
    name   text NOT NULL UNIQUE,
    final  boolean NOT NULL
);
INSERT INTO change_states (state, name, final) VALUES
    (0, 'unspecified', false),
    (1, 'proposed', false),
    (2, 'predicting', false),
    (3, 'held', false),
    (4, 'applying', false),
    (5, 'verifying', false),
    (6, 'kept', true),
    (7, 'rejected', true),
    (8, 'rolled_back', true),
    (9, 'failed', true);

CREATE TABLE rollback_reasons (
    reason  smallint PRIMARY KEY,
    name    text NOT NULL UNIQUE
);
INSERT INTO rollback_reasons (reason, name) VALUES
    (0, 'unspecified'),
    (1, 'predicted_negative'),
    (2, 'verification_failed'),
    (3, 'apply_failed'),
    (4, 'aborted'),
    (5, 'interrupted'),
    (6, 'dependency_unavailable');
