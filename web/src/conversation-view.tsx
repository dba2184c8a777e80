// One conversation: its history (a `log` named "Messages") that loads older pages as you scroll
// up, the messages still in the outbox (pending or failed, with Retry), who is typing, the "seen"
// receipt, and the composer (a textbox named "Message" and a "Send" button).
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { PageProps } from './app.tsx';
import type { ParleyClient } from './client.ts';
import { fullTime, shortTime } from './format.ts';
import { nameOf, seenReceipt, titleOf, typingNames } from './model-core.ts';
import { bodyLength } from './outbox-core.ts';
import { messageBodyMax } from './types.ts';

/** Scrolled this close to the top, the next older page loads. */
const loadOlderWithinPx = 200;
/** This close to the bottom counts as "reading the newest". */
const atBottomWithinPx = 48;

/** Drafts per conversation, kept while the page lives. */
const drafts = new Map<string, string>();

/** The open conversation. */
export function ConversationView({ client, navigate, id }: PageProps & { id: string }) {
  const model = client.model!;
  const me = model.me;
  const item = model.conversations.get(id);
  const timeline = model.timelines.get(id);
  const pending = client.outbox.filter((o) => o.conversationId === id);
  const seen = seenReceipt(model, id);
  const now = Date.now();
  const typers = typingNames(model, id, now);
  const loadingOlder = client.loadingOlder.has(id);
  const logRef = useRef<HTMLDivElement>(null);
  // Where the reader was, so that new messages keep them at the bottom and older pages do not move them.
  const place = useRef({ atBottom: true, fromBottomPx: 0, firstSeq: undefined as number | undefined });

  function readIfAtBottom(): void {
    if (place.current.atBottom && document.visibilityState === 'visible') client.markRead(id);
  }

  useLayoutEffect(() => {
    const log = logRef.current;
    if (!log) return;
    const firstSeq = timeline?.messages[0]?.seq;
    const before = place.current;
    if (before.firstSeq !== undefined && firstSeq !== undefined && firstSeq < before.firstSeq && !before.atBottom) {
      log.scrollTop = log.scrollHeight - before.fromBottomPx;
    } else if (before.atBottom) {
      log.scrollTop = log.scrollHeight;
    }
    place.current = { ...measure(log), firstSeq };
    readIfAtBottom();
    // A short history does not scroll, so there is no scrolling up to ask for more.
    if (timeline?.hasOlder && !loadingOlder && log.scrollHeight <= log.clientHeight + 1) void client.loadOlder(id);
  });

  useEffect(() => {
    const onVisible = () => readIfAtBottom();
    document.addEventListener('visibilitychange', onVisible);
    return () => document.removeEventListener('visibilitychange', onVisible);
  }, [id]);

  function onScroll(): void {
    const log = logRef.current;
    if (!log) return;
    place.current = { ...measure(log), firstSeq: place.current.firstSeq };
    if (log.scrollTop < loadOlderWithinPx && timeline?.hasOlder && !loadingOlder) void client.loadOlder(id);
    readIfAtBottom();
  }

  const title = item ? titleOf(item, me) : 'Conversation';
  const group = item?.kind === 'group';
  return (
    <section
      class="conversation"
      aria-label={title}
      onKeyDown={(event) => {
        if (event.key === 'Escape') navigate(undefined);
      }}
    >
      <header class="conversation-head">
        <button type="button" class="back" aria-label="Back to conversations" onClick={() => navigate(undefined)}>
          ‹
        </button>
        <div>
          <h2>{title}</h2>
          {item ? <p class="members">{item.members.map((m) => (m.id === me.id ? 'you' : m.displayName || m.username)).join(', ')}</p> : null}
        </div>
      </header>
      <div class="log" role="log" aria-label="Messages" tabIndex={0} ref={logRef} onScroll={onScroll}>
        {timeline?.hasOlder ? (
          <button type="button" class="older" disabled={loadingOlder} onClick={() => void client.loadOlder(id)}>
            {loadingOlder ? 'Loading older messages…' : 'Load older messages'}
          </button>
        ) : timeline && timeline.messages.length > 0 ? (
          <p class="start">This is the start of the conversation.</p>
        ) : null}
        {!timeline ? <p class="hint">Loading messages…</p> : null}
        <ol class="messages">
          {(timeline?.messages ?? []).map((message) => {
            const mine = message.senderId === me.id;
            const sender = mine ? 'You' : nameOf(item, message.senderId);
            return (
              <li key={message.id} class={mine ? 'message mine' : 'message'} data-state="sent" data-seq={message.seq}>
                <span class={!mine && group ? 'sender' : 'sender sr-only'}>{sender}: </span>
                <p class="body">{message.body}</p>
                <p class="meta">
                  <time dateTime={message.sentAt} title={fullTime(message.sentAt)}>
                    {shortTime(message.sentAt, now)}
                  </time>
                  {seen?.seq === message.seq ? <span class="seen">{group ? `Seen by ${seen.by.join(', ')}` : 'Seen'}</span> : null}
                </p>
              </li>
            );
          })}
          {pending.map((o) => (
            <li key={o.clientMessageId} class={`message mine ${o.state}`} data-state={o.state}>
              <span class="sender sr-only">You: </span>
              <p class="body">{o.body}</p>
              {o.state === 'pending' ? (
                <p class="meta">
                  <span class="status">Pending: not sent yet</span>
                </p>
              ) : (
                <p class="meta">
                  <span class="status">Not sent: {o.error}</span>
                  <button type="button" class="link" onClick={() => void client.retry(o.clientMessageId)}>
                    Retry
                  </button>
                  <button type="button" class="link" onClick={() => void client.discard(o.clientMessageId)}>
                    Discard
                  </button>
                </p>
              )}
            </li>
          ))}
        </ol>
        {timeline && timeline.messages.length === 0 && pending.length === 0 ? <p class="hint">No messages yet. Say hello.</p> : null}
      </div>
      <p class="typing" aria-live="polite">
        {typers.length > 0 ? `${typers.join(', ')} ${typers.length === 1 ? 'is' : 'are'} typing…` : ''}
      </p>
      <Composer
        client={client}
        id={id}
        onSend={() => {
          place.current.atBottom = true;
        }}
      />
    </section>
  );
}

