// The page: the status banner over either the sign-in form or the messenger (the conversation
// list beside the open conversation; one at a time on a phone-sized screen).
import { useEffect, useState } from 'preact/hooks';
import type { ParleyClient } from './client.ts';
import { ConversationList, NewConversation } from './conversation-list.tsx';
import { ConversationView } from './conversation-view.tsx';
import { SignIn } from './sign-in.tsx';

/** Props every part of the page gets. */
export interface PageProps {
  client: ParleyClient;
  navigate: (id: string | undefined) => void;
}

function useClient(client: ParleyClient): void {
  const [, setTick] = useState(0);
  useEffect(() => client.subscribe(() => setTick((tick) => tick + 1)), [client]);
}

/** The whole page. */
export function App({ client, navigate }: PageProps) {
  useClient(client);
  const unread = client.model ? [...client.model.conversations.values()].reduce((sum, item) => sum + item.unread, 0) : 0;
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) Parley` : 'Parley';
  }, [unread]);
  return (
    <>
      <StatusBanner client={client} />
      {client.phase === 'starting' ? (
        <p class="starting">Opening Parley…</p>
      ) : client.phase === 'signed-out' ? (
        <SignIn client={client} />
      ) : (
        <Messenger client={client} navigate={navigate} />
      )}
    </>
  );
}

function StatusBanner({ client }: { client: ParleyClient }) {
  const banner = client.banner(Date.now());
  // Always in the page, so screen readers announce its changes.
  return (
    <div class={`banner${banner ? ` banner-${banner.kind}` : ''}`} role="status" aria-live="polite">
      {banner ? <span>{banner.text}</span> : null}
      {banner?.kind === 'unreachable' ? (
        <button type="button" class="link" onClick={() => client.reconnectNow()}>
          Retry now
        </button>
      ) : null}
    </div>
  );
}

function Messenger({ client, navigate }: PageProps) {
  const me = client.model!.me;
  const openId = client.openId;
  return (
    <div class="messenger" data-view={openId ? 'conversation' : 'list'}>
      <aside class="sidebar">
        <header class="topbar">
          <h1 class="brand">Parley</h1>
          <span class="me" title="Signed in as">
            {me.displayName || me.username}
          </span>
          <button type="button" class="link" onClick={() => void client.signOut()}>
            Sign out
          </button>
        </header>
        {client.durable ? null : <p class="warning">This browser keeps nothing across reloads here: unsent messages are lost if you close the page.</p>}
        <NewConversation client={client} navigate={navigate} />
        <ConversationList client={client} navigate={navigate} />
      </aside>
      <main class="pane">
        {openId ? (
          <ConversationView key={openId} client={client} navigate={navigate} id={openId} />
        ) : (
          <p class="placeholder">Choose a conversation, or start a new one.</p>
        )}
      </main>
    </div>
  );
}
