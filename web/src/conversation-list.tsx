// The list of my conversations (a `list` named "Conversations"), newest activity first, with the
// unread count and the last message of each; and the form that starts a new one.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { PageProps } from './app.tsx';
import { shortTime } from './format.ts';
import { conversationsNewestFirst, nameOf, titleOf } from './model-core.ts';

/** My conversations. */
export function ConversationList({ client, navigate }: PageProps) {
  const model = client.model!;
  const items = conversationsNewestFirst(model);
  const now = Date.now();
  const listRef = useRef<HTMLUListElement>(null);
  const previous = useRef(client.openId);
  // Leaving a conversation puts the keyboard focus back on its entry in the list. A layout effect runs
  // at commit, before the browser paints; a plain effect waits for the next frame and focus would
  // sit on <body> meanwhile.
  useLayoutEffect(() => {
    const left = previous.current;
    previous.current = client.openId;
    if (left && !client.openId) listRef.current?.querySelector<HTMLAnchorElement>(`a[data-id="${CSS.escape(left)}"]`)?.focus();
  });
  return (
    <nav class="list-wrap" aria-label="Conversation list">
      <ul class="conversations" role="list" aria-label="Conversations" ref={listRef}>
        {items.map((item) => {
          const last = item.lastMessage;
          const who = last ? (last.senderId === model.me.id ? 'You' : nameOf(item, last.senderId)) : '';
          const waiting = client.outbox.filter((o) => o.conversationId === item.id).length;
          return (
            <li key={item.id}>
              <a
                href={`/c/${encodeURIComponent(item.id)}`}
                data-id={item.id}
                aria-current={client.openId === item.id ? 'page' : undefined}
                class={item.unread > 0 ? 'unread' : undefined}
                onClick={(event) => {
                  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
                  event.preventDefault();
                  navigate(item.id);
                }}
              >
                <span class="line">
                  <span class="title">{titleOf(item, model.me)}</span>
                  <time dateTime={last?.sentAt ?? item.createdAt}>{shortTime(last?.sentAt ?? item.createdAt, now)}</time>
                </span>
                <span class="line">
                  <span class="last">{last ? `${who}: ${last.body}` : 'No messages yet'}</span>
                  {waiting > 0 ? <span class="waiting">{waiting} unsent</span> : null}
                  {item.unread > 0 ? (
                    <span class="badge">
                      <span aria-hidden="true">{item.unread}</span>
                      <span class="sr-only">{`, ${item.unread} unread`}</span>
                    </span>
                  ) : null}
                </span>
              </a>
            </li>
          );
        })}
      </ul>
      {items.length === 0 ? <p class="hint">No conversations yet. Start one with “New conversation”.</p> : null}
    </nav>
  );
}

/** Starts a direct conversation (one username) or a group (several, or a name). */
export function NewConversation({ client, navigate }: PageProps) {
  const [open, setOpen] = useState(false);
  const [people, setPeople] = useState('');
  const [title, setTitle] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  async function start(): Promise<void> {
    setBusy(true);
    setError(undefined);
    const result = await client.startConversation(people.split(/[\s,]+/), title);
    setBusy(false);
    if ('error' in result) return setError(result.error);
    setPeople('');
    setTitle('');
    setOpen(false);
    navigate(result.id);
  }

  return (
    <details class="new-conversation" open={open} onToggle={(event) => setOpen(event.currentTarget.open)}>
      <summary>New conversation</summary>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void start();
        }}
      >
        <label for="new-people">With (usernames, separated by commas)</label>
        <input id="new-people" autoCapitalize="none" spellcheck={false} value={people} onInput={(event) => setPeople(event.currentTarget.value)} />
        <label for="new-title">Group name (optional)</label>
        <input id="new-title" value={title} onInput={(event) => setTitle(event.currentTarget.value)} />
        <button type="submit" disabled={busy}>
          Start conversation
        </button>
        <p class="error" role="alert">
          {error ?? ''}
        </p>
      </form>
    </details>
  );
}
