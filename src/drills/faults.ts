// The drill's faults, for real: signals to the processes `parley status` names. Linux only (the
// WAL receiver is found through /proc).
import { readFileSync } from 'node:fs';

/** kill -9: no chance to clean up, as when a host dies. A process already gone is fine. */
export function killNow(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** SIGSTOP: alive but silent, as a hung process or a stalled disk makes it. */
export function freeze(pid: number): void {
  process.kill(pid, 'SIGSTOP');
}

/** SIGCONT: undoes freeze(). */
export function thaw(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** The child of a postmaster whose command line names `kind` (walreceiver, checkpointer, …). */
export function postmasterChild(postmasterPid: number, kind: string): number {
  const children = readFileSync(`/proc/${postmasterPid}/task/${postmasterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  for (const pid of children) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(kind)) return pid;
    } catch {
      // It exited meanwhile.
    }
  }
  throw new Error(`no ${kind} process under postmaster ${postmasterPid}`);
}

/** The WAL receiver process of the standby whose postmaster is `postmasterPid`. */
export function walReceiverOf(postmasterPid: number): number {
  return postmasterChild(postmasterPid, 'walreceiver');
}
