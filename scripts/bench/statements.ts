// Where a send's database time goes: pg_stat_statements, reset before a run and read after it, for
// the app's role only. Costs the server a few percent; it explains a ratio that a bare number cannot.
import pg from 'pg';

/** One statement's share of a run. */
export interface StatementShare {
  query: string;
  calls: number;
  /** Calls per counted unit (per send). */
  callsPerUnit: number;
  meanMs: number;
  /** Total execution time per counted unit, ms. */
  msPerUnit: number;
}

/** The app's statements during a run. */
export interface StatementsReport {
  statements: StatementShare[];
  /** Statement calls per unit and execution time per unit, all statements together. */
  callsPerUnit: number;
  msPerUnit: number;
}

// Statements listed in the report; the rest are summed into the totals only.
const statementsShownMax = 12;
const queryShownChars = 110;

/** Empties pg_stat_statements (as the superuser). */
export async function resetStatements(superuserUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  try {
    await client.query('SELECT pg_stat_statements_reset()');
  } finally {
    await client.end();
  }
}

/** Reads the statements `role` ran since the last reset; `units` is what to divide by (sends). */
export async function readStatements(superuserUrl: string, role: string, units: number): Promise<StatementsReport> {
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  try {
    const rows = (
      await client.query<{ query: string; calls: string; total_exec_time: number; mean_exec_time: number }>(
        `SELECT s.query, s.calls, s.total_exec_time, s.mean_exec_time
           FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
          WHERE r.rolname = $1
          ORDER BY s.total_exec_time DESC`,
        [role],
      )
    ).rows;
    const per = (value: number): number => (units > 0 ? value / units : Number.NaN);
    let calls = 0;
    let totalMs = 0;
    for (const row of rows) {
      calls += Number(row.calls);
      totalMs += row.total_exec_time;
    }
    return {
      statements: rows.slice(0, statementsShownMax).map((row) => {
        const query = row.query.replace(/\s+/g, ' ').trim();
        return {
          query: query.length > queryShownChars ? `${query.slice(0, queryShownChars - 1)}…` : query,
          calls: Number(row.calls),
          callsPerUnit: per(Number(row.calls)),
          meanMs: row.mean_exec_time,
          msPerUnit: per(row.total_exec_time),
        };
      }),
      callsPerUnit: per(calls),
      msPerUnit: per(totalMs),
    };
  } finally {
    await client.end();
  }
}
