// The console's small shared state: who is logged in and the theme (the language lives in
// i18n.js). Preferences are remembered in localStorage.
import { computed, reactive } from 'vue'

/** A remembered preference, or fallback (also when storage is unavailable). */
export function remembered(key, fallback) {
  try {
    const value = localStorage.getItem(key)
    return value === null ? fallback : value
  } catch {
    return fallback
  }
}

/** Remember a preference in this browser. */
export function remember(key, value) {
  try {
    localStorage.setItem(key, value)
  } catch {
    // private mode: the choice lasts for this page only
  }
}

export const store = reactive({
  user: null, // gdos_sdk.models.User of the session
  csrf: '',
  dark: document.documentElement.classList.contains('dark'),
})

export const isAdmin = computed(() => store.user?.role === 'admin')
export const canOperate = computed(() => ['admin', 'operator'].includes(store.user?.role))

export function setDark(dark) {
  store.dark = dark
  document.documentElement.classList.toggle('dark', dark)
  remember('gdos.dark', dark ? '1' : '0')
}
