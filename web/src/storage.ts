// What survives a reload and a browser restart: the outbox and an offline copy of the list, recent
// history, read positions and the sync cursor, in IndexedDB; the session token in localStorage.
// When IndexedDB cannot be opened (some private modes) everything still works, in memory only.
import type { OutboxItem } from './outbox-core.ts';
import type { Session } from './types.ts';

const databaseName = 'parley';
const databaseVersion = 1;
const sessionKey = 'parley.session';

let opening: Promise<IDBDatabase | undefined> | undefined;
const memoryOutbox = new Map<string, OutboxItem>();
const memoryValues = new Map<string, unknown>();

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
  });
}

function database(): Promise<IDBDatabase | undefined> {
  opening ??= new Promise<IDBDatabase | undefined>((resolve) => {
    let req: IDBOpenDBRequest;
    try {
      req = indexedDB.open(databaseName, databaseVersion);
    } catch {
      resolve(undefined);
      return;
    }
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('outbox')) db.createObjectStore('outbox', { keyPath: 'clientMessageId' });
      if (!db.objectStoreNames.contains('kv')) db.createObjectStore('kv');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(undefined);
    req.onblocked = () => resolve(undefined);
  });
  return opening;
}

/** True when writes outlive the page (IndexedDB opened). */
export async function isDurable(): Promise<boolean> {
  return (await database()) !== undefined;
}

/** Every queued message of every account on this browser. */
export async function readOutbox(): Promise<OutboxItem[]> {
  const db = await database();
  if (!db) return [...memoryOutbox.values()];
  return request(db.transaction('outbox', 'readonly').objectStore('outbox').getAll() as IDBRequest<OutboxItem[]>);
}

/** Stores a queued message; resolves once it is on disk. */
export async function putOutbox(item: OutboxItem): Promise<void> {
  const db = await database();
  if (!db) {
    memoryOutbox.set(item.clientMessageId, item);
    return;
  }
  const tx = db.transaction('outbox', 'readwrite', { durability: 'strict' });
  tx.objectStore('outbox').put(item);
  await done(tx);
}

/** Removes a queued message (it is stored on the server, or discarded). */
export async function deleteOutbox(clientMessageId: string): Promise<void> {
  const db = await database();
  if (!db) {
    memoryOutbox.delete(clientMessageId);
    return;
  }
  const tx = db.transaction('outbox', 'readwrite');
  tx.objectStore('outbox').delete(clientMessageId);
  await done(tx);
}

/** Reads one saved value. */
export async function readValue<T>(key: string): Promise<T | undefined> {
  const db = await database();
  if (!db) return memoryValues.get(key) as T | undefined;
  return (await request(db.transaction('kv', 'readonly').objectStore('kv').get(key))) as T | undefined;
}

/** Saves values in one transaction. */
export async function writeValues(values: Record<string, unknown>): Promise<void> {
  const db = await database();
  if (!db) {
    for (const [key, value] of Object.entries(values)) memoryValues.set(key, value);
    return;
  }
  const tx = db.transaction('kv', 'readwrite');
  const store = tx.objectStore('kv');
  for (const [key, value] of Object.entries(values)) store.put(value, key);
  await done(tx);
}

/** Removes every saved value whose key starts with `prefix` (an account's offline copy). */
export async function deleteValues(prefix: string): Promise<void> {
  const db = await database();
  if (!db) {
    for (const key of [...memoryValues.keys()]) if (key.startsWith(prefix)) memoryValues.delete(key);
    return;
  }
  const tx = db.transaction('kv', 'readwrite');
  tx.objectStore('kv').delete(IDBKeyRange.bound(prefix, `${prefix}\uffff`));
  await done(tx);
}

/** The saved session, if any. */
export function readSession(): Session | undefined {
  try {
    const text = localStorage.getItem(sessionKey);
    const value = text ? (JSON.parse(text) as Session) : undefined;
    return value && typeof value.token === 'string' && value.account ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Saves or forgets the session. */
export function writeSession(session: Session | undefined): void {
  try {
    if (session) localStorage.setItem(sessionKey, JSON.stringify(session));
    else localStorage.removeItem(sessionKey);
  } catch {
    // Storage refused (private mode): the session lasts as long as the page.
  }
}
