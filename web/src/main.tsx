// Entry point: the client engine, the router (/ is the list, /c/ID a conversation) and the
// service worker that lets a reload or a browser restart open Parley while offline.
import { render } from 'preact';
import { App } from './app.tsx';
import { ParleyClient } from './client.ts';
import './styles.css';

const client = new ParleyClient();

function conversationInPath(): string | undefined {
  const match = /^\/c\/([^/]+)\/?$/.exec(location.pathname);
  return match ? decodeURIComponent(match[1]!) : undefined;
}

/** Opens a conversation (or the list) and records it in the address bar and history. */
function navigate(id: string | undefined): void {
  const path = id ? `/c/${encodeURIComponent(id)}` : '/';
  if (location.pathname !== path) history.pushState(null, '', path);
  void client.openConversation(id);
}

window.addEventListener('popstate', () => void client.openConversation(conversationInPath()));
client.openId = conversationInPath();
render(<App client={client} navigate={navigate} />, document.getElementById('app')!);
void client.start();

if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {
    // Without it the client works the same, except that a reload needs the network.
  });
}
