/**
 * `WS /api/live` with reconnection: send `{run, from}` once, receive batches; on close or
 * error reconnect with back-off (0.5 s doubling to 5 s), resending the resume point.
 * Runs in the page (runs list) and in the feed worker (a run's events).
 */
import type { LiveMessage } from './api';

export type ConnectionState = 'connecting' | 'live' | 'disconnected';

export interface LiveSocketOptions {
  url: string;
  run: string | null;
  /** The last entry id received and kept (the server sends what follows it). */
  resumeFrom: () => string | null;
  onMessage: (message: LiveMessage) => void;
  onState: (state: ConnectionState) => void;
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
const SILENCE_MS = 40_000; // the server pings every 15 s

export class LiveSocket {
  private socket: WebSocket | null = null;
  private delay = FIRST_DELAY_MS;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private state: ConnectionState = 'connecting';

  constructor(private readonly options: LiveSocketOptions) {}

  start(): void {
    this.setState('connecting');
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== null) clearTimeout(this.retry);
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = socket.onerror = socket.onmessage = null;
      if (socket.readyState === WebSocket.CONNECTING) {
        // Closing before the handshake logs a browser warning: close once open instead.
        socket.onopen = () => socket.close();
      } else {
        socket.onopen = null;
        socket.close();
      }
    }
  }

  private setState(state: ConnectionState): void {
    if (state === this.state && state !== 'connecting') return;
    this.state = state;
    this.options.onState(state);
  }

  private connect(): void {
    if (this.stopped) return;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.options.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ run: this.options.run, from: this.options.resumeFrom() }));
      this.kick();
    };
    socket.onmessage = (event: MessageEvent) => {
      this.kick();
      let message: LiveMessage;
      try {
        message = JSON.parse(event.data as string) as LiveMessage;
      } catch {
        return;
      }
      if (message.type === 'live') {
        this.delay = FIRST_DELAY_MS;
        this.setState('live');
      }
      this.options.onMessage(message);
    };
    socket.onclose = () => this.lost(socket);
    socket.onerror = () => this.lost(socket);
  }

  /** Restart the silence watchdog (a dead connection that never closes). */
  private kick(): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.socket?.close(), SILENCE_MS);
  }

  private lost(socket: WebSocket): void {
    if (socket !== this.socket) return;
    socket.onclose = socket.onerror = socket.onmessage = socket.onopen = null;
    try {
      socket.close();
    } catch {
      /* already closed */
    }
    this.socket = null;
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    if (this.stopped) return;
    this.setState('disconnected');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retry !== null) return;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.connect();
    }, wait);
  }
}
