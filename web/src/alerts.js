// The console's view of the alert engine, fed by the live topic `alerts`: the firing and
// pending counts (the header's bell) and every state change as it happens. Views that list
// alerts register a listener; nothing polls.
import { reactive } from 'vue'
import { subscribe } from './live'

export const alertCounts = reactive({ firing: 0, pending: 0, known: false })

const listeners = new Set() // (change, alert) => void; change 'reload' asks for a refetch
let stop = null
let users = 0

function onFrame(data) {
  if (!data) return
  alertCounts.firing = data.firing ?? alertCounts.firing
  alertCounts.pending = data.pending ?? alertCounts.pending
  alertCounts.known = true
  // A snapshot (a first or renewed subscription) may follow missed changes: refetch.
  const events = data.snapshot || data.reload ? [['reload', null]] : []
  for (const item of data.changes || []) events.push([item.change, item.alert])
  for (const [change, alert] of events) {
    for (const listener of listeners) {
      try {
        listener(change, alert, data.snapshot === true)
      } catch (exc) {
        console.error('alert listener failed', exc)
      }
    }
  }
}

/**
 * Follow the alerts topic while the returned function is not called; listener(change, alert,
 * snapshot) receives 'firing', 'resolved', 'pending', 'cancelled' or 'reload'.
 */
export function watchAlerts(listener) {
  if (listener) listeners.add(listener)
  users += 1
  if (!stop) stop = subscribe('alerts', onFrame)
  return () => {
    if (listener) listeners.delete(listener)
    users -= 1
    if (users === 0 && stop) {
      stop()
      stop = null
      alertCounts.known = false
    }
  }
}

/** Apply one change to a list of active alerts (keyed by rule and target), in place. */
export function applyChange(list, change, alert) {
  const index = list.findIndex((a) => a.rule_id === alert.rule_id && a.target === alert.target)
  if (change === 'resolved' || change === 'cancelled') {
    if (index >= 0) list.splice(index, 1)
  } else if (index >= 0) {
    list.splice(index, 1, alert)
  } else if (change === 'firing') {
    list.unshift(alert)
  } else {
    list.push(alert)
  }
}

/** An alert's value for display (status metrics are 0/1 facts). */
export function shownValue(value) {
  if (value === null || value === undefined) return '—'
  const n = Number(value)
  return Number.isInteger(n) ? String(n) : n.toPrecision(4).replace(/\.?0+$/, '')
}

export const SEVERITY_TYPES = { critical: 'danger', warning: 'warning', info: 'info' }

/** Metrics a rule may watch, by target kind (mirrors gdos_sdk.alerts.METRIC_KINDS). */
export const METRICS = {
  nodes: [
    'cpu',
    'mem_percent',
    'mem_used',
    'swap_used',
    'disk_percent',
    'load1',
    'load5',
    'load15',
    'net_rx',
    'net_tx',
    'disk_read',
    'disk_write',
    'node_offline',
  ],
  instances: [
    'cpu',
    'rss',
    'io_read',
    'io_write',
    'threads',
    'open_files',
    'restarts',
    'instance_down',
    'instance_failed',
    'instance_unhealthy',
  ],
}

export const STATUS_METRICS = [
  'node_offline',
  'instance_down',
  'instance_failed',
  'instance_unhealthy',
]
