// Translations: vue-i18n (composition API) with one message file per language in locales/.
// Components call `const { t } = useI18n()`; code outside components uses `i18n.global.t`.
// Counted messages hold their plural forms ('{n} module | {n} modules'; Chinese has one form)
// and are called with the count: t('systems.modules_n', count). Element Plus's own texts
// follow the same locale (App.vue). The choice is remembered in this browser; a first visit
// follows the browser's language.
import { createI18n } from 'vue-i18n'
import en from './locales/en.json'
import zhCN from './locales/zh-CN.json'
import { remember, remembered } from './store'

/** The console's languages, each named in itself (for the language switch). */
export const LANGUAGES = { en: 'English', 'zh-CN': '简体中文' }

const browserLang = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en'
const saved = remembered('gdos.lang', browserLang)

export const i18n = createI18n({
  legacy: false,
  locale: saved in LANGUAGES ? saved : browserLang,
  fallbackLocale: 'en',
  messages: { en, 'zh-CN': zhCN },
})

/** The current language (reactive where read inside a computed or a template). */
export const currentLang = () => i18n.global.locale.value

/** Switch the console's language and remember the choice. */
export function setLang(lang) {
  if (!(lang in LANGUAGES)) return
  i18n.global.locale.value = lang
  document.documentElement.lang = lang
  remember('gdos.lang', lang)
}

document.documentElement.lang = currentLang()
