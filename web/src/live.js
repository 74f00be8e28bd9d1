// The live channel: one WebSocket to /api/v1/live shared by every view. Views subscribe to
// topics; the master pushes a snapshot, then only changes. The socket reconnects with
// jittered exponential backoff and subscribes again (each topic gets a fresh snapshot).
// Nothing here polls.
import { reactive } from 'vue'
import { me } from './api'

const CLOSE_AUTH = 4401
const BACKOFF_MIN = 500
const BACKOFF_MAX = 30000

export const liveState = reactive({ connected: false, reconnecting: false })

const handlers = new Map() // topic -> Set of (data, error) => void
let socket = null
let opened = false
let backoff = BACKOFF_MIN
let timer = null
let stopped = false

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message))
}

function dispatch(event) {
  let message
  try {
    message = JSON.parse(event.data)
  } catch {
    return
  }
  for (const handler of handlers.get(message.topic) || []) {
    try {
      handler(message.data ?? null, message.error ?? null)
    } catch (exc) {
      console.error('live handler for', message.topic, 'failed', exc)
    }
  }
}

function connect() {
  if (socket || stopped) return
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const ws = new WebSocket(`${scheme}//${location.host}/api/v1/live`)
  socket = ws
  opened = false
  ws.onopen = () => {
    if (socket !== ws) return // closed meanwhile (logout)
    opened = true
    backoff = BACKOFF_MIN
    liveState.connected = true
    liveState.reconnecting = false
    for (const topic of handlers.keys()) send({ op: 'subscribe', topic })
  }
  ws.onmessage = dispatch
  ws.onclose = (event) => {
    if (socket !== ws) return // an old socket: a newer one is in charge
    const wasOpen = opened
    socket = null
    liveState.connected = false
    if (stopped) return
    if (event.code === CLOSE_AUTH || !wasOpen) {
      // Refused or logged out: if the session is gone, me() sends the page to the login form.
      me()
        .then((found) => (found ? schedule() : null))
        .catch(() => schedule())
    } else {
      schedule()
    }
  }
}

function schedule() {
  if (timer || stopped || handlers.size === 0) return
  liveState.reconnecting = true
  const delay = backoff * (0.5 + Math.random())
  backoff = Math.min(backoff * 2, BACKOFF_MAX)
  timer = setTimeout(() => {
    timer = null
    connect()
  }, delay)
}

/**
 * Call handler(data, error) for every frame of topic; returns the function that ends the
 * subscription. The first frame after (re)connecting is a snapshot (data.snapshot === true).
 */
export function subscribe(topic, handler) {
  stopped = false
  let set = handlers.get(topic)
  if (!set) {
    set = new Set()
    handlers.set(topic, set)
  }
  set.add(handler)
  // Subscribing again is how a second view of the same topic gets its snapshot too.
  send({ op: 'subscribe', topic })
  connect()
  return () => {
    const current = handlers.get(topic)
    if (!current) return
    current.delete(handler)
    if (current.size === 0) {
      handlers.delete(topic)
      send({ op: 'unsubscribe', topic })
    }
  }
}

/** Open the socket ahead of the first subscription (page start with a session cookie). */
export function preconnect() {
  stopped = false
  connect()
}

/** Close the socket and forget every subscription (logout). */
export function closeLive() {
  stopped = true
  handlers.clear()
  clearTimeout(timer)
  timer = null
  if (socket) socket.close(1000)
  socket = null
  liveState.connected = false
  liveState.reconnecting = false
}