function measure(log: HTMLElement): { atBottom: boolean; fromBottomPx: number } {
  return {
    atBottom: log.scrollHeight - log.scrollTop - log.clientHeight < atBottomWithinPx,
    fromBottomPx: log.scrollHeight - log.scrollTop,
  };
}

function Composer({ client, id, onSend }: { client: ParleyClient; id: string; onSend: () => void }) {
  const [text, setText] = useState(drafts.get(id) ?? '');
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const length = bodyLength(text.trim());
  const tooLong = length > messageBodyMax;
  const blank = text.trim().length === 0;

  useEffect(() => {
    inputRef.current?.focus();
  }, [id]);

  async function submit(): Promise<void> {
    if (tooLong || blank) return;
    const body = text;
    setText('');
    drafts.delete(id);
    onSend();
    const refused = await client.send(id, body);
    if (refused) {
      setText(body);
      setProblem(refused);
    } else setProblem(undefined);
  }

  let help = '';
  if (tooLong) help = `Too long to send: ${length} of ${messageBodyMax} characters. Remove ${length - messageBodyMax} to send it.`;
  else if (length > messageBodyMax - 500) help = `${length} of ${messageBodyMax} characters`;
  return (
    <form
      class="composer"
      onSubmit={(event) => {
        event.preventDefault();
        void submit();
      }}
    >
      <label for="composer-input" class="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={inputRef}
        rows={2}
        placeholder="Message"
        value={text}
        aria-invalid={tooLong}
        aria-describedby="composer-help"
        onInput={(event) => {
          const value = event.currentTarget.value;
          setText(value);
          drafts.set(id, value);
          if (value.trim()) client.typing(id);
        }}
        onKeyDown={(event) => {
          // Enter sends, Shift+Enter is a new line (and an IME's Enter only confirms the word).
          if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
            event.preventDefault();
            void submit();
          }
        }}
      />
      <button type="submit" disabled={tooLong || blank}>
        Send
      </button>
      <p id="composer-help" class={tooLong || problem ? 'help error' : 'help'} role={tooLong ? 'alert' : undefined}>
        {problem ?? help}
      </p>
    </form>
  );
}
