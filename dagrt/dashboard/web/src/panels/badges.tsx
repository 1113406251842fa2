/** Small status chips. */
import type { ConnectionState } from '../live';

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return <span class={`badge status-${status}`} data-testid={testId}>{status}</span>;
}

export function ConnectionBadge({ state }: { state: ConnectionState }) {
  return (
    <span class={`badge conn conn-${state}`} title="live event stream">
      <span class="dot" />
      <span data-testid="connection-status">{state}</span>
    </span>
  );
}
