// Display formatting only: every value shown comes from the API as is.
import { ref } from 'vue'
import { currentLang } from './i18n'

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function bytes(value) {
  if (value === null || value === undefined) return '—'
  let n = Number(value)
  let unit = 0
  while (Math.abs(n) >= 1024 && unit < UNITS.length - 1) {
    n /= 1024
    unit += 1
  }
  return `${n.toFixed(unit === 0 || n >= 100 ? 0 : 1)} ${UNITS[unit]}`
}

export const rate = (value) => (value === null || value === undefined ? '—' : bytes(value) + '/s')

export function percent(value, digits = 1) {
  return value === null || value === undefined ? '—' : `${Number(value).toFixed(digits)}%`
}

export function dateTime(value) {
  if (!value) return '—'
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value)
  return date.toLocaleString(currentLang() === 'zh-CN' ? 'zh-CN' : 'en-GB', { hour12: false })
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return '—'
  const s = Math.floor(seconds)
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  if (d) return `${d}d ${h}h`
  if (h) return `${h}h ${m}m`
  if (m) return `${m}m ${s % 60}s`
  return `${s % 60}s`
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : '')

// One clock for every "uptime" and "ago" on screen: a local timer, not a server poll.
export const now = ref(Date.now() / 1000)
setInterval(() => (now.value = Date.now() / 1000), 1000)

/** Copy text, also where navigator.clipboard is missing (plain http on a LAN address). */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text)
    return
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.style.position = 'fixed'
  area.style.opacity = '0'
  document.body.appendChild(area)
  area.select()
  document.execCommand('copy')
  document.body.removeChild(area)
}
