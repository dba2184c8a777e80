// Versioned schema migrations, applied in order by `parley up` as the database superuser. The app
// itself connects as `parley_app`, which may read and write rows but never change the schema.

/** One migration: applied once, in a transaction, in version order. Never edit an applied one. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Every migration, oldest first. Append; never reorder. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'messenger core',
    sql: `
CREATE TABLE accounts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{3,32}$'),
  display_name text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 64),
  password_hash text NOT NULL,
  is_operator boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Tokens are stored as SHA-256 hashes: a leaked table yields no usable token.
CREATE TABLE sessions (
  token_hash bytea PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE conversations (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('direct', 'group')),
  title text CHECK (title IS NULL OR char_length(title) BETWEEN 1 AND 200),
  -- "<smaller account id>:<larger account id>" for direct conversations: one per pair.
  direct_key text UNIQUE,
  last_seq bigint NOT NULL DEFAULT 0,
  last_message_at timestamptz,
  created_by bigint NOT NULL REFERENCES accounts (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE members (
  conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  account_id bigint NOT NULL REFERENCES accounts (id),
  last_read_seq bigint NOT NULL DEFAULT 0,
  joined_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, account_id)
);
CREATE INDEX members_account ON members (account_id, conversation_id);

CREATE TABLE messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id bigint NOT NULL REFERENCES conversations (id),
  seq bigint NOT NULL CHECK (seq >= 1),
  sender_id bigint NOT NULL REFERENCES accounts (id),
  client_message_id uuid NOT NULL,
  body text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
  sent_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (conversation_id, seq),
  -- Exactly once, forever: one stored message per (sender, clientMessageId).
  UNIQUE (sender_id, client_message_id)
);

-- The log that /v1/sync reads. Ordered by (xid, id): every row of a transaction whose xid is
-- below the oldest running transaction is final, so a cursor never skips a late commit.
CREATE TABLE events (
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  conversation_id bigint NOT NULL REFERENCES conversations (id),
  kind smallint NOT NULL CHECK (kind IN (1, 2, 3)), -- 1 message, 2 read, 3 conversation
  message_id bigint REFERENCES messages (id),
  account_id bigint REFERENCES accounts (id),
  seq bigint,
  PRIMARY KEY (xid, id)
);
CREATE INDEX events_conversation ON events (conversation_id, xid, id);
`,
  },
  {
    version: 2,
    name: 'send in one round trip',
    sql: `
-- One call per send instead of eight statements: the access check, the retry lookup, the
-- conversation lock, the seq counter, the insert, the sync event and the sender's read position.
-- The rules are those of chat/messages.ts (which calls this): see the comments there.
CREATE FUNCTION send_message(p_conversation bigint, p_sender bigint, p_client uuid, p_body text)
RETURNS TABLE (outcome text, id bigint, conversation_id bigint, seq bigint, sender_id bigint,
               client_message_id uuid, body text, sent_at timestamptz, read_moved boolean)
LANGUAGE plpgsql SET search_path = parley AS $fn$
DECLARE
  v_msg messages%ROWTYPE;
  v_before bigint;
  v_seq bigint;
BEGIN
  SELECT * INTO v_msg FROM messages m WHERE m.sender_id = p_sender AND m.client_message_id = p_client;
  IF FOUND THEN
    RETURN QUERY SELECT 'existing', v_msg.id, v_msg.conversation_id, v_msg.seq, v_msg.sender_id,
                        v_msg.client_message_id, v_msg.body, v_msg.sent_at, false;
    RETURN;
  END IF;
  PERFORM 1 FROM conversations c WHERE c.id = p_conversation;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'not_found', NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::uuid, NULL::text, NULL::timestamptz, false;
    RETURN;
  END IF;
  PERFORM 1 FROM members mb WHERE mb.conversation_id = p_conversation AND mb.account_id = p_sender;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'forbidden', NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::uuid, NULL::text, NULL::timestamptz, false;
    RETURN;
  END IF;
  -- Taken before this transaction has an xid, so per conversation xid order is seq order.
  PERFORM pg_advisory_xact_lock(p_conversation);
  SELECT * INTO v_msg FROM messages m WHERE m.sender_id = p_sender AND m.client_message_id = p_client;
  IF FOUND THEN
    RETURN QUERY SELECT 'existing', v_msg.id, v_msg.conversation_id, v_msg.seq, v_msg.sender_id,
                        v_msg.client_message_id, v_msg.body, v_msg.sent_at, false;
    RETURN;
  END IF;
  UPDATE conversations c SET last_seq = c.last_seq + 1, last_message_at = now()
   WHERE c.id = p_conversation RETURNING c.last_seq INTO v_seq;
  INSERT INTO messages AS m (conversation_id, seq, sender_id, client_message_id, body)
  VALUES (p_conversation, v_seq, p_sender, p_client, p_body)
  ON CONFLICT ON CONSTRAINT messages_sender_id_client_message_id_key DO NOTHING
  RETURNING * INTO v_msg;
  IF NOT FOUND THEN
    -- The same id won in another conversation meanwhile: undo the seq, the caller answers 409.
    RAISE EXCEPTION 'duplicate send' USING ERRCODE = 'PY001';
  END IF;
  INSERT INTO events (conversation_id, kind, message_id) VALUES (p_conversation, 1, v_msg.id);
  SELECT mb.last_read_seq INTO v_before FROM members mb
   WHERE mb.conversation_id = p_conversation AND mb.account_id = p_sender FOR UPDATE;
  IF v_before < v_seq THEN
    UPDATE members mb SET last_read_seq = v_seq WHERE mb.conversation_id = p_conversation AND mb.account_id = p_sender;
  END IF;
  IF v_before < v_seq - 1 THEN
    INSERT INTO events (conversation_id, kind, account_id, seq) VALUES (p_conversation, 2, p_sender, v_seq);
  END IF;
  RETURN QUERY SELECT 'created', v_msg.id, v_msg.conversation_id, v_msg.seq, v_msg.sender_id,
                      v_msg.client_message_id, v_msg.body, v_msg.sent_at, (v_before < v_seq - 1);
END
$fn$;
`,
  },
  {
    version: 3,
    name: 'a retried send is acknowledged only once durable',
    sql: `
-- A send whose commit was cancelled while waiting for the synchronous standby (statement_timeout)
-- is committed on the primary alone; the app answers 503. Its retry used to find the row and
-- return it from a read-only transaction, whose commit does not wait for any standby: a 200 for a
-- message a failover could still lose. Now a retry that finds its message writes a transactional
-- WAL record (a logical message of a few bytes: no table grows), so its commit lies after the
-- message's and waits for the synchronous quorum like a new send's. (A transaction id alone is
-- not enough: PostgreSQL waits only for transactions that wrote WAL.) Until a standby has the
-- message, its retry is a 503 too (invariant 1).
ALTER FUNCTION send_message(bigint, bigint, uuid, text) RENAME TO send_message_once;
CREATE FUNCTION send_message(p_conversation bigint, p_sender bigint, p_client uuid, p_body text)
RETURNS TABLE (outcome text, id bigint, conversation_id bigint, seq bigint, sender_id bigint,
               client_message_id uuid, body text, sent_at timestamptz, read_moved boolean)
LANGUAGE plpgsql SET search_path = parley AS $fn$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM send_message_once(p_conversation, p_sender, p_client, p_body);
  IF r.outcome = 'existing' THEN
    PERFORM pg_logical_emit_message(true, 'parley', 'acknowledge retried send');
  END IF;
  RETURN QUERY SELECT r.outcome, r.id, r.conversation_id, r.seq, r.sender_id, r.client_message_id,
                      r.body, r.sent_at, r.read_moved;
END
$fn$;
`,
  },
  {
    version: 4,
    name: 'live events announced to every app server',
    sql: `
-- Fan-out between app servers: every row of the sync log is announced, at commit and only if it
-- commits, on the channel parley_events; each app server LISTENs on the primary and delivers the
-- event to its own sockets. The payload is small (ids only; a message is loaded by its id), far
-- under NOTIFY's 8000-byte limit. After a failover an app server listens on the new primary and
-- catches up from the log by id (chat/fanout.ts).
CREATE FUNCTION announce_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = parley AS $fn$
BEGIN
  PERFORM pg_notify('parley_events', json_build_object(
    'i', NEW.id, 'c', NEW.conversation_id, 'k', NEW.kind, 'm', NEW.message_id, 'a', NEW.account_id, 's', NEW.seq)::text);
  RETURN NULL;
END
$fn$;
CREATE TRIGGER events_announced AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION announce_event();
`,
  },
];
