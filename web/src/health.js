// The master's outage, for the banner at the top of every page (OutageBanner.vue).
//
// Several masters (-bus) report on /healthz what they lost: the database, the message bus or
// both, and since when; meanwhile they refuse changes with 503 (details.lost names what is
// lost). The console learns of an outage both ways: it asks /healthz every few seconds (one
// small GET without credentials or database, which answers exactly when the live channel
// cannot: its re-authentication needs the database), and any API answer that names a loss
// raises the banner at once. The banner goes away by itself once /healthz says "ok" (a single
// master, whose /healthz says only "ok": once /api/v1/health, which asks the database, does).
import { reactive } from 'vue'
import { i18n } from './i18n'

const { t } = i18n.global

const EVERY_OK = 5000 // ms between two looks while all is well
const EVERY_LOST = 2000 // ... and during an outage, so that recovery shows soon
const PARTS = ['database', 'bus']

/** What the banner shows: lost parts ('database', 'bus'), since (Unix seconds), the master. */
export const outage = reactive({ lost: [], since: null, masterId: '' })

// Two sources: what /healthz said (several masters) and what a refused call said.
const reported = { lost: [], since: null }
const refused = { lost: [], since: null }
let timer = null
let started = false

function update() {
  const lost = PARTS.filter((p) => reported.lost.includes(p) || refused.lost.includes(p))
  const times = [reported.since, refused.since].filter((s) => s !== null)
  outage.lost = lost
  outage.since = lost.length && times.length ? Math.min(...times) : null
}

/** The lost parts in words: "the database", "the message bus", or both. */
export function lostText(lost) {
  if (lost.includes('database') && lost.includes('bus')) return t('outage.what.both')
  return t(lost.includes('bus') ? 'outage.what.bus' : 'outage.what.database')
}

/** Whether an API error is a refusal because the master lost the database or the bus. */
export function isOutageError(status, details) {
  return status === 503 && Array.isArray(details?.lost) && details.lost.length > 0
}

/**
 * The message shown for a call refused in an outage (instead of the master's English). A
 * call whose change had reached the database before it was lost (details.changed "unknown")
 * may have been made: it says so rather than "not done".
 */
export function refusedMessage(lost, changed = false) {
  const key = changed === 'unknown' ? 'outage.unknown_call' : 'outage.refused_call'
  return t(key, { what: lostText(lost) })
}

/** A call was refused because the master lost `lost`: show the banner now, look again soon. */
export function noteRefusal(lost) {
  const parts = PARTS.filter((p) => lost.includes(p))
  if (!parts.length) return
  if (!refused.lost.length) refused.since = Date.now() / 1000
  refused.lost = parts
  update()
  schedule(0)
}

async function lookOnce() {
  let response
  try {
    response = await fetch('/healthz', { headers: { Accept: 'application/json' } })
  } catch {
    return // the master is out of reach: the live status dot says so; keep what we know
  }
  const body = await response.json().catch(() => null)
  if (!body || typeof body !== 'object') return
  if ('database' in body) {
    // Several masters: /healthz knows; its "ok" also ends a banner a refusal raised.
    reported.lost = PARTS.filter((p) => body[p] === 'lost')
    reported.since = reported.lost.length ? (body.lost_since ?? Date.now() / 1000) : null
    outage.masterId = body.master_id || ''
    if (!reported.lost.length) refused.lost = []
  } else if (refused.lost.length) {
    // A single master says only "ok" there: ask the API's own check, which reads the database.
    const health = await fetch('/api/v1/health').catch(() => null)
    if (health && health.ok) refused.lost = []
  }
  if (!refused.lost.length) refused.since = null
  update()
}

function schedule(delay) {
  clearTimeout(timer)
  timer = setTimeout(async () => {
    timer = null
    try {
      await lookOnce()
    } finally {
      if (timer === null) schedule(outage.lost.length ? EVERY_LOST : EVERY_OK)
    }
  }, delay)
}

/** Start looking at the master's health (once, at the console's start). */
export function watchHealth() {
  if (started) return
  started = true
  schedule(0)
}
