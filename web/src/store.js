// The console's small shared state: who is logged in, language, theme.
import { computed, reactive } from 'vue'

function remembered(key, fallback) {
  try {
    const value = localStorage.getItem(key)
    return value === null ? fallback : value
  } catch {
    return fallback
  }
}

function remember(key, value) {
  try {
    localStorage.setItem(key, value)
  } catch {
    // private mode: the choice lasts for this page only
  }
}

const browserLang = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en'

export const store = reactive({
  user: null, // gdos_sdk.models.User of the session
  csrf: '',
  lang: remembered('gdos.lang', browserLang),
  dark: document.documentElement.classList.contains('dark'),
})

export const isAdmin = computed(() => store.user?.role === 'admin')
export const canOperate = computed(() => ['admin', 'operator'].includes(store.user?.role))

export function setLang(lang) {
  store.lang = lang
  document.documentElement.lang = lang
  remember('gdos.lang', lang)
}

export function setDark(dark) {
  store.dark = dark
  document.documentElement.classList.toggle('dark', dark)
  remember('gdos.dark', dark ? '1' : '0')
}

document.documentElement.lang = store.lang
